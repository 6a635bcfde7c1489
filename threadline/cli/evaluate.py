"""`threadline evaluate`: parse, delegate to `threadline.evaluate.evaluate`, show the result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument, StorageError

if TYPE_CHECKING:
    from threadline.evaluate.result import EvaluationResult


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _show(result: EvaluationResult) -> None:
    """Metrics with intervals; then the comparison's verdicts; then slices."""
    title = (f"{result.model.name} v{result.model.version} on {result.data.ref} "
             f"({result.data.commit[:12]}, {result.rows:,} rows, {result.task})")
    table = Table("metric", "value", "95% CI", title=escape(title))
    for name, value in result.metrics.items():
        ci = result.intervals.get(name)
        span = "-" if ci is None or ci.low is None else f"[{_num(ci.low)}, {_num(ci.high)}]"
        table.add_row(escape(name), _num(value), span)
    console.print(table)
    if result.against is not None and result.comparison:
        styles = {"challenger better": "green", "champion better": "red"}
        versus = Table("metric", "champion", "challenger", "difference", "95% CI", "verdict",
                       title=escape(f"champion {result.against.uri} (v{result.against.version}) vs "
                                    f"challenger {result.model.uri} (v{result.model.version})"))
        for c in result.comparison:
            span = "-" if c.interval.low is None else f"[{_num(c.interval.low)}, {_num(c.interval.high)}]"
            style = styles.get(c.verdict, "dim")
            versus.add_row(escape(c.metric), _num(c.champion), _num(c.challenger), _num(c.difference),
                           span, f"[{style}]{c.verdict}[/{style}]")
        console.print(versus)
    if result.slices:
        names = list(result.metrics)
        slices = Table("column", "value", "rows", *names, title="slices")
        for s in result.slices:
            slices.add_row(escape(s.column), escape(s.value), f"{s.rows:,}",
                           *(_num(s.metrics.get(n)) for n in names))
        console.print(slices)
    for note in result.notes:
        err_console.print(f"note: {escape(note)}")


def evaluate(
    model: Annotated[str, typer.Argument(metavar="MODEL@VERSION|ALIAS",
                                         help="The model to evaluate, e.g. churn@3 or churn@staging.")],
    ref: Annotated[str, typer.Argument(metavar="REF",
                                       help="The table, e.g. churn-splits@main:validation.parquet")],
    target: Annotated[str, typer.Option("--target", help="The column of actual values.")],
    slice_by: Annotated[list[str] | None, typer.Option(
        "--slice", help="Also report metrics per value (or quantile bin) of COL (repeatable).")] = None,
    against: Annotated[str | None, typer.Option(
        "--against", help="A champion to compare with on the same rows, e.g. churn@production.")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", help="classification or regression (default: inferred).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    replicates: Annotated[int, typer.Option("--replicates", help="Bootstrap replicates.")] = 1000,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not store it as a run.")] = False,
    trust: Annotated[list[str] | None, typer.Option("--trust", help="Trust a type when loading.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a registered model on a committed table (optionally against a champion)."""
    from threadline.evaluate.report import render_html
    from threadline.evaluate.run import evaluate as run_evaluation

    if task is not None and task not in ("classification", "regression"):
        raise InvalidArgument(f"--task must be classification or regression, not {task!r}")
    if replicates < 1:
        raise InvalidArgument("--replicates must be at least 1")
    result = run_evaluation(repos(), model, ref, target=target, slice_by=slice_by or (),
                            against=against, task=task, seed=seed, replicates=replicates,
                            record=not no_record, trusted=trust or ())
    if report is not None:
        try:
            report.write_text(render_html(result), encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot write the report to {report}: {exc.strerror}",
                               path=str(report)) from exc
    if as_json:
        emit_json(result.to_dict())
    else:
        _show(result)
    if report is not None:
        err_console.print(f"Wrote the report to {escape(str(report))}")
    if result.run_id:
        err_console.print(f"Recorded as run {result.run_id} (experiment evaluations)")

