"""Reading committed files: a seekable binary stream, and tables as Arrow or pandas."""

from __future__ import annotations

import bisect
import io
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from threadline.data.manifest import FileEntry
    from threadline.data.repos import DataRepos
    from threadline.storage.cas import ContentStore


class StoredFileReader(io.RawIOBase):
    """A read-only, seekable file over a stored file's chunks; each chunk verified on read."""

    def __init__(self, content: ContentStore, entry: FileEntry) -> None:
        super().__init__()
        self.content = content
        self.entry = entry
        self.chunks = content.chunk_list(entry.stored)
        self.starts: list[int] = []
        pos = 0
        for _, size in self.chunks:
            self.starts.append(pos)
            pos += size
        self.pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.entry.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def _chunk(self, index: int) -> bytes:
        if self._cached is None or self._cached[0] != index:
            key, _ = self.chunks[index]
            self._cached = (index, self.content.read_many([key])[0])
        return self._cached[1]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self.pos < self.entry.size:
            index = bisect.bisect_right(self.starts, self.pos) - 1
            chunk = self._chunk(index)
            rel = self.pos - self.starts[index]
            n = min(len(chunk) - rel, len(view) - written)
            view[written : written + n] = chunk[rel : rel + n]
            written += n
            self.pos += n
        return written


def file_entry(repos: DataRepos, ref: str) -> FileEntry:
    """The file a `repo@rev:path` ref names."""
    target = repos.resolve(ref)
    if not target.path:
        raise InvalidArgument(f"{ref} names no file; add `:path/in/repo`")
    entry = repos.manifest(target.require_commit()).get(target.path)
    if entry is None:
        raise NotFound(f"{ref}: no file {target.path!r} in commit {target.require_commit().short_id}")
    return entry


def open_file(repos: DataRepos, ref: str) -> io.BufferedReader:
    """A buffered, seekable binary stream of a committed file."""
    return io.BufferedReader(StoredFileReader(repos.content, file_entry(repos, ref)), 1 << 20)


#: the size a Parquet batch aims at (see `iter_batches`)
BATCH_BYTES = 4 << 20
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def iter_batches(
    repos: DataRepos, ref: str, *, batch_rows: int = 65_536, columns: Sequence[str] | None = None
) -> Generator[Any, None, None]:
    """Stream a committed table as pyarrow RecordBatches, in bounded memory.

    Parquet is read row group by row group and CSV/TSV block by block; JSON Lines files are
    read whole (pyarrow has no streaming JSON reader), then sliced. With `columns`, only those
    columns are returned (Parquet decodes only them). Parquet batches hold at most
    `batch_rows` rows and about `BATCH_BYTES` bytes: the reader's buffers grow to several times
    a batch, so batches of wide rows are kept short.
    """
    import pyarrow.csv as pacsv  # heavy: only for table reads
    import pyarrow.parquet as pq

    entry = file_entry(repos, ref)
    name = entry.path.lower()
    if not name.endswith(TABLE_SUFFIXES):
        raise InvalidArgument(
            f"{ref}: cannot read {entry.path!r} as a table; use .parquet, .csv, .tsv or .jsonl"
        )
    with open_file(repos, ref) as fh:
        if name.endswith(".parquet"):
            parquet = pq.ParquetFile(fh)
            yield from parquet.iter_batches(
                batch_size=_parquet_batch_rows(parquet.metadata, batch_rows, columns), columns=columns
            )
        elif name.endswith((".csv", ".tsv")):
            delimiter = "\t" if name.endswith(".tsv") else ","
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=8 << 20),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(include_columns=columns) if columns else None,
            )
            # Closed before the file: an abandoned reader's read-ahead thread would otherwise
            # outlive it, and abort the interpreter at exit ("terminate called ...").
            with reader:
                yield from reader
        else:
            table = read_table(repos, ref)
            yield from (table.select(columns) if columns is not None else table).to_batches(
                max_chunksize=batch_rows
            )


def _parquet_batch_rows(meta: Any, batch_rows: int, columns: Sequence[str] | None) -> int:
    """Rows per batch so that a batch of the selected columns is about BATCH_BYTES."""
    if not meta.num_rows or not meta.num_row_groups:
        return batch_rows
    wanted = set(columns) if columns is not None else None
    size = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            if wanted is None or column.path_in_schema.split(".", 1)[0] in wanted:
                size += column.total_uncompressed_size
    per_row = max(1, size // meta.num_rows)
    return int(max(1024, min(batch_rows, BATCH_BYTES // per_row)))


def read_table(repos: DataRepos, ref: str, *, pandas: bool = False) -> Any:
    """A committed Parquet, CSV, TSV or JSON Lines file as a pyarrow Table (or a DataFrame)."""
    import pyarrow as pa  # heavy: only for table reads

    entry = file_entry(repos, ref)
    name = entry.path.lower()
    with open_file(repos, ref) as fh:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(fh)
        elif name.endswith((".csv", ".tsv")):
            import pyarrow.csv as pacsv

            delimiter = "\t" if name.endswith(".tsv") else ","
            table = pacsv.read_csv(fh, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        elif name.endswith((".jsonl", ".ndjson", ".json")):
            import pyarrow.json as pajson

            table = pajson.read_json(fh)
        else:
            raise InvalidArgument(
                f"{ref}: cannot read {entry.path!r} as a table; use .parquet, .csv, .tsv or .jsonl"
            )
    assert isinstance(table, pa.Table)
    return table.to_pandas() if pandas else table
