"""Shared CLI plumbing: the opened home, JSON output, progress bars, human sizes."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from threadline.data.repos import DataRepos

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def repos() -> DataRepos:
    """The data layer of the home that applies to the working folder."""
    from threadline.data.connect import default_repos

    return default_repos()


def emit_json(value: Any) -> None:
    """Print JSON to stdout (for `--json`)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def human(n: int | None) -> str:
    """Bytes as a short human-readable size."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@contextlib.contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for long transfers; silent when small or not a terminal."""
    if not total or total < (64 << 20) or not err_console.is_terminal:
        yield lambda _n: None
        return
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def rows_progress(label: str) -> Iterator[Callable[[int], None]]:
    """A live count of rows processed and their rate, on stderr when it is a terminal.

    For table steps whose row count is not known up front (CSV sources, several passes).
    """
    if not err_console.is_terminal:
        yield lambda _n: None
        return
    columns = (SpinnerColumn(), TextColumn(label), TextColumn("{task.completed:,.0f} rows"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)
