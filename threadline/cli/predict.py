"""`threadline predict MODEL REF --into REPO[@BRANCH]`: parse, show progress, delegate to
`threadline.serving.batch.predict_dataset`.

Register with `app.command("predict")(predict_cli.predict)` in `cli/main.py`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@contextlib.contextmanager
def _rows_bar() -> Iterator[Callable[[int, int], None]]:
    """A bar of rows scored on stderr when it is a terminal; silent otherwise."""
    if not err_console.is_terminal:
        yield lambda _done, _total: None
        return
    columns = (SpinnerColumn(), TextColumn("scoring"), BarColumn(),
               TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("scoring", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield show


def predict(
    model: Annotated[str, typer.Argument(metavar="MODEL[@VERSION|ALIAS]",
                                         help="The model, e.g. churn@3 or churn@production.")],
    ref: Annotated[str, typer.Argument(metavar="REF",
                                       help="The table to score, e.g. customers@main:all.parquet")],
    into: Annotated[str, typer.Option(
        "--into", metavar="REPO[@BRANCH][:PATH]",
        help="Where to commit the predictions (created if missing; default path "
             "predictions.parquet).")],
    executor: Annotated[str, typer.Option("--executor", "-x", help="local or ray.")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", "-w",
                                                help="Parallel tasks (default: every CPU).")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", help="A feature column (repeatable; default: the model's signature).")] = None,
    output_column: Annotated[str, typer.Option("--output-column",
                                               help="Column of the predictions.")] = "prediction",
    trust: Annotated[list[str] | None, typer.Option("--trust", help="Trust a type when loading.")] = None,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Allow a pickled model (its hash must match the registry).")] = False,
    allow_code: Annotated[bool, typer.Option(
        "--allow-code", help="Allow a pyfunc model's code or a torch model's own factory to run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score a committed table with a registered model and commit the predictions."""
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.batch import predict_dataset

    if executor not in ("local", "ray"):
        raise InvalidArgument(f"--executor must be local or ray, not {executor!r}")
    with _rows_bar() as show:
        result = predict_dataset(ModelRegistry(repos()), model, ref, into, executor=executor,
                                 workers=workers, columns=column or None,
                                 output_column=output_column, trusted=trust or (),
                                 allow_pickle=allow_pickle, allow_code=allow_code, progress=show)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"Scored {result.rows:,} rows of {escape(result.data_ref)} "
                  f"({result.data_commit[:12]}) with {escape(result.model)} v{result.version} "
                  f"in {result.seconds:.1f} s ({result.parts} parts)")
    console.print(f"Committed {escape(result.repo)}@{escape(result.branch)} "
                  f"{result.commit[:12]}: {escape(result.path)}")
