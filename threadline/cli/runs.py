"""`threadline runs`: commands filled in by the tracking/registry work (issue 5)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Tracked runs: list, show, compare.", no_args_is_help=True)
