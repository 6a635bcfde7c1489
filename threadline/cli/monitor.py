"""`threadline monitor ...`: policies, passes, alerts and the actions taken; delegates to
`threadline.monitor`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.monitor.loop import Monitor, Pass

app = typer.Typer(help="Monitoring: drift, accuracy, alerts, and the policy's actions.",
                  no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _monitor() -> Monitor:
    from threadline.monitor.loop import Monitor
    from threadline.registry import ModelRegistry

    return Monitor(ModelRegistry(repos()))


def _when(ms: int | None) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _show_pass(done: Pass) -> None:
    check = done.check
    console.print(f"check {check.id[:8]} of {escape(check.deployment)}: {check.rows} rows "
                  f"[{_when(check.window_start)} .. {_when(check.window_end)}] -> [bold]{check.verdict}[/]")
    table = Table("version", "rows", "drifted columns", "accuracy", "estimated", "error rate", "p95 ms")
    for vid, found in check.versions.items():
        drift = found.get("drift") or {}
        table.add_row(escape(vid), str(found["rows"]), escape(", ".join(drift.get("drifted", [])) or "-"),
                      _fmt(found["accuracy"]["value"]),
                      _fmt((found.get("estimated_accuracy") or {}).get("value")),
                      _fmt(found.get("error_rate")), _fmt(found["latency"]["p95_ms"]))
    console.print(table)
    for event in done.alerts:
        console.print(escape(f"alert: {event}"))
    for action in done.actions:
        console.print(escape(f"action #{action['id']}: {action['action']} ({action['status']}) "
                             f"{ {k: v for k, v in action.items() if k not in ('id', 'action', 'status')} }"))


@app.command()
def policy(
    deployment: str,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Policy YAML to store.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a deployment's monitoring policy, or store one from --file."""
    import yaml

    monitor = _monitor()
    if file is not None:
        if not file.is_file():
            raise InvalidArgument(f"policy file {file} does not exist")
        spec = yaml.safe_load(file.read_text())
        if not isinstance(spec, dict):
            raise InvalidArgument(f"{file} must hold a mapping (see `threadline monitor policy --help`)")
        monitor.set_policy(deployment, spec)
        err_console.print(f"stored the monitoring policy of {escape(deployment)}")
    found = monitor.policy(deployment)
    from dataclasses import asdict

    body = asdict(found)
    if as_json:
        emit_json(body)
    else:
        console.print(escape(yaml.safe_dump(body, sort_keys=False)))


@app.command()
def run(
    deployment: str,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float | None, typer.Option(help="Seconds between passes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the newest traffic, raise alerts and act, once or every interval until Ctrl-C."""
    monitor = _monitor()
    if once:
        done = monitor.run_once(deployment)
        if as_json:
            emit_json(done.to_dict())
        else:
            _show_pass(done)
        return
    stop = threading.Event()
    try:
        monitor.run_forever(deployment, stop, interval_s=interval,
                            on_pass=(lambda d: emit_json(d.to_dict())) if as_json else _show_pass)
    except KeyboardInterrupt:
        stop.set()


@app.command()
def status(deployment: str, as_json: JsonOpt = False) -> None:
    """Latest checks, open alerts and recent actions of a deployment."""
    from sqlalchemy import select

    from threadline.meta.models import MonitorCheckRow
    from threadline.monitor.alerts import Alerts

    monitor = _monitor()
    with monitor.db.session() as session:
        checks = session.scalars(select(MonitorCheckRow).where(MonitorCheckRow.deployment == deployment)
                                 .order_by(MonitorCheckRow.created_at.desc()).limit(10)).all()
        found = [(c.id, c.created_at, c.rows, c.verdict) for c in checks]
    alerts = Alerts(monitor.db).open_alerts(deployment)
    actions = monitor.actions(deployment, limit=10)
    if as_json:
        emit_json({"checks": [{"id": i, "at": t, "rows": r, "verdict": v} for i, t, r, v in found],
                   "alerts": [a.to_dict() for a in alerts], "actions": actions})
        return
    table = Table("check", "at", "rows", "verdict")
    for check_id, at, rows, verdict in found:
        table.add_row(check_id[:8], _when(at), str(rows), verdict)
    console.print(table)
    console.print(f"open alerts: {len(alerts)}")
    for alert in alerts:
        console.print(escape(f"  #{alert.id} {alert.rule}: {alert.message}"))
    for action in actions:
        console.print(escape(f"  action #{action['id']} {action['action']} ({action['status']}) at "
                             f"{_when(action['at'])}{' (undone)' if action['undone_at'] else ''}"))


@app.command()
def alerts(deployment: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Alert history, newest first."""
    from threadline.monitor.alerts import Alerts

    found = Alerts(_monitor().db).history(deployment)
    if as_json:
        emit_json([a.to_dict() for a in found])
        return
    table = Table("id", "deployment", "rule", "status", "value", "first", "acked by")
    for a in found:
        table.add_row(str(a.id), escape(a.deployment), escape(a.rule), a.status, _fmt(a.value),
                      _when(a.first_at), escape(a.acked_by or ""))
    console.print(table)


@app.command()
def ack(alert_id: int, by: Annotated[str, typer.Option(help="Who acknowledges.")] = "") -> None:
    """Acknowledge an alert."""
    from threadline.monitor.alerts import Alerts

    data = repos()
    Alerts(data.db).acknowledge(alert_id, by or data.author)
    err_console.print(f"acknowledged alert #{alert_id}")


@app.command()
def actions(deployment: str, as_json: JsonOpt = False) -> None:
    """What the policy did (fallback, retrain, canary rollback, promote), newest first."""
    found = _monitor().actions(deployment)
    if as_json:
        emit_json(found)
        return
    table = Table("id", "action", "status", "reason", "at", "undone")
    for a in found:
        table.add_row(str(a["id"]), a["action"], a["status"], escape(str(a["reason"])), _when(a["at"]),
                      "yes" if a["undone_at"] else "")
    console.print(table)


@app.command()
def undo(action_id: int) -> None:
    """Undo a policy action: restore the deployment revision (and alias) from before it."""
    result = _monitor().undo(action_id)
    err_console.print(f"undid action #{action_id}: {result['deployment']} is at revision "
                      f"{result['revision']}")


@app.command()
def approve(deployment: str, by: Annotated[str, typer.Option(help="Who approves.")] = "") -> None:
    """Approve promoting the deployment's canary once it holds (policies with approve: true)."""
    data = repos()
    _monitor().approve(deployment, by or data.author)
    err_console.print(f"approved the canary of {escape(deployment)}")


@app.command()
def report(
    deployment: str,
    check: Annotated[str | None, typer.Option(help="A check id (prefix); default: the latest.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML.")]
    = Path("monitor-report.html"),
) -> None:
    """Write the HTML report of a check: drift per column with histograms, accuracy over time,
    actions."""
    from threadline.monitor.report import render_report

    output.write_text(render_report(_monitor(), deployment, check))
    err_console.print(f"wrote {output}")


@app.command()
def accuracy(
    deployment: str,
    window_minutes: Annotated[float | None, typer.Option(help="Group labels by windows this long.")]
    = None,
    slice_by: Annotated[str | None, typer.Option(help="An input column to slice by.")] = None,
    metric: Annotated[str, typer.Option(help="accuracy, error_rate, mae or rmse.")] = "accuracy",
    as_json: JsonOpt = False,
) -> None:
    """Realised accuracy from the labels received, per window, version, route and slice."""
    from threadline.monitor.accuracy import realised
    from threadline.serving.feedback import join_feedback

    joined = join_feedback(repos(), deployment)
    points = realised(joined, metric=metric, slice_by=slice_by,
                      window_ms=int(window_minutes * 60_000) if window_minutes else None)
    if as_json:
        emit_json([p.to_dict() for p in points])
        return
    table = Table("window", "version", "route", "slice", "labelled rows", metric)
    for p in points:
        table.add_row(_when(p.window_start), f"v{p.version}", escape(p.route), escape(p.slice or "-"),
                      str(p.rows), _fmt(p.value))
    console.print(table)
