"""Versioned data repos: commits, branches, tags, diff, checkout, rollback, verify, gc."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.data.connect import connect, default_repos
from threadline.data.handles import Repo
from threadline.data.tables import open_file
from threadline.data.tables import read_table as _read_table

if TYPE_CHECKING:
    import io
    from pathlib import Path


def repo(name: str, *, create: bool = False, home: Path | None = None) -> Repo:
    """A handle on data repo `name` in the current home (created first if `create`)."""
    repos = default_repos(home)
    if create and name not in {r.name for r in repos.list()}:
        repos.create(name)
    else:
        repos.get(name)
    return Repo(repos, name)


def open(ref: str, *, home: Path | None = None) -> io.BufferedReader:
    """A seekable binary stream of a committed file: `tl.data.open("sales@main:x.csv")`."""
    return open_file(default_repos(home), ref)


def read_table(ref: str, *, pandas: bool = False, home: Path | None = None) -> Any:
    """A committed table file as Arrow (or pandas): `tl.data.read_table("sales@main:x.parquet")`."""
    return _read_table(default_repos(home), ref, pandas=pandas)


__all__ = ["Repo", "connect", "open", "read_table", "repo"]
