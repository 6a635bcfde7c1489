"""Entry point: the `threadline` app, its global options and one-line error reporting."""

from __future__ import annotations

import gc
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from threadline.cli import data as data_cli
from threadline.cli import deploy as deploy_cli
from threadline.cli import evaluate as evaluate_cli
from threadline.cli import models as models_cli
from threadline.cli import monitor as monitor_cli
from threadline.cli import pipeline as pipeline_cli
from threadline.cli import predict as predict_cli
from threadline.cli import prep as prep_cli
from threadline.cli import runs as runs_cli
from threadline.cli import server as server_cli
from threadline.cli import train as train_cli
from threadline.cli.output import emit_json, err_console, repos
from threadline.errors import ThreadlineError

app = typer.Typer(
    name="threadline",
    help="Threadline: versioned data and the ML lifecycle, embedded or at scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(prep_cli.app, name="prep")
app.add_typer(runs_cli.app, name="runs")
app.add_typer(models_cli.app, name="models")
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(train_cli.app, name="train")
app.add_typer(deploy_cli.app, name="deploy")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(deploy_cli.tokens_app, name="token")
app.command("serve")(deploy_cli.serve)
app.command("evaluate")(evaluate_cli.evaluate)
app.command("predict")(predict_cli.predict)
app.command("server")(server_cli.server)

_state = {"verbose": False}


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show error details.")] = False,
) -> None:
    _state["verbose"] = verbose


@app.command()
def init(
    folder: Annotated[Path | None, typer.Argument(help="Where to create .threadline/")] = None,
) -> None:
    """Create a Threadline home (.threadline/) in the working folder."""
    import threadline

    home = threadline.init(str(folder) if folder else None)
    err_console.print(f"Initialised Threadline home at {home}")


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="A data ref, e.g. sales@main")],
    up: Annotated[bool, typer.Option("--up", help="What this came from (default).")] = False,
    down: Annotated[bool, typer.Option("--down", help="What was made from this.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the upstream or downstream lineage of a data commit."""
    from threadline.data.repos import commit_node
    from threadline.lineage.graph import Direction, LineageGraph

    data = repos()
    commit = data.resolve(ref).require_commit()
    direction: Direction = "down" if down and not up else "up"
    edges = LineageGraph(data.db).edges(commit_node(commit.id), direction)
    if as_json:
        emit_json([{"from": str(e.source), "relation": e.relation, "to": str(e.target)}
                   for e in edges])
        return
    if not edges:
        err_console.print(f"no {direction}stream lineage for {commit.short_id}")
    for e in edges:
        sys.stdout.write(f"{e.source.kind}:{e.source.id[:12]} -[{e.relation}]-> "
                         f"{e.target.kind}:{e.target.id[:12]}\n")


def main() -> None:
    """Run the CLI; a ThreadlineError becomes one red line and its exit code."""
    try:
        _run()
    finally:
        # The interpreter's exit would trace every object the command made (the imported
        # modules included) looking for cycles: 0.15 s after a large ingest. The command has
        # closed its files and database, and the OS frees the memory.
        gc.freeze()


def _run() -> None:
    try:
        # Without standalone mode click returns a command's `typer.Exit(code)` instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ThreadlineError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        # escape: messages quote user input (paths, refs), which must never be read as markup
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - click usage errors and unexpected failures
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if _state["verbose"]:
            traceback.print_exc()
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))} "
                          "(rerun with --verbose)")
        sys.exit(1)
