"""The closed loop: check a deployment, raise alerts, and act on what the policy says.

On drift on a watched column or accuracy under the floor, a policy can switch the primary
traffic to the `fallback` alias at once (a new deployment revision: zero failed requests, see
serving/runtime.py) and start the retraining pipeline; a newer version that comes out of it is
put on a canary. Every later pass guards the canary against the primary on live traffic: its
error rate, its p95 latency and (with labels) its accuracy; a regression removes it, and a
canary that holds for `promote_after` passes is promoted through the model's promotion gates
(optionally after a human approval) and the deployment goes back to following the alias.

Every action is a row in `monitor_actions` with the deployment revisions around it, a lineage
edge from the check that caused it, and can be undone (`undo`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
from sqlalchemy import select

from threadline.errors import InvalidArgument, NotFound, ThreadlineError
from threadline.lineage.graph import LineageGraph, Node
from threadline.meta.models import MonitorActionRow, MonitorCheckRow, MonitorPolicyRow
from threadline.monitor.alerts import AlertEvent, Alerts, parse_rules
from threadline.monitor.checks import CheckResult, References, run_check
from threadline.monitor.policy import Policy, parse_policy
from threadline.monitor.webhook import parse_webhooks
from threadline.registry.errors import GateFailed
from threadline.registry.names import parse_model_uri
from threadline.serving.deployments import Deployments
from threadline.serving.feedback import join_feedback

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from threadline.registry.registry import ModelRegistry
    from threadline.serving.spec import Route

log = logging.getLogger(__name__)
#: most recent labelled rows a challenger is scored on before it gets traffic
OFFLINE_ROWS = 5000


@dataclass
class Pass:
    """What one monitoring pass found and did."""

    check: CheckResult
    alerts: list[AlertEvent] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"check": self.check.to_dict(), "alerts": [a.to_dict() for a in self.alerts],
                "actions": self.actions}


def _now() -> int:
    return int(time.time() * 1000)


class Monitor:
    """Monitoring of the deployments of one home."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.db = registry.db
        self.deployments = Deployments(registry)
        self.references = References(registry)
        self.lineage = LineageGraph(registry.db)

    # ---------------------------------------------------------------- policies
    def set_policy(self, deployment: str, spec: Mapping[str, Any]) -> Policy:
        """Store a deployment's policy (checked first: a bad one is refused by name)."""
        self.deployments.get(deployment)
        policy = parse_policy(spec)
        parse_rules(list(policy.alerts), webhooks=list(policy.webhooks))
        if policy.webhooks:
            parse_webhooks(policy.webhooks)
        with self.db.session() as session, session.begin():
            row = session.get(MonitorPolicyRow, deployment)
            if row is None:
                session.add(MonitorPolicyRow(deployment=deployment, spec=dict(spec), updated_at=_now()))
            else:
                row.spec, row.updated_at = dict(spec), _now()
        return policy

    def policy(self, deployment: str) -> Policy:
        """A deployment's policy (the defaults when none was set)."""
        with self.db.session() as session:
            row = session.get(MonitorPolicyRow, deployment)
            return parse_policy(row.spec if row is not None else None)

    # -------------------------------------------------------------------- runs
    def run_once(self, deployment: str, *, now_ms: int | None = None) -> Pass:
        """One pass: check the newest window, evaluate alerts, act."""
        policy = self.policy(deployment)
        check = run_check(self.registry, deployment, policy, references=self.references, now_ms=now_ms)
        webhooks = parse_webhooks(policy.webhooks) if policy.webhooks else {}
        events = Alerts(self.db, webhooks).evaluate(deployment, check.values, check_id=check.id) \
            if policy.alerts and check.values else []
        done = Pass(check, list(events))
        trouble = policy.on_drift if check.verdict == "drift" else (
            policy.on_breach if check.verdict == "breach" else ())
        if "fallback" in trouble:
            self._act(done, deployment, "fallback", lambda: self._fallback(deployment, policy, check))
        if "retrain" in trouble:
            self._act(done, deployment, "retrain", lambda: self._retrain(deployment, policy))
        self._guard_shadow(done, deployment, policy)
        self._guard_canary(done, deployment, policy)
        return done

    def run_forever(self, deployment: str, stop: threading.Event, *, interval_s: float | None = None,
                    on_pass: Any = None) -> None:
        """Passes every `interval_s` (the policy's by default) until `stop` is set."""
        while not stop.is_set():
            try:
                done = self.run_once(deployment)
                if on_pass is not None:
                    on_pass(done)
            except ThreadlineError as exc:
                log.warning("monitoring %s: %s", deployment, exc)
            stop.wait(interval_s if interval_s is not None else self.policy(deployment).interval_s)

    # ------------------------------------------------------------------ actions
    def _act(self, done: Pass, deployment: str, action: str, fn: Any) -> None:
        try:
            detail = fn()
        except (ThreadlineError, ValueError) as exc:
            detail = {"status": "failed", "error": str(exc)}
        if detail is None:
            return
        status = detail.pop("status", "done")
        reason = str(detail.pop("reason", done.check.verdict))
        row = MonitorActionRow(deployment=deployment, action=action, status=status,
                               reason=reason, detail=detail,
                               check_id=done.check.id, created_at=_now())
        with self.db.session() as session, session.begin():
            session.add(row)
            session.flush()
            action_id = row.id
        after = detail.get("revision_after")
        if after is not None:
            self.lineage.record(Node("monitor_check", done.check.id), f"monitor.{action}",
                                Node("deployment", f"{deployment}/{after}"), action_id=action_id)
        done.actions.append({"id": action_id, "action": action, "status": status, "reason": reason,
                             **detail})

    def _primary(self, deployment: str) -> Route:
        return next(r for r in self.deployments.get(deployment).spec.routes if r.mode == "primary")

    def _fallback(self, deployment: str, policy: Policy, check: CheckResult) -> dict[str, Any] | None:
        current = self.deployments.get(deployment)
        primary = self._primary(deployment)
        ref = parse_model_uri(primary.model)
        if ref.alias == policy.fallback_alias:
            return None  # already on the fallback
        target = f"{ref.name}@{policy.fallback_alias}"
        self.registry.get_version(target)  # NotFound: no fallback alias set
        routes = [{"model": target, "mode": "primary", "weight": 100}]
        routes += [{"name": r.name, "model": r.model, "mode": "shadow", "weight": r.weight}
                   for r in current.spec.shadows]
        after = self.deployments.change(deployment, routes=routes, action="fallback", actor="monitor",
                                        message=f"{check.verdict} in check {check.id[:8]}",
                                        expected_revision=current.revision)
        return {"from": primary.model, "to": target, "revision_before": current.revision,
                "revision_after": after.revision}

    def _retrain(self, deployment: str, policy: Policy) -> dict[str, Any] | None:
        if not policy.retrain:
            raise InvalidArgument("the policy asks to retrain but names no pipeline (retrain: {module: ...})")
        from threadline.config import load_settings
        from threadline.pipelines.engine import run_pipeline
        from threadline.pipelines.python_api import find_pipelines

        routes_now = self.deployments.get(deployment).spec.routes
        if any(r.mode == "canary" or r.name == "challenger" for r in routes_now):
            return None  # a challenger is on trial already: the guards decide first
        model = parse_model_uri(self._primary(deployment).model).name
        before = max((v.version for v in self.registry.list_versions(model)), default=0)
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        found = find_pipelines(policy.retrain["module"])
        name = policy.retrain.get("pipeline") or next(iter(found))
        if name not in found:
            raise NotFound(f"module {policy.retrain['module']!r} has no pipeline {name!r}")
        result = run_pipeline(found[name], load_settings(), self.registry.repos,
                              params=dict(policy.retrain.get("params") or {}), trigger="monitor")
        latest = max((v.version for v in self.registry.list_versions(model)), default=0)
        detail: dict[str, Any] = {"pipeline": name, "run": getattr(result, "run_id", None)}
        if latest <= before:
            return {**detail, "status": "no_new_version"}
        challenger = f"{model}@{latest}"
        offline = self._offline(deployment, challenger, policy)
        detail["offline"] = offline
        if offline.get("challenger") is not None and offline.get("champion") is not None and \
                offline["challenger"] < offline["champion"] - policy.canary.max_accuracy_drop:
            return {**detail, "status": "rejected", "challenger": challenger,
                    "reason": f"{challenger} scores {offline['challenger']:.3f} on the recent labelled "
                              f"rows, the served versions {offline['champion']:.3f}"}
        current = self.deployments.get(deployment)
        if policy.retrain.get("stage", "canary") == "shadow":  # a copy of traffic first, no answers
            routes = [_route_dict(r) for r in current.spec.routes]
            routes.append({"name": "challenger", "model": challenger, "mode": "shadow", "weight": 100})
            after = self.deployments.change(deployment, routes=routes, action="shadow", actor="monitor",
                                            message=f"challenger {challenger} from retraining, shadowed",
                                            expected_revision=current.revision)
            return {**detail, "challenger": challenger, "stage": "shadow",
                    "revision_before": current.revision, "revision_after": after.revision}
        percent = float(policy.retrain.get("canary_percent", 10))
        after = self.deployments.set_canary(deployment, f"{model}@{latest}", percent, actor="monitor",
                                            message=f"challenger {model}@{latest} from retraining")
        return {**detail, "challenger": f"{model}@{latest}", "canary_percent": percent,
                "revision_before": current.revision, "revision_after": after.revision}

    def _offline(self, deployment: str, challenger: str, policy: Policy) -> dict[str, Any]:
        """The challenger's accuracy on the most recent labelled rows, beside what the served
        versions achieved on the same rows (before any traffic is risked on it)."""
        from threadline.monitor.accuracy import input_matrix

        try:
            joined = join_feedback(self.registry.repos, deployment)
        except NotFound:
            return {}
        if "label" not in joined.column_names or joined.num_rows == 0:
            return {}
        labelled = joined.filter(pc.and_(pc.is_valid(joined["label"]), pc.equal(joined["status"], 200)))
        labelled = labelled.filter(pc.not_equal(labelled["mode"], "shadow"))
        labelled = labelled.slice(max(labelled.num_rows - OFFLINE_ROWS, 0))
        if labelled.num_rows == 0:
            return {}
        version = self.registry.get_version(challenger)
        inputs = (version.signature or {}).get("inputs") or {}
        features = [str(c["name"]) for c in inputs.get("columns", [])]
        import pandas as pd

        frame = pd.DataFrame(input_matrix(labelled, features), columns=features)
        answers = np.asarray(self.registry.load_version(version, trusted=policy.trusted).predict(frame))
        actual = np.asarray(labelled["label"].to_pylist(), dtype=object).astype(str)
        served = np.asarray(labelled["prediction"].to_pylist(), dtype=object).astype(str)
        return {"rows": labelled.num_rows,
                "challenger": float(np.mean(answers.astype(object).astype(str) == actual)),
                "champion": float(np.mean(served == actual))}

    def _guard_shadow(self, done: Pass, deployment: str, policy: Policy) -> None:
        """A shadowed challenger that held against the primary on the copied traffic moves to
        a canary; one that did not is removed."""
        spec = self.deployments.get(deployment).spec
        shadow = next((r for r in spec.routes if r.mode == "shadow" and r.name == "challenger"), None)
        primary = next((r for r in spec.routes if r.mode == "primary"), None)
        if shadow is None or primary is None:
            return
        s_version = self.registry.get_version(shadow.model)
        p_version = self.registry.get_version(primary.model)
        stats = done.check.shadows.get(f"{s_version.name}/{s_version.version}")
        if stats is None:
            return
        health = _canary_health(stats, done.check.versions.get(f"{p_version.name}/{p_version.version}"),
                                policy)
        if health is None:
            return
        percent = float(policy.retrain.get("canary_percent", 10))

        def move() -> dict[str, Any]:
            current = self.deployments.get(deployment)
            routes = [_route_dict(r) for r in current.spec.routes if r.name != "challenger"]
            if health is True:
                kept = sum(r["weight"] for r in routes if r["mode"] == "primary") or 1.0
                for r in routes:
                    if r["mode"] == "primary":
                        r["weight"] = r["weight"] / kept * (100 - percent)
                routes.append({"name": "canary", "model": shadow.model, "mode": "canary", "weight": percent})
            after = self.deployments.change(deployment, routes=routes, actor="monitor",
                                            action="canary" if health is True else "rollback",
                                            message=f"shadow {shadow.model}: " + (
                                                f"held, canary at {percent:g}%" if health is True
                                                else f"regressed ({health})"),
                                            expected_revision=current.revision)
            return {"challenger": shadow.model, "reason": "held in shadow" if health is True else str(health),
                    "revision_before": current.revision, "revision_after": after.revision}

        self._act(done, deployment, "canary" if health is True else "rollback", move)

    def _guard_canary(self, done: Pass, deployment: str, policy: Policy) -> None:
        spec = self.deployments.get(deployment).spec
        canary = next((r for r in spec.routes if r.mode == "canary"), None)
        primary = next((r for r in spec.routes if r.mode == "primary"), None)
        if canary is None or primary is None:
            return
        c_version = self.registry.get_version(canary.model)
        p_version = self.registry.get_version(primary.model)
        verdicts = self._canary_history(deployment, f"{c_version.name}/{c_version.version}",
                                        f"{p_version.name}/{p_version.version}", policy)
        if not verdicts or verdicts[0] is None:
            return  # not enough traffic yet
        if verdicts[0] is not True:
            reason = verdicts[0]
            self._act(done, deployment, "rollback", lambda: self._drop_canary(deployment, canary, reason))
            return
        healthy = 0
        for v in verdicts:
            if v is not True:
                break
            healthy += 1
        if healthy < policy.canary.promote_after:
            return
        if policy.canary.approve and not self._approved(deployment):
            return
        self._act(done, deployment, "promote",
                  lambda: self._promote(deployment, primary, canary, c_version.version))

    def _canary_history(self, deployment: str, canary: str, primary: str,
                        policy: Policy) -> list[bool | str | None]:
        """Newest first: True (healthy), a reason (regressed) or None (too little traffic)."""
        with self.db.session() as session:
            rows = session.scalars(select(MonitorCheckRow).where(MonitorCheckRow.deployment == deployment)
                                   .order_by(MonitorCheckRow.created_at.desc())
                                   .limit(policy.canary.promote_after + 5)).all()
            results = [r.result for r in rows]
        out: list[bool | str | None] = []
        for result in results:
            versions = result.get("versions") or {}
            if canary not in versions:
                break
            out.append(_canary_health(versions[canary], versions.get(primary), policy))
        return out

    def _drop_canary(self, deployment: str, canary: Route, reason: Any) -> dict[str, Any]:
        current = self.deployments.get(deployment)
        after = self.deployments.set_canary(deployment, canary.model, 0, actor="monitor",
                                            message=f"canary regressed: {reason}")
        return {"canary": canary.model, "reason": str(reason), "revision_before": current.revision,
                "revision_after": after.revision}

    def _promote(self, deployment: str, primary: Route, canary: Route, version: int) -> dict[str, Any]:
        current = self.deployments.get(deployment)
        name = parse_model_uri(canary.model).name
        alias = parse_model_uri(primary.model).alias
        alias = "production" if alias in (None, "fallback") else alias
        old = self.registry.get_model(name).aliases.get(alias)
        try:
            self.registry.promote(name, version, to=alias, actor="monitor",
                                  message=f"canary held on deployment {deployment}")
        except GateFailed as refused:
            dropped = self._drop_canary(deployment, canary, f"promotion gates: {refused}")
            return {**dropped, "status": "gate_failed"}
        routes = [{"model": f"{name}@{alias}", "mode": "primary", "weight": 100}]
        routes += [{"name": r.name, "model": r.model, "mode": "shadow", "weight": r.weight}
                   for r in current.spec.shadows]
        after = self.deployments.change(deployment, routes=routes, action="promote", actor="monitor",
                                        message=f"{canary.model} promoted to {alias}",
                                        expected_revision=current.revision)
        return {"reason": f"canary held against {primary.model} on live traffic",
                "promoted": f"{name}@{version}", "alias": alias, "alias_before": old,
                "revision_before": current.revision, "revision_after": after.revision}

    def approve(self, deployment: str, by: str) -> None:
        """Let the running canary be promoted once it holds (policies with `approve: true`)."""
        with self.db.session() as session, session.begin():
            session.add(MonitorActionRow(deployment=deployment, action="approve", status="done",
                                         reason=f"approved by {by}", detail={"by": by}, check_id=None,
                                         created_at=_now()))

    def _approved(self, deployment: str) -> bool:
        """Whether someone approved after the canary started (the deployment's last change)."""
        since = self.deployments.get(deployment).updated_at
        with self.db.session() as session:
            return session.scalar(select(MonitorActionRow.id).where(
                MonitorActionRow.deployment == deployment, MonitorActionRow.action == "approve",
                MonitorActionRow.created_at >= since).limit(1)) is not None

    # ---------------------------------------------------------------- history
    def actions(self, deployment: str, limit: int = 100) -> list[dict[str, Any]]:
        """A deployment's policy actions, newest first."""
        with self.db.session() as session:
            rows = session.scalars(select(MonitorActionRow).where(MonitorActionRow.deployment == deployment)
                                   .order_by(MonitorActionRow.id.desc()).limit(limit)).all()
            return [{"id": r.id, "action": r.action, "status": r.status, "reason": r.reason,
                     "check": r.check_id, "at": r.created_at, "undone_at": r.undone_at, **r.detail}
                    for r in rows]

    def undo(self, action_id: int, *, actor: str = "monitor-undo") -> dict[str, Any]:
        """Restore the deployment revision (and alias) from before an action."""
        with self.db.session() as session:
            row = session.get(MonitorActionRow, action_id)
            if row is None:
                raise NotFound(f"no monitoring action {action_id}; `threadline monitor actions "
                               "DEPLOYMENT` lists them")
            deployment, detail, undone = row.deployment, dict(row.detail), row.undone_at
        if undone is not None:
            raise InvalidArgument(f"action {action_id} was undone already")
        if "revision_before" not in detail:
            raise InvalidArgument(f"action {action_id} changed no deployment; nothing to undo")
        if detail.get("alias") and detail.get("alias_before"):
            name = str(detail["promoted"]).split("@")[0]
            self.registry.set_alias(name, str(detail["alias"]), int(detail["alias_before"]), actor=actor,
                                    force=True, message=f"undo monitoring action {action_id}")
        restored = self.deployments.rollback(deployment, to=int(detail["revision_before"]), actor=actor,
                                             message=f"undo monitoring action {action_id}")
        with self.db.session() as session, session.begin():
            found = session.get(MonitorActionRow, action_id)
            assert found is not None
            found.undone_at = _now()
        return {"action": action_id, "deployment": deployment, "revision": restored.revision}


def _route_dict(route: Route) -> dict[str, Any]:
    return {"name": route.name, "model": route.model, "mode": route.mode, "weight": route.weight}


def _canary_health(canary: Mapping[str, Any], primary: Mapping[str, Any] | None,
                   policy: Policy) -> bool | str | None:
    """True when the canary holds against the primary, a reason when it regressed, None when
    it had too little traffic to tell."""
    guard = policy.canary
    if canary.get("rows", 0) < guard.min_requests:
        return None
    error_rate = canary.get("error_rate") or 0.0
    if error_rate > guard.max_error_rate:
        return f"error rate {error_rate:.3f} > {guard.max_error_rate}"
    if primary is not None:
        c95, p95 = canary["latency"]["p95_ms"], primary["latency"]["p95_ms"]
        if c95 is not None and p95 and c95 > guard.max_latency_ratio * p95:
            return f"p95 latency {c95:.2f} ms > {guard.max_latency_ratio:g}x the primary's {p95:.2f} ms"
        ca, pa = canary["accuracy"]["value"], primary["accuracy"]["value"]
        if ca is not None and pa is not None and ca < pa - guard.max_accuracy_drop:
            return f"accuracy {ca:.3f} < primary {pa:.3f} - {guard.max_accuracy_drop}"
    return True
