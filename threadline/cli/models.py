"""`threadline models`: commands filled in by the tracking/registry work (issue 5)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The model registry: versions, aliases, promotion, rollback.", no_args_is_help=True)
