"""Promotion: evaluate the alias's gates against a version, then move the alias, or refuse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from threadline.meta.models import ModelVersionRow
from threadline.registry import aliases as alias_ops
from threadline.registry.errors import GateFailed
from threadline.registry.evaluations import champion_metrics, evaluated_metrics
from threadline.registry.gates import Candidate, Evaluated, GateResult, evaluate, timer
from threadline.registry.names import ModelRef, check_alias

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from threadline.registry.records import AliasEntry
    from threadline.registry.registry import ModelRegistry


def _latency_probe(registry: ModelRegistry, name: str, version: int, trusted: Sequence[str],
                   allow_pickle: bool, allow_code: bool) -> Any:
    """A function timing one predict call on the stored example (model loaded on first call)."""
    state: dict[str, Any] = {}

    def probe() -> float | None:
        if "model" not in state:
            found = registry.get_version(name, version)
            state["example"] = registry.load_example(found)
            state["model"] = None if state["example"] is None else registry.load_version(
                found, trusted=trusted, allow_pickle=allow_pickle, allow_code=allow_code)
        if state["model"] is None:
            return None
        return timer(lambda: state["model"].predict(state["example"]))

    return probe


def _evaluations(registry: ModelRegistry, name: str, version: int,
                 holder: int | None) -> Callable[[str], Evaluated]:
    """Looks up evaluations of the candidate (and the holder) on the commit a ref resolves to."""

    def on(ref: str) -> Evaluated:
        commit = registry.repos.resolve(ref).require_commit().id
        mine = evaluated_metrics(registry.repos, name, version, commit)
        theirs = None
        if holder is not None:
            theirs = (champion_metrics(registry.repos, name, version, holder, commit)
                      or evaluated_metrics(registry.repos, name, holder, commit))
        return Evaluated(commit, mine, theirs)

    return on


def promote(
    registry: ModelRegistry, name: str, version: int, to: str = "production", *,
    approve: str | None = None, actor: str | None = None, message: str = "",
    trusted: Sequence[str] = (), allow_pickle: bool = False, allow_code: bool = False,
) -> AliasEntry:
    """Move alias `to` to `version` if every gate of the model's policy for `to` passes.

    Raises:
        GateFailed: naming each failing gate with measured and required values.
        Conflict: the alias moved while the gates were evaluated.
    """
    check_alias(to)
    with registry.db.session() as session:
        model, row = registry.version_row(session, ModelRef(name, version=int(version)))
        holder = alias_ops.current(session, model.id, to)
        holder_metrics = None
        if holder is not None:
            holder_metrics = session.scalar(select(ModelVersionRow.metrics).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.version == holder))
        gates = list(dict(model.policy).get(to, []))
        metrics = dict(row.metrics)
    candidate = Candidate(metrics, holder, holder_metrics, approve,
                          _latency_probe(registry, name, row.version, trusted, allow_pickle, allow_code),
                          _evaluations(registry, name, row.version, holder))
    results: list[GateResult] = evaluate(gates, candidate)
    failed = [r for r in results if not r.passed]
    if failed:
        raise GateFailed(
            f"promotion of {name} v{row.version} to {to} refused by {len(failed)} gate(s): "
            + "; ".join(str(r) for r in failed),
            results,
        )
    meta = {"gates": [r.to_dict() for r in results], "approver": approve}
    # compare-and-swap against the holder the gates compared with: if it moved, start over
    return registry.set_alias(name, to, row.version, actor, message or f"promote v{row.version}",
                              action="promote", meta=meta, expected=holder)
