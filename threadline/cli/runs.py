"""`threadline runs ...`: list, show, compare and inspect tracked runs; delegates to tracking."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, human, repos
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.tracking.model import Run
    from threadline.tracking.store import TrackingStore

app = typer.Typer(help="Tracked runs: list, show, compare.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _store() -> TrackingStore:
    from threadline.tracking.store import TrackingStore

    return TrackingStore(repos())


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.6g}"


def _get(store: TrackingStore, run: str) -> Run:
    return store.get_run(store.resolve_run_prefix(run))


@app.command("experiments")
def experiments(
    all_: Annotated[bool, typer.Option("--all", help="Include deleted experiments.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List experiments."""
    found = _store().list_experiments("all" if all_ else "active")
    if as_json:
        emit_json([e.to_dict() for e in found])
        return
    table = Table("id", "name", "stage", "created")
    for e in found:
        table.add_row(str(e.id), escape(e.name), e.lifecycle_stage, _when(e.created_at))
    console.print(table)


@app.command("list")
def list_(
    experiment: Annotated[list[str] | None, typer.Option("--experiment", "-e",
                          help="Experiment name (repeatable; default: all active ones).")] = None,
    filter_: Annotated[str, typer.Option("--filter", "-f",
                       help="e.g. \"metrics.auc > 0.9 and params.C = '1.0'\"")] = "",
    order_by: Annotated[list[str] | None, typer.Option("--order-by", "-o",
                        help="e.g. 'metrics.auc DESC' (repeatable).")] = None,
    max_: Annotated[int, typer.Option("--max", "-n", help="At most this many runs.")] = 100,
    deleted: Annotated[bool, typer.Option("--deleted", help="Show deleted runs instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first, optionally filtered and ordered (MLflow's search syntax)."""
    store = _store()
    if experiment:
        ids = [store.experiment(name, create=False).id for name in experiment]
    else:
        ids = [e.id for e in store.list_experiments("all")]
    found, _token = store.search_runs(ids, filter_, order_by or (), max_,
                                      view="deleted" if deleted else "active")
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    metric_keys = sorted({k for r in found for k in r.metrics})[:6]
    table = Table("run", "name", "status", "started", *metric_keys)
    for r in found:
        table.add_row(r.info.id[:12], escape(r.info.name), r.info.status, _when(r.info.start_time),
                      *(_num(r.metrics[k].value) if k in r.metrics else "-" for k in metric_keys))
    console.print(table)
    if not found:
        err_console.print("no runs match")


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix (6+ hex digits).")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run: attributes, params, latest metrics, tags, inputs and artifacts."""
    store = _store()
    found = _get(store, run)
    artifacts = _all_artifacts(store, found.info.id)
    if as_json:
        emit_json({**found.to_dict(), "artifacts": artifacts})
        return
    info = found.info
    console.print(f"[bold]run {info.id}[/bold] {escape(info.name)}  {info.status}  "
                  f"experiment {info.experiment_id}  by {escape(info.user)}")
    console.print(f"started {_when(info.start_time)}  ended {_when(info.end_time)}"
                  + (f"  parent {info.parent_id}" if info.parent_id else ""))
    for title, values in (("params", found.params), ("tags", found.tags)):
        if values:
            table = Table(title, "value", title_justify="left")
            for k, v in values.items():
                table.add_row(escape(k), escape(v))
            console.print(table)
    if found.metrics:
        table = Table("metric", "value", "step", "time")
        for k, m in found.metrics.items():
            table.add_row(escape(k), _num(m.value), str(m.step), _when(m.timestamp))
        console.print(table)
    for i in found.inputs:
        console.print(f"input {escape(i['ref'])} -> {i['commit'][:12]}")
    for a in artifacts:
        console.print(f"artifact {escape(a['path'])}  {human(a['size'])}")


def _all_artifacts(store: TrackingStore, run_id: str, path: str = "") -> list[dict[str, Any]]:
    out = []
    for entry in store.list_artifacts(run_id, path):
        if entry["is_dir"]:
            out += _all_artifacts(store, run_id, entry["path"])
        else:
            out.append(entry)
    return out


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids or prefixes.")],
    all_: Annotated[bool, typer.Option("--all", help="Show every param and metric.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare runs side by side: the params and metrics that differ (all with --all)."""
    if len(runs) < 2:
        raise InvalidArgument("compare needs at least two runs")
    store = _store()
    found = [_get(store, r) for r in runs]
    rows: list[dict[str, Any]] = []
    for kind in ("param", "metric"):
        keys = sorted({k for r in found for k in (r.params if kind == "param" else r.metrics)})
        for key in keys:
            values: list[Any] = []
            for r in found:
                if kind == "param":
                    values.append(r.params.get(key))
                else:
                    m = r.metrics.get(key)
                    values.append(None if m is None or math.isnan(m.value) else m.value)
            if all_ or len({repr(v) for v in values}) > 1:
                rows.append({"kind": kind, "key": key, "values": values})
    if as_json:
        emit_json({"runs": [r.info.id for r in found], "rows": rows})
        return
    table = Table("", "key", *(f"{r.info.id[:8]} {escape(r.info.name)}" for r in found))
    for row in rows:
        shown = ["-" if v is None else (_num(v) if isinstance(v, float) else escape(str(v)))
                 for v in row["values"]]
        table.add_row(row["kind"], escape(row["key"]), *shown)
    console.print(table)
    if not rows:
        err_console.print("no differences in params or metrics (use --all to see them)")


@app.command()
def history(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    metric: Annotated[str, typer.Argument(help="Metric key.")],
    as_json: JsonOpt = False,
) -> None:
    """Every logged point of one metric of a run, by step."""
    store = _store()
    run_id = store.resolve_run_prefix(run)
    points = store.metric_history(run_id, metric)
    if as_json:
        emit_json([p.to_dict() for p in points])
        return
    if not points:
        err_console.print(f"run {run_id[:12]} has no metric {metric!r}")
        return
    table = Table("step", "value", "time")
    for p in points:
        table.add_row(str(p.step), _num(p.value), _when(p.timestamp))
    console.print(table)
