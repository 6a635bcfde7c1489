"""The preparation verbs on committed tables: `split` (and, as they land, the others).

Each reads a table from an input commit as a stream of Arrow batches, writes Parquet parts,
their profiles and its own definition under `_threadline/`, and commits through `run_step`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from threadline.data.tables import file_entry, iter_batches
from threadline.errors import InvalidArgument
from threadline.prep.ops import META_DIR, StepResult, run_step, write_json
from threadline.prep.profile import TableProfile
from threadline.prep.split import SplitReport, SplitSpec, split_table

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import pyarrow as pa

    from threadline.data.repos import DataRepos


def make_spec(
    fractions: dict[str, float],
    *,
    by: Sequence[str] = (),
    stratify: str | None = None,
    time_column: str | None = None,
    cutoffs: Sequence[str] = (),
    seed: int = 0,
) -> SplitSpec:
    """The split definition the options describe.

    `by` hashes key columns (a row keeps its part as the data grows), `stratify` keeps exact
    label proportions, `time_column` with `cutoffs` splits by time, and none of them gives a
    seeded random split. Giving more than one is an error.
    """
    chosen = [name for name, value in (("by", by), ("stratify", stratify),
                                       ("time_column", time_column)) if value]
    if len(chosen) > 1:
        raise InvalidArgument(f"choose one split method, not {' and '.join(chosen)}")
    if by:
        return SplitSpec(fractions, method="hash", by=tuple(by), seed=seed)
    if stratify:
        return SplitSpec(fractions, method="stratify", stratify=stratify, seed=seed)
    if time_column:
        return SplitSpec(fractions, method="time", time_column=time_column, cutoffs=tuple(cutoffs),
                         seed=seed)
    return SplitSpec(fractions, method="random", seed=seed)


def _schema(repos: DataRepos, ref: str) -> pa.Schema:
    first: Iterator[pa.RecordBatch] = iter_batches(repos, ref, batch_rows=1024)
    for batch in first:
        return batch.schema
    raise InvalidArgument(f"{ref} is an empty table: there is nothing to prepare")


def profile(repos: DataRepos, ref: str) -> TableProfile:
    """Profile a committed table in one streaming pass."""
    return TableProfile.from_batches(iter_batches(repos, ref))


def split(
    repos: DataRepos, ref: str, into: str, spec: SplitSpec, *, message: str | None = None
) -> StepResult:
    """Split the table at `ref` into one Parquet file per part, committed into `into`.

    The output holds `<part>.parquet` for every part (empty parts keep the schema),
    `_threadline/split.json` (the definition and rows per part, enough to re-create the split
    exactly) and `_threadline/profile.<part>.json` for each part.
    """
    entry = file_entry(repos, ref)
    schema = _schema(repos, ref)
    spec.validate(schema)

    def produce(folder: Path) -> dict[str, Any]:
        report = SplitReport.empty(spec)
        profiles = {part: TableProfile.from_table(schema.empty_table()) for part in spec.parts}
        writers = {part: pq.ParquetWriter(folder / f"{part}.parquet", schema) for part in spec.parts}
        try:
            for part, batch in split_table(lambda: iter_batches(repos, ref), spec, report=report):
                writers[part].write_batch(batch)
                profiles[part].update(batch)
        finally:
            for writer in writers.values():
                writer.close()
        summary = {**report.to_dict(), "source": {"ref": ref, "path": entry.path}}
        write_json(folder / META_DIR / "split.json", summary)
        for part, prof in profiles.items():
            write_json(folder / META_DIR / f"profile.{part}.json", prof.to_dict())
        return {"rows": report.to_dict()["rows"], "total": report.to_dict()["total"]}

    return run_step(repos, step="split", input_ref=ref, into=into, params=spec.to_dict(),
                    produce=produce, message=message)
