"""Alias moves: compare-and-swap on the alias row, one log entry per move, in one transaction.

A move names the version it expects the alias to hold (None: the alias must not exist). When
another writer moved the alias first, the loser gets a `Conflict` naming the winner, and
nothing changes: the same promise branches make.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from threadline.errors import Conflict
from threadline.meta.models import AliasLogRow, ModelAliasRow
from threadline.registry.versions import now_ms

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def current(session: Session, model_id: int, alias: str) -> int | None:
    """The version an alias points at, or None."""
    return session.scalar(select(ModelAliasRow.version).where(
        ModelAliasRow.model_id == model_id, ModelAliasRow.alias == alias))


def aliases_of(session: Session, model_id: int) -> dict[str, int]:
    """alias -> version for one model."""
    rows = session.execute(select(ModelAliasRow.alias, ModelAliasRow.version)
                           .where(ModelAliasRow.model_id == model_id)).all()
    return {a: v for a, v in sorted(rows)}


def move(
    session: Session, model_id: int, name: str, alias: str, *, expected: int | None,
    new: int | None, action: str, actor: str, message: str, meta: dict[str, Any] | None = None,
) -> None:
    """Move (or, with `new=None`, delete) an alias inside the caller's transaction and log it.

    Raises:
        Conflict: the alias does not hold `expected` any more.
    """
    stamp = now_ms()
    if expected is None and new is not None:
        try:
            session.add(ModelAliasRow(model_id=model_id, alias=alias, version=new, updated_at=stamp))
            session.flush()
        except DBIntegrityError as exc:  # created meanwhile; the transaction is rolled back
            raise Conflict(f"alias {name}@{alias} was set by another change meanwhile; look at "
                           f"`threadline models history {name}` and retry") from exc
        moved = 1
    elif new is None:
        moved = session.execute(delete(ModelAliasRow).where(
            ModelAliasRow.model_id == model_id, ModelAliasRow.alias == alias,
            ModelAliasRow.version == expected)).rowcount  # type: ignore[attr-defined]
    else:
        moved = session.execute(update(ModelAliasRow).where(
            ModelAliasRow.model_id == model_id, ModelAliasRow.alias == alias,
            ModelAliasRow.version == expected).values(version=new, updated_at=stamp)
        ).rowcount  # type: ignore[attr-defined]
    if moved != 1:
        winner = current(session, model_id, alias)
        raise Conflict(
            f"alias {name}@{alias} points at {winner if winner is not None else 'nothing'}, not "
            f"{expected if expected is not None else 'nothing'}: another change got there first; "
            f"look at `threadline models history {name}` and retry",
        )
    session.add(AliasLogRow(model_id=model_id, alias=alias, old_version=expected, new_version=new,
                            action=action, actor=actor, message=message, meta=meta or {},
                            created_at=stamp))


def log(session: Session, model_id: int, alias: str | None, limit: int = 1000) -> list[AliasLogRow]:
    """Alias moves of a model (or of one alias), newest first."""
    query = select(AliasLogRow).where(AliasLogRow.model_id == model_id)
    if alias is not None:
        query = query.where(AliasLogRow.alias == alias)
    return list(session.scalars(query.order_by(AliasLogRow.id.desc()).limit(limit)))
