"""`threadline train ...`: run a training config, resume one; parse, show live progress, delegate.

Register with `app.add_typer(train_cli.app, name="train")` in `cli/main.py`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from threadline.train import Progress as TrainProgress
    from threadline.train import TrainResult

app = typer.Typer(help="Parallel training: shard-and-combine, synchronous epochs, torch DDP, search.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ExecutorOpt = Annotated[str | None,
                        typer.Option("--executor", "-x", help="local or ray (overrides the config).")]
_LABELS = {"shards": "shards fitted", "epoch": "epochs", "trials": "trials"}


@contextlib.contextmanager
def _live() -> Iterator[Callable[[TrainProgress], None]]:
    """A live progress line on stderr (shards done, epoch and score, best trial) when a terminal."""
    if not err_console.is_terminal:
        yield lambda _event: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def show(event: TrainProgress) -> None:
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(_LABELS.get(event.stage, event.stage), total=event.total)
            extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in event.detail.items())
            bar.update(tasks[event.stage], completed=event.done, total=event.total,
                       description=f"{_LABELS.get(event.stage, event.stage)} {extra}".strip())

        yield show


def _report(result: TrainResult, as_json: bool) -> None:
    body = {"run_id": result.run_id, "strategy": result.strategy, "metrics": result.metrics,
            "best_params": result.best_params,
            "shards": [{"index": s.index, "rows": s.rows, "seconds": s.seconds, "run_id": s.run_id}
                       for s in result.shards]}
    if as_json:
        emit_json(body)
        return
    table = Table("metric", "value")
    for key, value in sorted(result.metrics.items()):
        table.add_row(escape(key), f"{value:.6g}")
    console.print(f"run {result.run_id} ({result.strategy}): model logged as artifact 'model'")
    if result.best_params:
        console.print(f"best params: {escape(str(result.best_params))}")
    console.print(table)


@app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML).")],
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Overrides the config.")] = None,
    executor: ExecutorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the estimator a config names on a committed table, tracked as a run."""
    from threadline.train import fit
    from threadline.train.spec import read_config

    cfg = read_config(config)
    with _live() as progress:
        result = fit(cfg.build(), cfg.data, cfg.target, cfg.features, strategy=cfg.strategy,
                     workers=workers or cfg.workers or 2, executor=executor or cfg.executor,
                     epochs=cfg.epochs, search=cfg.search, seed=cfg.seed, experiment=cfg.experiment,
                     name=cfg.name, progress=progress)
    _report(result, as_json)


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The interrupted run (id or prefix).")],
    executor: ExecutorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted sync or ddp training from its last checkpoint, as a new run."""
    from threadline.train import resume as resume_run

    with _live() as progress:
        result = resume_run(run_id, executor=executor, progress=progress)
    _report(result, as_json)
