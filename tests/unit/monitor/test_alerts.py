"""Alert rules: thresholds, sustained windows, one row per incident, resolve, ack, no-data
windows, and notifications that never break evaluation (webhooks go to a local listener)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.meta.models import AlertRow, MonitorPolicyRow
from threadline.monitor.alerts import AlertRule, Alerts, flatten, parse_rules
from threadline.monitor.webhook import SIGNATURE_HEADER, Webhook, WebhookResult

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos
    from threadline.meta.db import Database


class Clock:
    """Milliseconds that advance one second per reading."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def rule(**kw: Any) -> AlertRule:
    spec = {"name": "drift", "metric": "drift.share", "op": "above", "threshold": 0.3, **kw}
    return AlertRule.from_dict(spec)


@pytest.fixture
def db(home: DataRepos) -> Database:
    return home.db


def make_alerts(db: Database, *rules: AlertRule, webhooks: dict[str, Any] | None = None) -> Alerts:
    return Alerts(db, webhooks, rules=list(rules), clock=Clock())


def drift(share: float | None) -> dict[str, float | None]:
    return {"drift.share": share}


# ---------------------------------------------------------------------------- a local receiver


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.status = 200

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"headers": dict(self.headers), "body": body})
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# ---------------------------------------------------------------------------- rules


def test_rules_parse_with_defaults() -> None:
    (r,) = parse_rules([{"name": "acc", "metric": "accuracy.value", "op": "below", "threshold": 1}])
    assert r == AlertRule("acc", "accuracy.value", "below", 1.0, 1, "warning", ("log",))
    assert r.to_dict()["outputs"] == ["log"]
    assert AlertRule.from_dict(r.to_dict()) == r


@pytest.mark.parametrize(("spec", "message"), [
    ({"metric": "x", "op": "above", "threshold": 1}, "missing key 'name'"),
    ({"name": "r", "op": "above", "threshold": 1}, "alert rule 'r': missing key 'metric'"),
    ({"name": "r", "metric": "x", "threshold": 1}, "missing key 'op'"),
    ({"name": "r", "metric": "x", "op": "above"}, "missing key 'threshold'"),
    ({"name": "r", "metric": "x", "op": ">", "threshold": 1}, "op must be one of"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": "high"}, "threshold must be a finite number"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": float("nan")}, "threshold must be a finite"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": True}, "threshold must be a finite"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "for_windows": 0}, "for_windows must be"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "for_windows": 1.5}, "for_windows must be"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "severity": "page"}, "severity must be"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "outputs": "log"}, "outputs must be a list"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "outputs": ["email"]}, "output 'email'"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "outputs": ["webhook:"]}, "webhook:<name>"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "outputs": [{"webhook": "a"}]}, "output {"),
    ({"name": "r", "metric": "x", "op": "above", "threshold": 1, "colour": 1}, "unknown key 'colour'"),
    ({"name": "r", "metric": "a..b", "op": "above", "threshold": 1}, "metric must be a dotted path"),
    ({"name": "r", "metric": "", "op": "above", "threshold": 1}, "metric must be a dotted path"),
    ({"name": "two words", "metric": "x", "op": "above", "threshold": 1}, "rule name must be"),
    ({"name": "x" * 101, "metric": "x", "op": "above", "threshold": 1}, "rule name must be"),
])
def test_bad_rules_are_refused_naming_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_rules([spec])


def test_rules_built_directly_are_checked_and_normalised() -> None:
    r = AlertRule("acc", "accuracy.value", "below", 1, outputs=["log", "webhook:ops", "log"])  # type: ignore[arg-type]
    assert r.outputs == ("log", "webhook:ops")
    assert isinstance(r.threshold, float)
    with pytest.raises(InvalidArgument, match="alert rule 'acc': op must be one of"):
        AlertRule("acc", "accuracy.value", "under", 1.0)


def test_rule_lists_are_checked_as_a_whole() -> None:
    one = {"name": "r", "metric": "x", "op": "above", "threshold": 1, "outputs": ["webhook:ops"]}
    with pytest.raises(InvalidArgument, match="two alert rules are named 'r'"):
        parse_rules([one, one])
    with pytest.raises(InvalidArgument,
                       match=r"'webhook:ops' names no configured webhook \(configured: \['pager'\]\)"):
        parse_rules([one], webhooks=["pager"])
    assert parse_rules([one], webhooks=["ops"])[0].webhooks == ("ops",)
    with pytest.raises(InvalidArgument, match="must be a list"):
        parse_rules(one)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be a mapping"):
        parse_rules(["drift"])  # type: ignore[list-item]


def test_flatten_makes_dotted_keys() -> None:
    result = {"drift": {"share": 0.25, "detected": True, "columns": {"age": {"effect": 0.4, "test": "ks"}}},
              "accuracy": {"value": None}, "rows": 10, "versions": [1, 2]}
    assert flatten(result) == {"drift.share": 0.25, "drift.detected": 1.0, "drift.columns.age.effect": 0.4,
                               "accuracy.value": None, "rows": 10.0}


# ---------------------------------------------------------------------------- thresholds and windows


@pytest.mark.parametrize(("op", "threshold", "value", "fires"), [
    ("above", 0.3, 0.31, True), ("above", 0.3, 0.3, False), ("above", 0.3, 0.1, False),
    ("below", 0.8, 0.79, True), ("below", 0.8, 0.8, False), ("below", 0.8, 0.95, False),
    ("above", 100, float("inf"), True), ("below", 0, -3, True),
])
def test_thresholds_fire_strictly_beyond(db: Database, op: str, threshold: float, value: float,
                                         fires: bool) -> None:
    alerts = make_alerts(db, rule(op=op, threshold=threshold))
    events = alerts.evaluate("web", drift(value))
    assert [e.kind for e in events] == (["firing"] if fires else [])
    assert len(alerts.open_alerts("web")) == (1 if fires else 0)
    if fires:
        assert events[0].alert.value == value
        assert events[0].alert.message.startswith(f"drift.share is {value:g}, {op} {threshold:g}")


def test_sustained_rule_fires_on_the_nth_window_not_before(db: Database) -> None:
    alerts = make_alerts(db, rule(for_windows=3))
    assert alerts.evaluate("web", drift(0.5), check_id="c1") == []
    assert alerts.evaluate("web", drift(0.6), check_id="c2") == []
    (pending,) = alerts.history("web", status="pending")
    assert pending.meta["breaches"] == 2
    assert alerts.history("web") == []
    assert alerts.open_alerts("web") == []
    (event,) = alerts.evaluate("web", drift(0.7), check_id="c3")
    assert event.kind == "firing"
    assert event.alert.status == "firing"
    assert event.alert.message == "drift.share is 0.7, above 0.3 for 3 windows"
    assert event.alert.meta["first_check_id"] == "c1"
    assert event.alert.meta["last_check_id"] == "c3"
    assert event.alert.meta["since"] < event.alert.first_at
    assert alerts.history("web", status="pending") == []
    assert [a.id for a in alerts.history("web")] == [event.alert.id]  # the pending row became the alert


def test_a_recovering_window_resets_the_count(db: Database) -> None:
    alerts = make_alerts(db, rule(for_windows=3))
    for share in (0.5, 0.5, 0.1, 0.5, 0.5):
        assert alerts.evaluate("web", drift(share)) == []
    assert alerts.history("web", status="pending")[0].meta["breaches"] == 2
    assert [e.kind for e in alerts.evaluate("web", drift(0.5))] == ["firing"]


def test_the_count_survives_a_restart(db: Database) -> None:
    assert make_alerts(db, rule(for_windows=2)).evaluate("web", drift(0.5)) == []
    assert [e.kind for e in make_alerts(db, rule(for_windows=2)).evaluate("web", drift(0.5))] == ["firing"]


def test_one_row_per_incident_and_one_notification(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadline.monitor.alerts")
    alerts = make_alerts(db, rule())
    (fired,) = alerts.evaluate("web", drift(0.4))
    for share in (0.5, 0.6, 0.7):
        assert alerts.evaluate("web", drift(share)) == []
    (alert,) = alerts.history("web")
    assert alert.id == fired.alert.id
    assert alert.value == 0.7
    assert alert.first_at == fired.alert.first_at < alert.last_at
    assert alert.meta["windows"] == 4
    assert alert.meta["breaches"] == 4
    lines = [r for r in caplog.records if r.name == "threadline.monitor.alerts"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == "alert firing web/drift [warning]: drift.share is 0.4, above 0.3"


def test_recovery_resolves_and_a_new_breach_is_a_new_incident(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadline.monitor.alerts")
    alerts = make_alerts(db, rule(severity="critical"))
    (fired,) = alerts.evaluate("web", drift(0.5))
    (resolved,) = alerts.evaluate("web", drift(0.1), check_id="c9")
    assert resolved.kind == "resolved"
    assert resolved.alert.id == fired.alert.id
    assert resolved.alert.status == "resolved"
    assert resolved.alert.resolved_at is not None
    assert resolved.alert.resolved_at > fired.alert.first_at
    assert resolved.alert.value == 0.1
    assert resolved.alert.message == "drift.share is 0.1, no longer above 0.3 after 1 window"
    assert resolved.alert.meta["resolved_check_id"] == "c9"
    assert alerts.open_alerts("web") == []
    assert alerts.evaluate("web", drift(0.1)) == []  # stays resolved, no second notice
    (again,) = alerts.evaluate("web", drift(0.9))
    assert again.alert.id != fired.alert.id
    assert [a.status for a in alerts.history("web")] == ["firing", "resolved"]
    levels = [r.levelno for r in caplog.records if r.name == "threadline.monitor.alerts"]
    assert levels == [logging.ERROR, logging.INFO, logging.ERROR]


def test_rules_and_deployments_are_independent(db: Database) -> None:
    acc = rule(name="acc", metric="accuracy.value", op="below", threshold=0.8)
    alerts = make_alerts(db, rule(), acc)
    events = alerts.evaluate("web", {"drift.share": 0.5, "accuracy.value": 0.7})
    assert sorted(e.alert.rule for e in events) == ["acc", "drift"]
    assert alerts.evaluate("api", {"drift.share": 0.5, "accuracy.value": 0.9})[0].alert.rule == "drift"
    assert len(alerts.open_alerts("web")) == 2
    assert [a.rule for a in alerts.open_alerts("api")] == ["drift"]
    assert len(alerts.history()) == 3
    assert len(alerts.history(limit=1)) == 1


# ---------------------------------------------------------------------------- missing values


@pytest.mark.parametrize("missing", [{}, {"drift.share": None}, {"drift.share": float("nan")},
                                     {"drift.share": "high"}])
def test_missing_values_neither_fire_resolve_nor_reset(db: Database, missing: dict[str, Any]) -> None:
    alerts = make_alerts(db, rule(for_windows=2))
    assert alerts.evaluate("web", missing) == []
    assert alerts.history("web", status="pending") == []
    assert alerts.evaluate("web", drift(0.5)) == []
    assert alerts.evaluate("web", missing) == []  # does not reset the count
    (fired,) = alerts.evaluate("web", drift(0.5))
    assert fired.alert.meta["breaches"] == 2
    assert alerts.evaluate("web", missing) == []  # does not resolve
    assert alerts.get(fired.alert.id).status == "firing"
    assert alerts.get(fired.alert.id).last_at == fired.alert.last_at


def test_rules_come_from_the_stored_policy_by_default(db: Database) -> None:
    with db.session() as session, session.begin():
        session.add(MonitorPolicyRow(deployment="web", updated_at=0, spec={
            "alerts": [{"name": "lat", "metric": "latency.p95_ms", "op": "above", "threshold": 250}]}))
    alerts = Alerts(db, clock=Clock())
    assert [e.alert.rule for e in alerts.evaluate("web", {"latency.p95_ms": 300.0})] == ["lat"]
    assert alerts.evaluate("other", {"latency.p95_ms": 300.0}) == []  # no policy, no rules
    assert alerts.evaluate("other", {"latency.p95_ms": 300.0}, rules=[rule(metric="latency.p95_ms")])
    with db.session() as session, session.begin():
        row = session.get(MonitorPolicyRow, "web")
        assert row is not None
        row.spec = {"alerts": [{"name": "lat", "metric": "latency.p95_ms", "op": "sideways", "threshold": 1}]}
    with pytest.raises(InvalidArgument, match="monitoring policy of 'web': alert rule 'lat': op must be"):
        alerts.evaluate("web", {"latency.p95_ms": 300.0})


def test_a_lost_race_leaves_one_open_row(db: Database) -> None:
    with db.session() as session, session.begin():
        for _ in range(2):
            session.add(AlertRow(deployment="web", rule="drift", status="firing", value=0.5, message="",
                                 first_at=1, last_at=2, meta={"breaches": 1, "windows": 1}))
    alerts = make_alerts(db, rule())
    assert alerts.evaluate("web", drift(0.5)) == []
    (kept,) = alerts.open_alerts("web")
    (closed,) = [a for a in alerts.history("web") if a.status == "resolved"]
    assert closed.meta["duplicate_of"] == kept.id


# ---------------------------------------------------------------------------- history and ack


def test_acknowledge_keeps_the_first(db: Database) -> None:
    alerts = make_alerts(db, rule())
    (fired,) = alerts.evaluate("web", drift(0.5))
    first = alerts.acknowledge(fired.alert.id, "ana")
    assert first.acked_by == "ana"
    assert first.acked_at is not None
    second = alerts.acknowledge(fired.alert.id, "bo")
    assert (second.acked_by, second.acked_at) == ("ana", first.acked_at)
    assert alerts.get(fired.alert.id).to_dict()["acked_by"] == "ana"
    with pytest.raises(NotFound, match="alert 999 does not exist"):
        alerts.acknowledge(999, "ana")
    with pytest.raises(NotFound, match="alert 999 does not exist"):
        alerts.get(999)
    with pytest.raises(InvalidArgument, match="who acknowledges"):
        alerts.acknowledge(fired.alert.id, " ")


def test_history_filters_and_checks_its_arguments(db: Database) -> None:
    alerts = make_alerts(db, rule())
    alerts.evaluate("web", drift(0.5))
    alerts.evaluate("web", drift(0.1))
    alerts.evaluate("web", drift(0.5))
    assert [a.status for a in alerts.history("web", status="resolved")] == ["resolved"]
    assert [a.status for a in alerts.history("web", status="firing")] == ["firing"]
    assert alerts.history("api") == []
    record = alerts.history("web")[0].to_dict()
    assert set(record) >= {"id", "deployment", "rule", "status", "severity", "value", "message",
                           "first_at", "last_at", "resolved_at", "acked_by", "acked_at", "meta"}
    with pytest.raises(InvalidArgument, match="alert status must be one of"):
        alerts.history(status="open")
    with pytest.raises(InvalidArgument, match="limit must be"):
        alerts.history(limit=0)


# ---------------------------------------------------------------------------- webhook outputs


def test_webhook_receives_firing_and_resolved_json(db: Database, receiver: Receiver) -> None:
    hook = Webhook(receiver.url, allow=["127.0.0.1"], secret="k")
    alerts = make_alerts(db, rule(outputs=["webhook:ops", "api"], severity="critical"),
                         webhooks={"ops": hook})
    (fired,) = alerts.evaluate("web", drift(0.5), check_id="c1")
    alerts.evaluate("web", drift(0.6))  # still firing: nobody is told again
    (resolved,) = alerts.evaluate("web", drift(0.1), check_id="c3")
    assert len(receiver.requests) == 2
    first, last = (json.loads(r["body"]) for r in receiver.requests)
    assert first["type"] == "threadline.alert"
    assert (first["event"], first["check_id"]) == ("firing", "c1")
    assert first["rule"] == {"name": "drift", "metric": "drift.share", "op": "above", "threshold": 0.3,
                             "for_windows": 1, "severity": "critical", "outputs": ["webhook:ops", "api"]}
    assert first["alert"]["id"] == fired.alert.id
    assert (first["alert"]["deployment"], first["alert"]["status"], first["alert"]["value"]) == (
        "web", "firing", 0.5)
    assert "meta" not in first["alert"]
    assert (last["event"], last["alert"]["status"], last["alert"]["value"]) == ("resolved", "resolved", 0.1)
    for request in receiver.requests:
        expected = "sha256=" + hmac.new(b"k", request["body"], hashlib.sha256).hexdigest()
        assert request["headers"][SIGNATURE_HEADER] == expected
    assert fired.to_dict()["notifications"] == list(fired.notifications)
    assert fired.notifications[0]["ok"]
    assert resolved.notifications[0]["status"] == 200
    stored = alerts.get(fired.alert.id).meta["notifications"]
    assert [(n["event"], n["output"], n["ok"]) for n in stored] == [
        ("firing", "webhook:ops", True), ("resolved", "webhook:ops", True)]


class _Broken:
    origin = "http://broken.test"

    def post(self, payload: dict[str, Any]) -> WebhookResult:
        raise RuntimeError("receiver exploded")


def test_failing_webhooks_never_break_evaluate(db: Database, receiver: Receiver,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="threadline.monitor.alerts")
    receiver.status = 500
    hooks: dict[str, Any] = {
        "down": Webhook(receiver.url, allow=["127.0.0.1"]),
        "guarded": Webhook(receiver.url),  # loopback, not allowed: refused by the guard
        "broken": _Broken(),
    }
    outputs = ["webhook:down", "webhook:guarded", "webhook:broken", "webhook:missing", "log"]
    alerts = make_alerts(db, rule(outputs=outputs), webhooks=hooks)
    (event,) = alerts.evaluate("web", drift(0.5))
    assert event.alert.status == "firing"
    by_output = {n["output"]: n for n in event.notifications}
    assert set(by_output) == {"webhook:down", "webhook:guarded", "webhook:broken", "webhook:missing"}
    assert not any(n["ok"] for n in event.notifications)
    assert by_output["webhook:down"]["status"] == 500
    assert "refused: loopback address" in by_output["webhook:guarded"]["error"]
    assert by_output["webhook:broken"]["error"] == "RuntimeError: receiver exploded"
    assert "no webhook named 'missing'" in by_output["webhook:missing"]["error"]
    assert receiver.connections == 1  # only the allowed hook reached the receiver
    stored = alerts.get(event.alert.id).meta["notifications"]
    assert len(stored) == 4
    assert not any(n["ok"] for n in stored)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("failed" in w or "no webhook named" in w for w in warnings) == 4
    assert not any(receiver.url in w for w in warnings)  # the path (a token, often) is not logged


def test_notification_history_is_capped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("threadline.monitor.alerts.MAX_NOTIFICATIONS", 1)
    alerts = make_alerts(db, rule(outputs=["webhook:missing"]))
    (fired,) = alerts.evaluate("web", drift(0.5))
    alerts.evaluate("web", drift(0.1))
    (kept,) = alerts.get(fired.alert.id).meta["notifications"]
    assert kept["event"] == "resolved"


def test_deployment_names_are_checked(db: Database) -> None:
    with pytest.raises(InvalidArgument):
        make_alerts(db, rule()).evaluate("../web", drift(0.5))
