"""Convert external sources (CSV, TSV, JSON Lines, Parquet, SQL queries) into Parquet parts in a folder.

Each source becomes one part named after its content, ``part-<16 hex of blake3>.parquet``: re-ingesting
the same file gives the same name and the same bytes, so a content-addressed data repo stores nothing new,
and a new source file adds one part without rewriting the others. A query's part is named after the URL
(password hidden) and the query text.

Memory stays bounded: CSV/TSV are read range by range (32 MiB), Parquet row group by row group, query
results chunk by chunk, and each batch is written as it arrives. JSON Lines is the exception: pyarrow
has no streaming JSON reader, so a ``.jsonl`` file is read whole.

The schema is inferred from the first source (a column with no values becomes ``string``) unless
given, and every later batch is cast to it with safe casting; it is recorded with `schema_to_dict`
(format id ``threadline.schema/1``). Parts are written under temporary names and renamed only once
every source of the call has converted, so a failing call leaves no part behind.

Example:
    paths = resolve_sources(["data/", "extra/*.csv"])
    report = ingest_files(paths, Path("staging"))
    json.dumps(report.to_dict())
"""

from __future__ import annotations

import base64
import glob
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from threadline.errors import InvalidArgument, NotFound
from threadline.prep.sink import ROW_GROUP_ROWS, TableSink

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Sequence

    from threadline.prep.profile import TableProfile

SCHEMA_FORMAT = "threadline.schema/1"
REPORT_FORMAT = "threadline.ingest/1"
CSV_BLOCK_SIZE = 8 << 20
#: bytes of CSV parsed at once, in blocks of CSV_BLOCK_SIZE on every core (see `_csv_ranges`)
CSV_RANGE_SIZE = 32 << 20
# Longest suffixes first, so ``x.csv.gz`` is seen as compressed CSV and not as an unknown ``.gz``.
_KINDS: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv"),
    (".tsv.gz", "tsv"),
    (".csv", "csv"),
    (".tsv", "tsv"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".parquet", "parquet"),
)
SUPPORTED: tuple[str, ...] = tuple(suffix for suffix, _ in _KINDS)
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class PartInfo:
    """One written part.

    Attributes:
        source: the source file path, or the query text.
        kind: ``file`` or ``query``.
        part: the part's file name inside the output folder.
        rows: rows written.
        bytes: size of the part file.
    """

    source: str
    kind: str
    part: str
    rows: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form: ``{"file" or "query": source, "part", "rows", "bytes"}``."""
        return {self.kind: self.source, "part": self.part, "rows": self.rows, "bytes": self.bytes}


@dataclass(frozen=True)
class IngestReport:
    """What one ingest call wrote: the parts, in source order, and the schema they share.

    Attributes:
        parts: one entry per part written.
        schema: the Arrow schema of every part.
        profile: the profile of the parts asked for (see `ingest_files`), else None.
    """

    parts: list[PartInfo] = field(default_factory=list)
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    profile: TableProfile | None = None

    @property
    def total_rows(self) -> int:
        """Rows over all parts."""
        return sum(part.rows for part in self.parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form, format id ``threadline.ingest/1``, schema as `schema_to_dict` writes it."""
        return {
            "format": REPORT_FORMAT,
            "parts": [part.to_dict() for part in self.parts],
            "total_rows": self.total_rows,
            "schema": schema_to_dict(self.schema),
        }


# ---------------------------------------------------------------------------------------------- schema

# fmt: off
_SIMPLE_TYPES: dict[str, Any] = {
    str(t): t
    for t in (
        pa.null(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
        pa.uint32(), pa.uint64(), pa.float16(), pa.float32(), pa.float64(), pa.string(), pa.large_string(),
        pa.binary(), pa.large_binary(), pa.date32(), pa.date64(),
    )
}
# fmt: on
_UNIT_TYPE = re.compile(r"(timestamp|duration|time32|time64)\[(s|ms|us|ns)(?:, tz=(.+))?\]")
_DECIMAL_TYPE = re.compile(r"(decimal32|decimal64|decimal128|decimal256)\((\d+), (-?\d+)\)")


def _type_from_string(name: str) -> Any:
    """Parse the type names `str(pa.DataType)` gives for flat types; None for any other."""
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    if match := _UNIT_TYPE.fullmatch(name):
        kind, unit, tz = match.groups()
        if kind == "timestamp":
            return pa.timestamp(unit, tz=tz)
        if tz is None:
            return {"duration": pa.duration, "time32": pa.time32, "time64": pa.time64}[kind](unit)
    if match := _DECIMAL_TYPE.fullmatch(name):
        kind, precision, scale = match.groups()
        return getattr(pa, kind)(int(precision), int(scale))
    return None


def schema_to_dict(schema: pa.Schema) -> dict[str, Any]:
    """Record an Arrow schema as JSON-able data (format id ``threadline.schema/1``).

    Each field is ``{name, type, nullable}`` with the readable type name pyarrow prints. A type that
    name cannot rebuild exactly (lists, structs, maps...) also carries ``arrow``, the field serialised
    as a base64 Arrow IPC schema, so `schema_from_dict` round-trips every type.

    Args:
        schema: a ``pyarrow.Schema``.

    Returns:
        ``{"format": "threadline.schema/1", "fields": [...]}``.
    """
    fields: list[dict[str, Any]] = []
    for f in schema:
        entry: dict[str, Any] = {"name": f.name, "type": str(f.type), "nullable": f.nullable}
        if _type_from_string(str(f.type)) != f.type:
            entry["arrow"] = base64.b64encode(pa.schema([f]).serialize().to_pybytes()).decode("ascii")
        fields.append(entry)
    return {"format": SCHEMA_FORMAT, "fields": fields}


def schema_from_dict(data: dict[str, Any]) -> pa.Schema:
    """Rebuild the Arrow schema `schema_to_dict` recorded.

    Args:
        data: the recorded dict.

    Returns:
        a ``pyarrow.Schema``.

    Raises:
        InvalidArgument: on an unknown format id or a type that cannot be read.
    """
    if data.get("format") != SCHEMA_FORMAT:
        raise InvalidArgument(f"unknown schema format {data.get('format')!r}; expected {SCHEMA_FORMAT!r}")
    fields = []
    for entry in data.get("fields", []):
        if "arrow" in entry:
            buffer = pa.py_buffer(base64.b64decode(entry["arrow"]))
            fields.append(pa.ipc.read_schema(buffer).field(0))
            continue
        type_ = _type_from_string(entry["type"])
        if type_ is None:
            raise InvalidArgument(f"cannot read type {entry['type']!r} of field {entry['name']!r}")
        fields.append(pa.field(entry["name"], type_, nullable=bool(entry.get("nullable", True))))
    return pa.schema(fields)


def _settle(schema: Any) -> Any:
    """The inferred schema to write: no metadata, and ``string`` for columns with no values seen."""
    fields = [pa.field(f.name, pa.string(), f.nullable) if pa.types.is_null(f.type) else f for f in schema]
    return pa.schema(fields)


# --------------------------------------------------------------------------------------------- sources


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((kind for suffix, kind in _KINDS if name.endswith(suffix)), None)


def resolve_sources(specs: Sequence[str]) -> list[Path]:
    """Expand file, folder and glob specs into the source files, in order, without duplicates.

    Args:
        specs: each a file, a folder (every supported file inside it, recursively, sorted) or a glob
            (``data/*.csv``, ``**`` allowed; unsupported matches are skipped).

    Returns:
        the source files.

    Raises:
        NotFound: a spec matches no supported file.
        InvalidArgument: an explicit file has an unsupported extension.
    """
    found: dict[Path, None] = {}
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            if _kind(path) is None:
                raise InvalidArgument(f"{spec}: unsupported file type; supported are {', '.join(SUPPORTED)}")
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
        elif _GLOB_CHARS.search(spec):
            matches = [
                Path(p)
                for p in sorted(glob.glob(spec, recursive=True))
                if Path(p).is_file() and _kind(Path(p)) is not None
            ]
        else:
            matches = []
        if not matches:
            raise NotFound(
                f"{spec}: no such file, or no {', '.join(SUPPORTED)} file matches it; check the path"
            )
        found.update(dict.fromkeys(matches))
    return list(found)


def _content_name(path: Path) -> str:
    hasher = blake3.blake3()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return _part_name(hasher)


def _part_name(digest: Any) -> str:
    """A part's file name from the blake3 hasher of its source's bytes."""
    return f"part-{digest.hexdigest()[:16]}.parquet"


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _csv_error(path: Path, batch_rows: int) -> str | None:
    """The single-threaded parser's message for a malformed CSV (it knows the row number)."""
    try:
        for _ in _read_batches(path, batch_rows, threads=False)[1]:
            pass
    except _ARROW_ERRORS as exc:
        return str(exc)
    return None


def _read_batches(
    path: Path, batch_rows: int, *, threads: bool = True, digest: Any = None
) -> tuple[Any, Iterator[Any]]:
    """Open a source: its own (inferred) schema, and its record batches, read lazily.

    A CSV is parsed range by range on every core (see `_csv_ranges`), its bytes fed to
    `digest` (a blake3 hasher) if given; without `threads`, by the streaming reader, one
    block at a time, whose errors name the row (see `_csv_error`).
    """
    kind = _kind(path)
    if kind in ("csv", "tsv"):
        parse = pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
        # The first block fixes the column names and types, for every block that follows.
        reader = pa_csv.open_csv(
            str(path), read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_SIZE, use_threads=False),
            parse_options=parse,
        )
        if not threads:
            return reader.schema, _closing(reader)
        with reader:
            schema = reader.schema
        return schema, _csv_ranges(path, schema, parse, digest)
    if kind == "parquet":
        parquet = pq.ParquetFile(path)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=batch_rows)
    if kind == "jsonl":
        table = pa_json.read_json(path)  # not streaming: pyarrow reads JSON whole
        return table.schema, iter(table.to_batches(max_chunksize=batch_rows))
    raise InvalidArgument(f"{path}: unsupported file type; supported are {', '.join(SUPPORTED)}")


def _closing(reader: Any) -> Iterator[Any]:
    """The reader's batches; the reader (and its read-ahead thread) is closed however it ends."""
    with reader:
        yield from reader


def _csv_ranges(path: Path, schema: Any, parse: Any, digest: Any = None) -> Iterator[Any]:
    """The CSV's record batches, parsed `CSV_RANGE_SIZE` bytes at a time with the given types.

    Each range ends at a line end and is parsed by `read_csv` on every core, a block per
    thread: on two cores that takes 0.4x the streaming reader's wall time and 0.8x its CPU.
    Memory stays bounded by one range and its table. Lines never span a cut because, as for
    pyarrow's own blocks (``newlines_in_values`` off), a line end always ends a row.
    """
    convert = pa_csv.ConvertOptions(column_types=schema)
    names = schema.names
    first = True
    # One buffer for every range (the parsed table copies what it keeps): a fresh one per range
    # would cost a page fault per 4 KiB read.
    buf = bytearray(CSV_RANGE_SIZE)
    held = 0  # bytes at the start of buf: the end of the last range, after its last line end
    with pa.input_stream(str(path)) as stream:  # decompresses .gz, as open_csv does
        while True:
            if held == len(buf):  # one line longer than the buffer: make room to read on
                buf = buf + bytearray(len(buf))
            got = stream.readinto(memoryview(buf)[held:])
            end = held + got
            if digest is not None:
                digest.update(memoryview(buf)[held:end])
            cut = end
            if got:
                cut = (buf.rfind(b"\n", 0, end) + 1) or (buf.rfind(b"\r", 0, end) + 1)  # \r: old Mac files
            if cut:
                table = pa_csv.read_csv(
                    pa.BufferReader(pa.py_buffer(memoryview(buf)[:cut])),
                    read_options=pa_csv.ReadOptions(
                        block_size=CSV_BLOCK_SIZE, column_names=names, skip_rows=1 if first else 0,
                    ),
                    parse_options=parse,
                    convert_options=convert,
                )
                first = False
                buf[: end - cut] = buf[cut:end]
                yield from table.to_batches()
            held = end - cut
            if not got:
                return


def _conform(batch: Any, schema: Any, source: str) -> Any:
    """Cast a batch to the schema column by column, so an error names the column and both types."""
    names = batch.schema.names
    missing = [name for name in schema.names if name not in names]
    extra = [name for name in names if name not in schema.names]
    if missing or extra:
        raise InvalidArgument(
            f"{source}: columns do not match the schema (missing {missing}, unexpected {extra}); "
            "ingest it separately or pass a schema that fits every source"
        )
    arrays = []
    for target in schema:
        column = batch.column(target.name)
        if column.type != target.type:
            try:
                column = column.cast(target.type, safe=True)
            except _ARROW_ERRORS as exc:
                raise InvalidArgument(
                    f"{source}: column {target.name!r} of type {column.type} does not fit the schema's "
                    f"type {target.type} ({exc}); fix the data or pass a schema that fits every source"
                ) from exc
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------------------------- writing


class _Staging:
    """Parts written under temporary names in the output folder, renamed together on `commit`."""

    def __init__(self, out: Path, *, durable: bool = True) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.durable = durable
        self.written: list[Path] = []
        self.pending: list[tuple[Path, Path]] = []

    def write(
        self, schema: Any, batches: Iterator[Any], row_group_rows: int, *, profile: bool,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[Path, int, TableProfile | None]:
        """Write the batches to a temporary file; returns it, the row count and, if asked, their profile.

        The file becomes a part only once `keep` names it (the name may depend on what was read).
        """
        temp = self.out / f".part-{uuid.uuid4().hex}.tmp"
        self.written.append(temp)
        with TableSink(temp, schema, profile=profile, row_group_rows=row_group_rows) as sink:
            for batch in batches:
                sink.write(batch)
                if progress is not None:
                    progress(batch.num_rows)
        if self.durable:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return temp, sink.rows, sink.profile if profile else None

    def keep(self, temp: Path, part: str) -> None:
        """Make the written file the part of this name on `commit`."""
        self.pending.append((temp, self.out / part))

    def drop(self, temp: Path) -> None:
        """Delete a written file that is not to become a part."""
        temp.unlink(missing_ok=True)
        self.written.remove(temp)

    def commit(self) -> None:
        for temp, final in self.pending:
            os.replace(temp, final)
        self.pending.clear()
        self.written.clear()
        if not self.durable:
            return
        # Make the renames durable too.
        fd = os.open(self.out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def discard(self) -> None:
        for temp in self.written:
            temp.unlink(missing_ok=True)
        self.written.clear()
        self.pending.clear()


def ingest_files(
    paths: Sequence[Path],
    out: Path,
    *,
    schema: pa.Schema | None = None,
    batch_rows: int = 65536,
    row_group_rows: int = ROW_GROUP_ROWS,
    profile: Callable[[str], bool] | None = None,
    durable: bool = True,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Convert each source file into ``out/part-<blake3 of its bytes>.parquet``, streaming.

    A source whose bytes equal an earlier one's in the same call is skipped (its part would be the same).
    An existing part of the same name is replaced by identical bytes.

    Args:
        paths: the source files (see `resolve_sources`).
        out: the output folder, created if missing.
        schema: the ``pyarrow.Schema`` every part gets; inferred from the first source if None.
        batch_rows: the most rows per batch read from Parquet and JSON Lines sources.
        row_group_rows: the most rows per Parquet row group written.
        profile: which parts to profile in the same pass (by part name); the report's
            `profile` is then the profile of those parts together.
        durable: fsync the parts before returning (False for a scratch folder that is
            committed to the object store, which makes its own copy durable).
        progress: called with the row count of each batch converted.

    Returns:
        the report of the parts written.

    Raises:
        InvalidArgument: a source cannot be read (malformed CSV: the message names the row), or does
            not fit the schema (the message names the file, the column and both types). No part of the
            call is left in ``out``.
        NotFound: a source file is missing or unreadable.
    """
    if batch_rows < 1:
        raise InvalidArgument(f"batch_rows must be at least 1, not {batch_rows}")
    staging = _Staging(out, durable=durable)
    parts: list[PartInfo] = []
    seen: set[str] = set()
    profiles: list[TableProfile] = []
    try:
        for path in paths:
            # A plain CSV is hashed as its ranges are read, on the cores the parse leaves idle,
            # instead of in a pass of its own before it: its name is known once it is written.
            digest = blake3.blake3() if _kind(path) in ("csv", "tsv") and not _compressed(path) else None
            try:
                part = None if digest is not None else _content_name(path)
                path.stat()
            except OSError as exc:
                raise NotFound(f"{path}: cannot read it: {exc}") from exc
            if part in seen:
                continue
            try:
                own_schema, batches = _read_batches(path, batch_rows, digest=digest)
                if schema is None:
                    schema = _settle(own_schema.remove_metadata())
                target = schema
                temp, rows, part_profile = staging.write(
                    target, (_conform(b, target, str(path)) for b in batches), row_group_rows,
                    profile=profile is not None and (part is None or profile(part)), progress=progress,
                )
            except _ARROW_ERRORS as exc:
                detail = (_csv_error(path, batch_rows) if _kind(path) in ("csv", "tsv") else None) or exc
                raise InvalidArgument(f"{path}: cannot read it: {detail}") from exc
            except OSError as exc:
                raise InvalidArgument(f"{path}: cannot read it: {exc}") from exc
            if part is None:
                assert digest is not None
                part = _part_name(digest)
                if part in seen:  # the same bytes as an earlier source: the same part
                    staging.drop(temp)
                    continue
                if profile is not None and not profile(part):
                    part_profile = None
            seen.add(part)
            staging.keep(temp, part)
            if part_profile is not None:
                profiles.append(part_profile)
            parts.append(PartInfo(str(path), "file", part, rows, temp.stat().st_size))
        staging.commit()
    except BaseException:
        staging.discard()
        raise
    merged = None
    for one in profiles:
        merged = one if merged is None else merged.merge(one)
    return IngestReport(parts, schema if schema is not None else pa.schema([]), merged)


# ---------------------------------------------------------------------------------------------- queries


def _masked(url: str) -> tuple[str, str | None]:
    """The URL with its password hidden, and the password (to scrub it from messages)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        # The parser's message repeats the URL, password and all: say only what is wrong.
        raise InvalidArgument(
            "cannot parse the database URL; expected dialect+driver://user:password@host/db"
        ) from exc
    return parsed.render_as_string(hide_password=True), parsed.password


def _query_batches(url: str, query: str, batch_rows: int, holder: list[Any]) -> Generator[Any, None, None]:
    """Record batches of the query's rows; the schema (first chunk's, settled) goes into holder."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True).execute(text(query))
            names = list(result.keys())
            for chunk in result.partitions(batch_rows):
                columns = list(zip(*chunk)) if chunk else [() for _ in names]
                table = pa.Table.from_arrays([pa.array(list(c)) for c in columns], names=names)
                if not holder:
                    holder.append(_settle(table.schema))
                for batch in table.to_batches():
                    yield _conform(batch, holder[0], "query")
            if not holder:
                holder.append(pa.schema([pa.field(name, pa.string()) for name in names]))
    finally:
        engine.dispose()


def ingest_query(
    url: str,
    query: str,
    out: Path,
    *,
    batch_rows: int = 65536,
    profile: bool = False,
    durable: bool = True,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Run a SQL query and write its rows as ``out/part-<blake3 of URL and query>.parquet``.

    Rows are fetched in chunks of batch_rows with a server-side cursor where the driver has one. Column
    types come from the first chunk (a column with only NULLs there becomes ``string``); later chunks
    are cast to them. An empty result gives a zero-row part with ``string`` columns.

    Args:
        url: a SQLAlchemy database URL (the password never appears in names or messages).
        query: the SQL text.
        out: the output folder, created if missing.
        batch_rows: rows per chunk and per Parquet row group.
        profile: also profile the rows (the report's `profile`).
        durable: fsync the part before returning (see `ingest_files`).
        progress: called with the row count of each chunk fetched.

    Returns:
        the report of the one part written.

    Raises:
        InvalidArgument: the URL is malformed, or the database rejected the query (its message
            included), or a later chunk does not fit the first chunk's types. Nothing is left in out.
    """
    if batch_rows < 1:
        raise InvalidArgument(f"batch_rows must be at least 1, not {batch_rows}")
    masked, password = _masked(url)
    key = f"{masked}\n{query}".encode()
    part = f"part-{blake3.blake3(key).hexdigest()[:16]}.parquet"
    staging = _Staging(out, durable=durable)
    holder: list[Any] = []
    batches = _query_batches(url, query, batch_rows, holder)
    try:
        first = next(batches, None)  # runs the query and fixes the schema
        schema = holder[0]
        stream = _chain(first, batches) if first is not None else iter(())
        temp, rows, part_profile = staging.write(schema, stream, batch_rows, profile=profile,
                                                 progress=progress)
        size = temp.stat().st_size
        staging.keep(temp, part)
        staging.commit()
    except SQLAlchemyError as exc:
        staging.discard()
        message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if password:
            message = message.replace(password, "***")
        raise InvalidArgument(f"query on {masked} failed: {message}") from exc
    except BaseException:
        staging.discard()
        raise
    finally:
        batches.close()
    return IngestReport([PartInfo(query, "query", part, rows, size)], schema, part_profile)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
