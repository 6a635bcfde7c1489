"""The preparation verbs on committed tables: ingest, validate, cleanse, dedupe, split, profile.

Each reads a table from an input commit as a stream of Arrow batches, writes Parquet parts
(through `TableSink`: large row groups, profiled on a worker thread), their profiles and its
own definition under `_threadline/`, and commits through `run_step`. Every step takes
`progress`, called with the row count of each batch it reads (a step that fits statistics
reads its input more than once, and each pass counts).
"""

from __future__ import annotations

import json
from contextlib import ExitStack, closing
from dataclasses import replace as replace_field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from threadline.data.tables import file_entry, iter_batches, open_file
from threadline.errors import InvalidArgument
from threadline.prep.cleanse import (
    CleanseReport,
    CleanseSpec,
    FittedCleanse,
    cleanse_table,
    untouched_columns,
)
from threadline.prep.dedupe import REMOVED, DedupeReport, DedupeSpec, dedupe_table
from threadline.prep.ingest import (
    IngestReport,
    ingest_files,
    ingest_query,
    resolve_sources,
    schema_from_dict,
    schema_to_dict,
)
from threadline.prep.ops import META_DIR, StepResult, run_step, write_json
from threadline.prep.profile import TableProfile
from threadline.prep.sink import TableSink
from threadline.prep.split import SplitReport, SplitSpec, split_table
from threadline.prep.validate import (
    QUARANTINE,
    TableSchema,
    ValidationReport,
    validate_table,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

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
    with closing(iter_batches(repos, ref, batch_rows=1024)) as first:
        for batch in first:
            return batch.schema
    raise InvalidArgument(f"{ref} is an empty table: there is nothing to prepare")


def _reader(
    repos: DataRepos, ref: str, progress: Callable[[int], None] | None
) -> Callable[..., Iterator[pa.RecordBatch]]:
    """`read(columns=None)` streams the table at `ref`, reporting each batch's rows to `progress`."""

    def read(columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for batch in iter_batches(repos, ref, columns=columns):
            if progress is not None:
                progress(batch.num_rows)
            yield batch

    return read


def profile(repos: DataRepos, ref: str, *, progress: Callable[[int], None] | None = None) -> TableProfile:
    """Profile a committed table in one streaming pass (`progress` gets the rows read)."""
    return TableProfile.from_batches(_reader(repos, ref, progress)())


def split(
    repos: DataRepos,
    ref: str,
    into: str,
    spec: SplitSpec,
    *,
    message: str | None = None,
    progress: Callable[[int], None] | None = None,
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
        with ExitStack() as stack:
            sinks = {part: stack.enter_context(TableSink(folder / f"{part}.parquet", schema))
                     for part in spec.parts}
            for part, batch in split_table(_reader(repos, ref, progress), spec, report=report):
                sinks[part].write(batch)
        profiles = {part: sink.profile for part, sink in sinks.items()}
        summary = {**report.to_dict(), "source": {"ref": ref, "path": entry.path}}
        write_json(folder / META_DIR / "split.json", summary)
        for part, prof in profiles.items():
            write_json(folder / META_DIR / f"profile.{part}.json", prof.to_dict())
        return {"rows": report.to_dict()["rows"], "total": report.to_dict()["total"]}

    return run_step(repos, step="split", input_ref=ref, into=into, params=spec.to_dict(),
                    produce=produce, message=message)


def _stored_profile(repos: DataRepos, ref: str) -> TableProfile | None:
    """The profile a prepared commit stores for the Parquet table at `ref`, if it is exactly it.

    A split part's is `_threadline/profile.<part>.json`; a single-table commit's is
    `_threadline/profile.json`. Used only when its row count matches the file's.
    """
    import pyarrow.parquet as pq

    entry = file_entry(repos, ref)
    if not entry.path.endswith(".parquet"):
        return None
    target = repos.resolve(ref)
    commit = target.require_commit()
    manifest = repos.manifest(commit)
    stem = entry.path.rsplit("/", 1)[-1][: -len(".parquet")]
    tables = [e.path for e in manifest if not e.path.startswith(f"{META_DIR}/")
              and e.path.endswith((".parquet", ".csv", ".tsv", ".jsonl"))]
    names = [f"profile.{stem}.json"] + (["profile.json"] if tables == [entry.path] else [])
    for name in names:
        if manifest.get(f"{META_DIR}/{name}") is None:
            continue
        with open_file(repos, f"{target.spec.repo}@{commit.id}:{META_DIR}/{name}") as fh:
            stored = TableProfile.from_dict(json.load(fh))
        with open_file(repos, ref) as fh:
            rows = pq.ParquetFile(fh).metadata.num_rows
        return stored if stored.rows == rows else None
    return None


def _head_json(repos: DataRepos, into: str, name: str) -> dict[str, Any] | None:
    """A JSON file under `_threadline/` at the head of `into`, or None (empty branch, no file)."""
    target = repos.resolve(into)
    if target.commit is None or repos.manifest(target.commit).get(f"{META_DIR}/{name}") is None:
        return None
    with open_file(repos, f"{target.spec.repo}@{target.commit.id}:{META_DIR}/{name}") as fh:
        loaded: dict[str, Any] = json.load(fh)
        return loaded


def ingest(
    repos: DataRepos,
    into: str,
    *,
    sources: Sequence[str] = (),
    url: str | None = None,
    query: str | None = None,
    replace: bool = False,
    message: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> StepResult:
    """Ingest files (CSV, TSV, JSON Lines, Parquet; files, folders, globs) or a SQL query.

    Each source becomes a Parquet part named after its content, so appending (the default)
    adds parts for new sources and stores nothing for sources seen before. The table's schema
    is inferred from the first ingest and recorded in `_threadline/schema.json`; later sources
    are cast to it or refused with the column and types named. `_threadline/profile.json` is
    the profile of the whole table, updated by merging in the profile of the new parts.
    With `replace`, the ingested sources become the whole table.
    """
    if bool(sources) == bool(query):
        raise InvalidArgument("ingest either files (SOURCE...) or a query (--url and --query)")
    if query is not None and not url:
        raise InvalidArgument("--query needs --url: the database to run it on")
    paths = resolve_sources(list(sources)) if sources else []
    previous_schema = None if replace else _head_json(repos, into, "schema.json")
    previous_profile = None if replace else _head_json(repos, into, "profile.json")
    target = repos.resolve(into)
    existing = set()
    if target.commit is not None and not replace:
        existing = {e.path for e in repos.manifest(target.commit)}

    def produce(folder: Path) -> dict[str, Any]:
        schema = schema_from_dict(previous_schema) if previous_schema else None
        # A part already in the table is already in its profile: only new parts are profiled,
        # in the same pass as their conversion.
        if paths:
            report: IngestReport = ingest_files(
                paths, folder, schema=schema, profile=lambda part: part not in existing, durable=False,
                progress=progress,
            )
        else:
            report = ingest_query(url or "", query or "", folder, profile=True, durable=False,
                                  progress=progress)
            if report.parts[0].part in existing:  # the same query again: its part is profiled
                report = replace_field(report, profile=None)
        new_data = report.profile or TableProfile.from_batches([])
        whole = TableProfile.from_dict(previous_profile) if previous_profile else None
        if new_data.rows or whole is None:
            if not new_data.columns:
                new_data = TableProfile.from_table(pa.Table.from_batches([], schema=report.schema))
            whole = new_data if whole is None else whole.merge(new_data)
        write_json(folder / META_DIR / "schema.json", schema_to_dict(report.schema))
        write_json(folder / META_DIR / "profile.json", whole.to_dict())
        return {**report.to_dict(), "table_rows": whole.rows}

    if paths:
        params: dict[str, Any] = {"sources": list(sources), "replace": replace}
    else:
        try:
            masked = make_url(url or "").render_as_string(hide_password=True)
        except ArgumentError as exc:
            raise InvalidArgument(f"--url is not a database URL: {exc}") from exc
        params = {"url": masked, "query": query, "replace": replace}
    return run_step(repos, step="ingest", input_ref=None, into=into, params=params,
                    produce=produce, message=message, update=not replace)


def dedupe(
    repos: DataRepos,
    ref: str,
    into: str,
    spec: DedupeSpec,
    *,
    keep_removed: bool = False,
    output: str | None = None,
    message: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> StepResult:
    """Remove duplicate rows of the table at `ref`; commit the result into `into`.

    Exact duplicates (or duplicates by `spec.keys`, keeping first, last or latest by a column),
    then, with `spec.near`, near-duplicates of a text column. The output holds the kept rows as
    `<output>` (default: the input's name as `.parquet`), with `keep_removed` the removed rows
    in `_threadline/removed.parquet` for audit, the report with examples in
    `_threadline/dedupe.json`, and the kept table's profile in `_threadline/profile.json`.
    """
    entry = file_entry(repos, ref)
    schema = _schema(repos, ref)
    spec.validate(schema)
    name = output or entry.path.rsplit("/", 1)[-1].split(".", 1)[0] + ".parquet"

    def produce(folder: Path) -> dict[str, Any]:
        report = DedupeReport.empty(spec)
        (folder / META_DIR).mkdir()
        with ExitStack() as stack:
            kept = stack.enter_context(TableSink(folder / name, schema))
            removed = (stack.enter_context(TableSink(folder / META_DIR / "removed.parquet", schema,
                                                     profile=False))
                       if keep_removed else None)
            rows = dedupe_table(_reader(repos, ref, progress), spec, report=report,
                                removed=keep_removed)
            for status, batch in rows:
                if status == REMOVED:
                    assert removed is not None
                    removed.write(batch)
                else:
                    kept.write(batch)
        kept_profile = kept.profile
        summary = report.to_dict()
        write_json(folder / META_DIR / "dedupe.json", {**summary, "source": {"ref": ref, "path": entry.path}})
        write_json(folder / META_DIR / "profile.json", kept_profile.to_dict())
        return {"rows_in": summary["rows_in"], "rows_kept": summary["rows_kept"],
                "removed": summary["removed"]}

    params = {**spec.to_dict(), "keep_removed": keep_removed, "output": name}
    return run_step(repos, step="dedupe", input_ref=ref, into=into, params=params, produce=produce,
                    message=message)


def cleanse(
    repos: DataRepos,
    ref: str,
    into: str,
    spec: CleanseSpec | FittedCleanse,
    *,
    output: str | None = None,
    message: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> StepResult:
    """Apply a cleansing spec to the table at `ref`; commit the result into `into`.

    Statistics the spec needs (fill values, quantile bounds) are computed on this data and
    recorded in `_threadline/cleanse.yaml` with the spec, so the same cleansing re-runs
    identically on new data (pass the loaded `FittedCleanse`). The output holds `<output>`
    (default: the input's name as `.parquet`), the report in `_threadline/cleanse.json` and
    the result's profile in `_threadline/profile.json`.
    """
    entry = file_entry(repos, ref)
    schema = _schema(repos, ref)
    plain = spec.spec if isinstance(spec, FittedCleanse) else spec
    out_schema = plain.validate(schema)
    name = output or entry.path.rsplit("/", 1)[-1].split(".", 1)[0] + ".parquet"

    read = _reader(repos, ref, progress)

    def source() -> Iterator[pa.RecordBatch]:
        return read()

    def read_columns(names: list[str]) -> Iterator[pa.RecordBatch]:
        return read([name for name in names if name in schema.names])

    fitted = spec if isinstance(spec, FittedCleanse) else spec.fit(source, read_columns=read_columns)

    # Columns the spec passes through unchanged keep the input's profile (when it has one):
    # only the columns the spec changes are profiled again.
    stored = _stored_profile(repos, ref)
    untouched = {
        name for name in (untouched_columns(plain, schema.names) if stored else ())
        if stored is not None and name in stored.columns
        and stored.columns[name].type == str(schema.field(name).type)
    }

    def produce(folder: Path) -> dict[str, Any]:
        report = CleanseReport.empty(plain)
        changed = [name for name in out_schema.names if name not in untouched]
        with TableSink(folder / name, out_schema, profile_columns=changed) as sink:
            for batch in cleanse_table(source, fitted, report=report):
                sink.write(batch)
        result_profile = sink.profile
        if untouched:
            assert stored is not None
            result_profile = TableProfile.of_columns(sink.rows, {
                column: stored.columns[column] if column in untouched else sink.profile.columns[column]
                for column in out_schema.names})
        (folder / META_DIR).mkdir(exist_ok=True)
        (folder / META_DIR / "cleanse.yaml").write_text(fitted.to_yaml())
        summary = report.to_dict()
        source_info = {"ref": ref, "path": entry.path}
        write_json(folder / META_DIR / "cleanse.json", {**summary, "source": source_info})
        write_json(folder / META_DIR / "profile.json", result_profile.to_dict())
        return {"rows_in": summary["rows_in"], "rows_out": summary["rows_out"]}

    return run_step(repos, step="cleanse", input_ref=ref, into=into,
                    params={**fitted.to_dict(), "output": name}, produce=produce, message=message)


def infer_schema(repos: DataRepos, ref: str, *, max_categories: int = 20) -> TableSchema:
    """A schema with rules inferred from the table at `ref`, to save as YAML and edit."""
    return TableSchema.infer(iter_batches(repos, ref), max_categories=max_categories)


def check(repos: DataRepos, ref: str, schema: TableSchema) -> ValidationReport:
    """Validate the table at `ref` without writing anything; a "fail" rule raises."""
    report = ValidationReport()
    for _ in validate_table(lambda: iter_batches(repos, ref), schema, report=report):
        pass
    return report


def validate(
    repos: DataRepos,
    ref: str,
    into: str,
    schema: TableSchema,
    *,
    output: str | None = None,
    message: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> StepResult:
    """Validate the table at `ref` and commit the rows that pass into `into`.

    Rules with the "drop" policy remove rows; "quarantine" rows go to
    `_threadline/quarantine.parquet` with a `_violations` column naming the rules they broke; a
    "fail" rule stops the step and nothing is committed. The schema is stored with the output
    (`_threadline/schema-rules.yaml`), with the report (`_threadline/validation.json`) and the
    valid rows' profile (`_threadline/profile.json`).
    """
    entry = file_entry(repos, ref)
    name = output or entry.path.rsplit("/", 1)[-1].split(".", 1)[0] + ".parquet"
    valid_schema = schema.to_arrow()

    def produce(folder: Path) -> dict[str, Any]:
        report = ValidationReport()
        (folder / META_DIR).mkdir()
        with ExitStack() as stack:
            # Opened on the first batch of each kind: that batch's schema is the output's.
            valid: TableSink | None = None
            quarantine: TableSink | None = None
            for status, batch in validate_table(_reader(repos, ref, progress), schema, report=report):
                if status == QUARANTINE:
                    if quarantine is None:
                        quarantine = stack.enter_context(TableSink(
                            folder / META_DIR / "quarantine.parquet", batch.schema, profile=False))
                    quarantine.write(batch)
                    continue
                if valid is None:
                    valid = stack.enter_context(TableSink(folder / name, batch.schema))
                valid.write(batch)
        if valid is None:  # no valid row: still an empty table with the declared schema
            pq.write_table(pa.Table.from_batches([], schema=valid_schema), folder / name)
            valid_profile = TableProfile.from_table(pa.Table.from_batches([], schema=valid_schema))
        else:
            valid_profile = valid.profile
        (folder / META_DIR / "schema-rules.yaml").write_text(schema.to_yaml())
        summary = report.to_dict()
        source_info = {"ref": ref, "path": entry.path}
        write_json(folder / META_DIR / "validation.json", {**summary, "source": source_info})
        write_json(folder / META_DIR / "profile.json", valid_profile.to_dict())
        return {"rows_in": report.rows_in, "rows_valid": report.rows_valid,
                "rows_dropped": report.rows_dropped, "rows_quarantined": report.rows_quarantined}

    return run_step(repos, step="validate", input_ref=ref, into=into,
                    params={**schema.to_dict(), "output": name}, produce=produce, message=message)

