"""Alerts: rules over any monitored quantity, fired after N breaching windows, resolved on recovery.

A rule names a dotted path into a check's result (`drift.share`, `accuracy.value`,
`latency.p95_ms`), a direction and a threshold. Each evaluation is one window. The state of
every (deployment, rule) pair lives in the `alerts` table, so it survives restarts and every
process that evaluates sees the same thing:

    (no row) --breach--> pending (1) --breach--> ... --N-th breach--> firing --ok--> resolved
    pending --ok--> (row deleted: the run of breaches ended before it became an alert)

- `pending` rows are counters, not alerts: they carry the number of consecutive breaching
  windows in `meta["breaches"]`; `history` and `open_alerts` leave them out unless asked for.
  A rule with `for_windows: 1` goes straight to `firing`.
- At most one open row (pending or firing) per deployment and rule: a breach that goes on
  updates `last_at`, `value` and `meta["windows"]` of the same row, and notifies nobody again.
  Notifications go out on the two transitions only: firing and resolved.
- A missing value (absent key, None or NaN) is no information: it neither fires, nor
  resolves, nor resets the count. Ground truth arrives late and in bursts, so a window
  without labels must not restart a sustained accuracy breach or close an open incident;
  "consecutive" therefore means consecutive windows that had a value.

Notifications (the rule's `outputs`): `log` writes one line to this module's logger;
`webhook:<name>` POSTs JSON through a guarded `Webhook`; `api` is accepted for clarity (every
alert is stored and served by the API anyway). A failing notification is logged and recorded
in the alert's `meta["notifications"]`; it never raises out of `evaluate`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from threadline.errors import InvalidArgument, NotFound
from threadline.meta.models import AlertRow, MonitorPolicyRow
from threadline.serving.deployments import check_deployment_name

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from sqlalchemy.orm import Session

    from threadline.meta.db import Database
    from threadline.monitor.webhook import Webhook

logger = logging.getLogger(__name__)

OPS = ("above", "below")
SEVERITIES = ("info", "warning", "critical")
STATUSES = ("pending", "firing", "resolved")
#: notification outcomes kept per alert (the newest)
MAX_NOTIFICATIONS = 20
_RULE_KEYS = ("name", "metric", "op", "threshold", "for_windows", "severity", "outputs")
_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class AlertRule:
    """A condition on one monitored quantity.

    Attributes:
        name: unique within a policy (letters, digits, `_`, `-`, `.`; at most 100).
        metric: dotted path into a check result: `drift.share`, `accuracy.value`,
            `drift.columns.age.effect`, `latency.p95_ms`, `error_rate`.
        op: `above` (value > threshold) or `below` (value < threshold); equal never breaches.
        threshold: a finite number.
        for_windows: consecutive breaching windows (with a value) before the alert fires.
        severity: `info`, `warning` or `critical`.
        outputs: `log`, `api` and `webhook:<name>` (a webhook configured in the policy).
    """

    name: str
    metric: str
    op: str
    threshold: float
    for_windows: int = 1
    severity: str = "warning"
    outputs: tuple[str, ...] = ("log",)

    def __post_init__(self) -> None:
        where = f"alert rule {self.name!r}"
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100 or not all(
                c.isalnum() or c in "_-." for c in self.name):
            raise InvalidArgument(f"alert rule name must be 1-100 letters, digits, '_', '-' or '.', "
                                  f"not {self.name!r}")
        if (not isinstance(self.metric, str) or not self.metric
                or any(not part.strip() or part != part.strip() for part in self.metric.split("."))):
            raise InvalidArgument(f"{where}: metric must be a dotted path like 'drift.share', "
                                  f"not {self.metric!r}")
        if self.op not in OPS:
            raise InvalidArgument(f"{where}: op must be one of {list(OPS)}, not {self.op!r}")
        if (isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float)
                or not math.isfinite(self.threshold)):
            raise InvalidArgument(f"{where}: threshold must be a finite number, not {self.threshold!r}")
        if type(self.for_windows) is not int or self.for_windows < 1:
            raise InvalidArgument(f"{where}: for_windows must be an integer of at least 1, "
                                  f"not {self.for_windows!r}")
        if self.severity not in SEVERITIES:
            raise InvalidArgument(f"{where}: severity must be one of {list(SEVERITIES)}, "
                                  f"not {self.severity!r}")
        outputs = self.outputs
        if isinstance(outputs, str) or not isinstance(outputs, list | tuple):
            raise InvalidArgument(f"{where}: outputs must be a list like ['log', 'webhook:ops'], "
                                  f"not {outputs!r}")
        for output in outputs:
            if not isinstance(output, str) or not (
                    output in ("log", "api") or (output.startswith("webhook:") and len(output) > 8)):
                raise InvalidArgument(f"{where}: output {output!r} is not 'log', 'api' or "
                                      "'webhook:<name>'")
        # normalised in place (the dataclass is frozen): a list is accepted, duplicates dropped
        object.__setattr__(self, "outputs", tuple(dict.fromkeys(outputs)))
        object.__setattr__(self, "threshold", float(self.threshold))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> AlertRule:
        """Parse one rule; the error names the rule and the key at fault."""
        if not isinstance(spec, dict):
            raise InvalidArgument(f"an alert rule must be a mapping with keys {list(_RULE_KEYS)}, "
                                  f"not {type(spec).__name__}")
        name = spec.get("name")
        where = f"alert rule {name!r}" if name is not None else "alert rule"
        for key in ("name", "metric", "op", "threshold"):
            if key not in spec:
                raise InvalidArgument(f"{where}: missing key {key!r}")
        unknown = sorted(set(spec) - set(_RULE_KEYS))
        if unknown:
            raise InvalidArgument(f"{where}: unknown key {unknown[0]!r}; expected some of {list(_RULE_KEYS)}")
        return cls(name=spec["name"], metric=spec["metric"], op=spec["op"], threshold=spec["threshold"],
                   for_windows=spec.get("for_windows", 1), severity=spec.get("severity", "warning"),
                   outputs=spec.get("outputs", ("log",)))

    def breached(self, value: float) -> bool:
        """Whether `value` is on the wrong side of the threshold (strictly)."""
        return value > self.threshold if self.op == "above" else value < self.threshold

    @property
    def webhooks(self) -> tuple[str, ...]:
        """The webhook names among the outputs."""
        return tuple(o.split(":", 1)[1] for o in self.outputs if o.startswith("webhook:"))

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as `from_dict` reads it."""
        return {"name": self.name, "metric": self.metric, "op": self.op, "threshold": self.threshold,
                "for_windows": self.for_windows, "severity": self.severity, "outputs": list(self.outputs)}


def parse_rules(specs: Sequence[Mapping[str, Any]], *,
                webhooks: Collection[str] | None = None) -> list[AlertRule]:
    """Parse a policy's `alerts:` list.

    Args:
        specs: one mapping per rule.
        webhooks: the policy's webhook names; when given, a `webhook:<name>` output must
            name one of them.

    Raises:
        InvalidArgument: a rule is malformed, two rules share a name, or an output names an
            unknown webhook (the message says which).
    """
    if isinstance(specs, str | dict) or not isinstance(specs, list | tuple):
        raise InvalidArgument("alert rules must be a list of mappings")
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for spec in specs:
        rule = AlertRule.from_dict(spec)
        if rule.name in seen:
            raise InvalidArgument(f"two alert rules are named {rule.name!r}; rule names must be unique")
        seen.add(rule.name)
        for hook in rule.webhooks:
            if webhooks is not None and hook not in webhooks:
                raise InvalidArgument(f"alert rule {rule.name!r}: output 'webhook:{hook}' names no "
                                      f"configured webhook (configured: {sorted(webhooks)})")
        rules.append(rule)
    return rules


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """A nested check result as flat dotted keys: `{"drift": {"share": 0.2}}` -> `drift.share`.

    Numbers and booleans (as 1.0 / 0.0) are kept, None stays None; strings and lists are
    left out (no rule can compare them).
    """
    flat: dict[str, float | None] = {}
    for key, value in result.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        elif value is None or isinstance(value, int | float):
            flat[path] = None if value is None else float(value)
    return flat


def _value(values: Mapping[str, Any], metric: str) -> float | None:
    """The rule's value this window, or None for no data (absent, None, NaN, not a number)."""
    value = values.get(metric)
    if value is None or not isinstance(value, int | float):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class AlertRecord:
    """One stored alert (or, with status `pending`, a run of breaches not yet an alert)."""

    id: int
    deployment: str
    rule: str
    status: str
    severity: str
    value: float | None
    message: str
    first_at: int
    last_at: int
    resolved_at: int | None
    acked_by: str | None
    acked_at: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: AlertRow) -> AlertRecord:
        """Read a row of the `alerts` table."""
        return cls(row.id, row.deployment, row.rule, row.status, str(row.meta.get("severity", "warning")),
                   row.value, row.message, row.first_at, row.last_at, row.resolved_at, row.acked_by,
                   row.acked_at, dict(row.meta))

    def to_dict(self, *, meta: bool = True) -> dict[str, Any]:
        """JSON form (the API, the CLI's `--json`, webhook payloads without `meta`)."""
        out: dict[str, Any] = {
            "id": self.id, "deployment": self.deployment, "rule": self.rule, "status": self.status,
            "severity": self.severity, "value": _finite(self.value), "message": self.message,
            "first_at": self.first_at, "last_at": self.last_at, "resolved_at": self.resolved_at,
            "acked_by": self.acked_by, "acked_at": self.acked_at}
        if meta:
            out["meta"] = self.meta
        return out


@dataclass(frozen=True)
class AlertEvent:
    """A transition `evaluate` made: an alert fired or resolved, and who was told."""

    kind: str  # "firing" | "resolved"
    alert: AlertRecord
    rule: AlertRule
    check_id: str | None = None
    notifications: tuple[dict[str, Any], ...] = ()

    def payload(self) -> dict[str, Any]:
        """What a webhook receives."""
        return {"type": "threadline.alert", "event": self.kind, "check_id": self.check_id,
                "rule": self.rule.to_dict(), "alert": self.alert.to_dict(meta=False)}

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**self.payload(), "notifications": list(self.notifications)}


class Alerts:
    """Alert state and notifications of one Threadline home.

    Args:
        db: the metadata database.
        webhooks: the policy's named webhooks, for `webhook:<name>` outputs.
        rules: the rules `evaluate` applies to every deployment; None (the default) reads
            each deployment's rules from its stored monitoring policy (`alerts:` of
            `monitor_policies`), at every evaluation. `evaluate(rules=...)` overrides both.
        clock: milliseconds since the epoch (tests pass a fake).

    Evaluation assumes one evaluator per deployment at a time (the monitor loop); should two
    race and both open a row, the next evaluation keeps the oldest and closes the other.
    """

    def __init__(self, db: Database, webhooks: Mapping[str, Webhook] | None = None, *,
                 rules: Sequence[AlertRule] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.db = db
        self.webhooks = dict(webhooks or {})
        self.rules = tuple(rules) if rules is not None else None
        self.clock = clock or _now_ms

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, deployment: str, values: Mapping[str, float | None], *,
                 rules: Sequence[AlertRule] | None = None,
                 check_id: str | None = None) -> list[AlertEvent]:
        """Apply every rule to one window's values; fire, update or resolve alerts.

        Args:
            deployment: the deployment the window belongs to.
            values: flat dotted keys (see `flatten`); missing or None values are no data.
            rules: the rules to apply instead of the instance's or the stored policy's.
            check_id: the `monitor_checks` row the values came from (recorded and sent).

        Returns:
            The transitions (fired, resolved), after their notifications went out.

        Raises:
            InvalidArgument: the stored policy's rules are malformed (the message names one).
        """
        check_deployment_name(deployment)
        now = self.clock()
        transitions: list[AlertEvent] = []
        with self.db.session() as session, session.begin():
            chosen = rules if rules is not None else self.rules
            for rule in chosen if chosen is not None else self._policy_rules(session, deployment):
                value = _value(values, rule.metric)
                if value is None:
                    continue  # no data: the state stays as it is (module docstring)
                event = self._step(session, deployment, rule, value, now, check_id)
                if event is not None:
                    transitions.append(event)
        # notify after the commit: no database transaction is held open across network calls
        return [self._notify(event, now) for event in transitions]

    @staticmethod
    def _policy_rules(session: Session, deployment: str) -> list[AlertRule]:
        row = session.get(MonitorPolicyRow, deployment)
        specs = (row.spec.get("alerts") if row is not None else None) or []
        try:
            return parse_rules(list(specs))
        except InvalidArgument as exc:
            raise InvalidArgument(f"monitoring policy of {deployment!r}: {exc}; fix it with "
                                  f"`threadline monitor policy {deployment} --file FILE`") from exc

    def _open_row(self, session: Session, deployment: str, rule: str) -> AlertRow | None:
        rows = session.scalars(select(AlertRow).where(
            AlertRow.deployment == deployment, AlertRow.rule == rule,
            AlertRow.status.in_(("pending", "firing"))).order_by(AlertRow.id)).all()
        for extra in rows[1:]:  # a lost race opened a second row: keep one incident
            extra.status = "resolved"
            extra.resolved_at = extra.last_at
            extra.meta = {**extra.meta, "duplicate_of": rows[0].id}
        return rows[0] if rows else None

    def _step(self, session: Session, deployment: str, rule: AlertRule, value: float, now: int,
              check_id: str | None) -> AlertEvent | None:
        row = self._open_row(session, deployment, rule.name)
        if not rule.breached(value):
            if row is None:
                return None
            if row.status == "pending":
                session.delete(row)  # the run of breaches ended short of for_windows
                return None
            row.status, row.resolved_at, row.last_at, row.value = "resolved", now, now, value
            windows = int(row.meta.get("windows", 1))
            row.message = (f"{rule.metric} is {value:g}, no longer {rule.op} {rule.threshold:g} "
                           f"after {windows} window{'s' if windows > 1 else ''}")
            row.meta = {**row.meta, "resolved_check_id": check_id}
            session.flush()
            return AlertEvent("resolved", AlertRecord.from_row(row), rule, check_id)
        if row is None:
            row = AlertRow(deployment=deployment, rule=rule.name, status="pending", value=value,
                           message="", first_at=now, last_at=now,
                           meta={"breaches": 0, "since": now, "first_check_id": check_id})
            session.add(row)
        breaches = int(row.meta.get("breaches", 0)) + 1
        meta = {**row.meta, "breaches": breaches, "severity": rule.severity, "metric": rule.metric,
                "op": rule.op, "threshold": rule.threshold, "for_windows": rule.for_windows,
                "last_check_id": check_id}
        row.value, row.last_at = value, now
        fires = row.status == "pending" and breaches >= rule.for_windows
        if row.status == "firing":
            meta["windows"] = int(row.meta.get("windows", 1)) + 1
        elif fires:
            row.status, row.first_at, meta["windows"] = "firing", now, 1
        row.meta = meta
        runs = f" for {breaches} windows" if breaches > 1 else ""
        row.message = f"{rule.metric} is {value:g}, {rule.op} {rule.threshold:g}{runs}"
        session.flush()
        return AlertEvent("firing", AlertRecord.from_row(row), rule, check_id) if fires else None

    # ------------------------------------------------------------------ notifications
    def _notify(self, event: AlertEvent, now: int) -> AlertEvent:
        alert, outcomes = event.alert, []
        for output in event.rule.outputs:
            if output == "api":
                continue  # stored already: the API serves it
            if output == "log":
                level = logging.INFO if event.kind == "resolved" else _LOG_LEVEL[event.rule.severity]
                logger.log(level, "alert %s %s/%s [%s]: %s", event.kind, alert.deployment, alert.rule,
                           event.rule.severity, alert.message)
                continue
            outcome = self._deliver(event, output)
            outcomes.append({"event": event.kind, "output": output, "at": now, **outcome})
        if outcomes:
            self._record(alert.id, outcomes)
        return replace(event, notifications=tuple(outcomes))

    def _deliver(self, event: AlertEvent, output: str) -> dict[str, Any]:
        name = output.split(":", 1)[1]
        hook = self.webhooks.get(name)
        if hook is None:
            error = f"no webhook named {name!r} is configured; add it to the policy's webhooks"
            logger.warning("alert %s %s/%s: %s", event.kind, event.alert.deployment, event.alert.rule, error)
            return {"ok": False, "status": None, "error": error}
        try:
            result = hook.post(event.payload()).to_dict()
        except Exception as exc:  # noqa: BLE001 - a notification channel must never stop monitoring
            result = {"ok": False, "status": None, "error": f"{type(exc).__name__}: {exc}"}
        if not result["ok"]:
            logger.warning("alert %s %s/%s: webhook %r (%s) failed: %s", event.kind, event.alert.deployment,
                           event.alert.rule, name, getattr(hook, "origin", "?"), result["error"])
        return result

    def _record(self, alert_id: int, outcomes: list[dict[str, Any]]) -> None:
        try:
            with self.db.session() as session, session.begin():
                row = session.get(AlertRow, alert_id)
                if row is not None:
                    kept = [*row.meta.get("notifications", []), *outcomes][-MAX_NOTIFICATIONS:]
                    row.meta = {**row.meta, "notifications": kept}
        except SQLAlchemyError:  # the alert itself is stored; losing the delivery log is survivable
            logger.exception("alert %s: cannot record notification outcomes", alert_id)

    # ------------------------------------------------------------------ reading and acking
    def history(self, deployment: str | None = None, *, status: str | None = None,
                limit: int = 100) -> list[AlertRecord]:
        """Alerts, newest first; `pending` rows only when `status="pending"`.

        Raises:
            InvalidArgument: unknown status or a limit below 1.
        """
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"alert status must be one of {list(STATUSES)}, not {status!r}")
        if type(limit) is not int or limit < 1:
            raise InvalidArgument(f"limit must be an integer of at least 1, not {limit!r}")
        query = select(AlertRow).where(
            AlertRow.status.in_((status,) if status else ("firing", "resolved")))
        if deployment is not None:
            query = query.where(AlertRow.deployment == deployment)
        with self.db.session() as session:
            rows = session.scalars(query.order_by(AlertRow.id.desc()).limit(limit)).all()
            return [AlertRecord.from_row(r) for r in rows]

    def open_alerts(self, deployment: str) -> list[AlertRecord]:
        """The firing alerts of a deployment, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(select(AlertRow).where(
                AlertRow.deployment == deployment, AlertRow.status == "firing").order_by(AlertRow.id)).all()
            return [AlertRecord.from_row(r) for r in rows]

    def get(self, alert_id: int) -> AlertRecord:
        """One alert by id.

        Raises:
            NotFound: no alert has that id.
        """
        with self.db.session() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"alert {alert_id} does not exist; list alerts with "
                               "`threadline monitor alerts`")
            return AlertRecord.from_row(row)

    def acknowledge(self, alert_id: int, by: str) -> AlertRecord:
        """Record who took charge of an alert; a second acknowledgement keeps the first.

        Raises:
            NotFound: no alert has that id.
            InvalidArgument: `by` is empty.
        """
        if not isinstance(by, str) or not by.strip() or len(by) > 200:
            raise InvalidArgument("acknowledge needs who acknowledges (1-200 characters)")
        with self.db.session() as session, session.begin():
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"alert {alert_id} does not exist; list alerts with "
                               "`threadline monitor alerts`")
            if row.acked_by is None:
                row.acked_by, row.acked_at = by.strip(), self.clock()
            session.flush()
            return AlertRecord.from_row(row)
