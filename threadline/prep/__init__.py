"""Data preparation: profiles and splits of committed tables, each step recorded as a commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.data.connect import default_repos
from threadline.prep import steps
from threadline.prep.dedupe import DedupeSpec
from threadline.prep.ops import StepResult
from threadline.prep.profile import TableProfile
from threadline.prep.split import SplitSpec

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def ingest(
    into: str,
    *sources: str,
    url: str | None = None,
    query: str | None = None,
    replace: bool = False,
    home: Path | None = None,
) -> StepResult:
    """Ingest files or a SQL query as Parquet parts: `tl.prep.ingest("raw", "exports/*.csv")`."""
    return steps.ingest(default_repos(home), into, sources=sources, url=url, query=query,
                        replace=replace)


def dedupe(
    ref: str,
    *,
    into: str,
    keys: Sequence[str] = (),
    keep: str = "first",
    near: str | None = None,
    threshold: float = 0.8,
    keep_removed: bool = False,
    home: Path | None = None,
) -> StepResult:
    """Remove duplicate rows: exact, by `keys` (keep first, last or `latest:COL`), or near
    duplicates of the text column `near` (MinHash LSH at Jaccard `threshold`)."""
    spec = DedupeSpec(keys=tuple(keys), keep=keep, near=near, threshold=threshold)
    return steps.dedupe(default_repos(home), ref, into, spec, keep_removed=keep_removed)


def profile(ref: str, *, home: Path | None = None) -> TableProfile:
    """Profile a committed table: `tl.prep.profile("raw@main:customers.csv")`."""
    return steps.profile(default_repos(home), ref)


def split(
    ref: str,
    *,
    into: str,
    fractions: dict[str, float],
    by: Sequence[str] = (),
    stratify: str | None = None,
    time_column: str | None = None,
    cutoffs: Sequence[str] = (),
    seed: int = 0,
    home: Path | None = None,
) -> StepResult:
    """Split a committed table into parts committed into `into` (see `steps.make_spec`)."""
    spec = steps.make_spec(fractions, by=by, stratify=stratify, time_column=time_column,
                           cutoffs=cutoffs, seed=seed)
    return steps.split(default_repos(home), ref, into, spec)


__all__ = [
    "DedupeSpec",
    "SplitSpec",
    "StepResult",
    "TableProfile",
    "dedupe",
    "ingest",
    "profile",
    "split",
]
