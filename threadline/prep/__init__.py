"""Data preparation: profiles and splits of committed tables, each step recorded as a commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.data.connect import default_repos
from threadline.prep import steps
from threadline.prep.cleanse import CleanseSpec, FittedCleanse, load_cleanse
from threadline.prep.dedupe import DedupeSpec
from threadline.prep.ops import StepResult
from threadline.prep.profile import TableProfile
from threadline.prep.split import SplitSpec
from threadline.prep.validate import TableSchema

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


def cleanse(
    ref: str, *, into: str, spec: str | CleanseSpec | FittedCleanse, home: Path | None = None
) -> StepResult:
    """Apply a cleansing spec (YAML text or a spec object) and commit the result into `into`."""
    if isinstance(spec, str):
        spec = load_cleanse(spec)
    return steps.cleanse(default_repos(home), ref, into, spec)


def validate(
    ref: str, *, schema: str | TableSchema, into: str, home: Path | None = None
) -> StepResult:
    """Validate a table against a schema with rules (YAML text or object); commit valid rows."""
    rules = TableSchema.from_yaml(schema) if isinstance(schema, str) else schema
    return steps.validate(default_repos(home), ref, into, rules)


def infer_schema(ref: str, *, home: Path | None = None) -> TableSchema:
    """A schema with rules inferred from a committed table (`.to_yaml()` to save and edit)."""
    return steps.infer_schema(default_repos(home), ref)


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
    "CleanseSpec",
    "DedupeSpec",
    "SplitSpec",
    "StepResult",
    "TableProfile",
    "TableSchema",
    "cleanse",
    "dedupe",
    "infer_schema",
    "ingest",
    "profile",
    "split",
    "validate",
]
