"""Deployments: named endpoints whose spec changes only through logged, numbered revisions.

Every change (create, routes, settings, canary ramp, promote, rollback) writes the whole new
spec as revision N+1 in `deployment_log` and moves the deployment's row to it by
compare-and-swap on the revision, in one transaction, so two operators changing one
deployment at once cannot lose a change, and any past revision can be restored exactly.
Servers poll the revision and apply a new one without dropping requests (see runtime.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from threadline.data.paths import check_name
from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.meta.models import DeploymentLogRow, DeploymentRow
from threadline.serving.spec import Route, Spec, parse_routes, parse_settings, parse_spec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from threadline.registry.registry import ModelRegistry


@dataclass(frozen=True)
class Deployment:
    """A deployment at one revision."""

    name: str
    spec: Spec
    revision: int
    created_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the CLI's `--json` and the API)."""
        return {"name": self.name, "revision": self.revision, "created_at": self.created_at,
                "updated_at": self.updated_at, **self.spec.to_dict()}


@dataclass(frozen=True)
class DeploymentChange:
    """One entry of a deployment's history."""

    revision: int
    action: str
    spec: dict[str, Any]
    actor: str
    message: str
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"revision": self.revision, "action": self.action, "actor": self.actor,
                "message": self.message, "created_at": self.created_at, **self.spec}


def _now_ms() -> int:
    return int(time.time() * 1000)


def check_deployment_name(name: str) -> str:
    """A deployment name is used in URLs and repo names: the data layer's name rules."""
    return check_name(name, "deployment name")


class Deployments:
    """The deployments of one Threadline home.

    Args:
        registry: checks that every route names a registered version or alias.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.db = registry.db

    # ----------------------------------------------------------------- reading
    def _row(self, session: Session, name: str) -> DeploymentRow:
        row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == check_deployment_name(name)))
        if row is None:
            raise NotFound(f"deployment {name!r} does not exist; create it with "
                           f"`threadline deploy create {name} --model MODEL@ALIAS`")
        return row

    @staticmethod
    def _record(row: DeploymentRow) -> Deployment:
        return Deployment(row.name, parse_spec(row.spec), row.revision, row.created_at, row.updated_at)

    def get(self, name: str) -> Deployment:
        """A deployment's current revision."""
        with self.db.session() as session:
            return self._record(self._row(session, name))

    def revision(self, name: str) -> int:
        """The current revision number alone (what servers poll)."""
        with self.db.session() as session:
            return self._row(session, name).revision

    def all(self) -> list[Deployment]:
        """Every deployment, by name."""
        with self.db.session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)).all()
            return [self._record(r) for r in rows]

    def history(self, name: str, limit: int = 1000) -> list[DeploymentChange]:
        """Changes of a deployment, newest first."""
        check_deployment_name(name)
        with self.db.session() as session:
            rows = session.scalars(select(DeploymentLogRow).where(DeploymentLogRow.deployment == name)
                                   .order_by(DeploymentLogRow.revision.desc()).limit(limit)).all()
            if not rows:
                self._row(session, name)  # NotFound with the create hint
            return [DeploymentChange(r.revision, r.action, r.spec, r.actor, r.message, r.created_at)
                    for r in rows]

    # ----------------------------------------------------------------- writing
    def _check_models(self, routes: Sequence[Route]) -> None:
        for route in routes:
            self.registry.get_version(route.model)  # NotFound names the model/alias/version

    def create(self, name: str, routes: Sequence[Mapping[str, Any]],
               settings: Mapping[str, Any] | None = None, *, actor: str | None = None,
               message: str = "") -> Deployment:
        """Create deployment `name` at revision 1.

        Raises:
            AlreadyExists: a deployment has that name.
            NotFound: a route names a model, version or alias that does not exist.
            InvalidArgument: a route or setting is malformed (the message names it).
        """
        check_deployment_name(name)
        spec = Spec(parse_routes(list(routes)), parse_settings(settings))
        self._check_models(spec.routes)
        now = _now_ms()
        with self.db.session() as session, session.begin():
            if session.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name)) is not None:
                raise AlreadyExists(f"deployment {name!r} exists already; change it with "
                                    f"`threadline deploy update {name} ...`")
            row = DeploymentRow(name=name, spec=spec.to_dict(), revision=1, created_at=now, updated_at=now)
            session.add(row)
            self._log(session, name, 1, "create", spec, actor, message, now)
            session.flush()
            return self._record(row)

    def _log(self, session: Session, name: str, revision: int, action: str, spec: Spec,
             actor: str | None, message: str, now: int) -> None:
        session.add(DeploymentLogRow(deployment=name, revision=revision, action=action,
                                     spec=spec.to_dict(), actor=actor or self.registry.repos.author,
                                     message=message, created_at=now))

    def change(self, name: str, *, routes: Sequence[Mapping[str, Any]] | None = None,
               settings: Mapping[str, Any] | None = None, action: str = "update",
               actor: str | None = None, message: str = "",
               expected_revision: int | None = None) -> Deployment:
        """Replace the routes and/or merge settings, as a new revision.

        `expected_revision` makes the change conditional (optimistic concurrency): when the
        deployment moved past it, `Conflict` names the current revision.
        """
        current = self.get(name)
        new_routes = parse_routes(list(routes)) if routes is not None else current.spec.routes
        new_settings = parse_settings(settings, current.spec.settings) if settings else current.spec.settings
        if routes is not None:
            self._check_models(new_routes)
        return self._write(name, Spec(new_routes, new_settings), action, actor, message,
                           expected_revision if expected_revision is not None else current.revision)

    def _write(self, name: str, spec: Spec, action: str, actor: str | None, message: str,
               expected: int) -> Deployment:
        now = _now_ms()
        with self.db.session() as session, session.begin():
            moved = session.execute(
                update(DeploymentRow).where(DeploymentRow.name == name, DeploymentRow.revision == expected)
                .values(spec=spec.to_dict(), revision=expected + 1, updated_at=now)).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                row = self._row(session, name)
                raise Conflict(f"deployment {name!r} changed meanwhile (now revision {row.revision}, "
                               f"expected {expected}); look at `threadline deploy status {name}` "
                               "and retry")
            self._log(session, name, expected + 1, action, spec, actor, message, now)
        return self.get(name)

    def set_canary(self, name: str, model: str, percent: float, *, actor: str | None = None,
                   message: str = "") -> Deployment:
        """Send `percent`% of traffic to `model` as the canary route (0 removes the canary);
        the primary routes keep the rest in their current proportions."""
        if not 0 <= percent < 100:
            raise InvalidArgument(f"canary percent must be at least 0 and below 100, not {percent}; "
                                  "use `threadline deploy promote` to send it all traffic")
        current = self.get(name)
        primaries = [r for r in current.spec.routes if r.mode == "primary"]
        total = sum(r.weight for r in primaries) or 1.0
        routes: list[dict[str, Any]] = [
            {"name": r.name, "model": r.model, "mode": "primary",
             "weight": r.weight / total * (100 - percent)} for r in primaries]
        if percent > 0:
            routes.append({"name": "canary", "model": model, "mode": "canary", "weight": percent})
        routes += [{"name": r.name, "model": r.model, "mode": "shadow", "weight": r.weight}
                   for r in current.spec.shadows]
        return self.change(name, routes=routes, action="canary", actor=actor,
                           message=message or f"canary {model} at {percent:g}%",
                           expected_revision=current.revision)

    def promote_canary(self, name: str, *, actor: str | None = None, message: str = "") -> Deployment:
        """Make the canary route the only primary route (its model gets all the traffic)."""
        current = self.get(name)
        canary = next((r for r in current.spec.routes if r.mode == "canary"), None)
        if canary is None:
            raise InvalidArgument(f"deployment {name!r} has no canary route to promote; start one "
                                  f"with `threadline deploy canary {name} MODEL --percent 10`")
        routes: list[dict[str, Any]] = [{"name": "primary", "model": canary.model, "mode": "primary",
                                         "weight": 100}]
        routes += [{"name": r.name, "model": r.model, "mode": "shadow", "weight": r.weight}
                   for r in current.spec.shadows]
        return self.change(name, routes=routes, action="promote", actor=actor,
                           message=message or f"promote canary {canary.model}",
                           expected_revision=current.revision)

    def rollback(self, name: str, *, to: int | None = None, actor: str | None = None,
                 message: str = "") -> Deployment:
        """Restore the spec of revision `to` (default: the one before the current) as a new
        revision; the history keeps every step."""
        current = self.get(name)
        target = to if to is not None else current.revision - 1
        if target < 1 or target >= current.revision:
            raise InvalidArgument(f"deployment {name!r} is at revision {current.revision}; roll back "
                                  f"to a revision from 1 to {current.revision - 1}")
        with self.db.session() as session:
            row = session.scalar(select(DeploymentLogRow).where(
                DeploymentLogRow.deployment == name, DeploymentLogRow.revision == target))
            if row is None:
                raise NotFound(f"deployment {name!r} has no revision {target}")
            spec = parse_spec(row.spec)
        self._check_models(spec.routes)
        return self._write(name, spec, "rollback", actor, message or f"back to revision {target}",
                           current.revision)

    def delete(self, name: str) -> None:
        """Remove a deployment and its history (its prediction log repo stays)."""
        with self.db.session() as session, session.begin():
            self._row(session, name)
            session.execute(delete(DeploymentLogRow).where(DeploymentLogRow.deployment == name))
            session.execute(delete(DeploymentRow).where(DeploymentRow.name == name))
