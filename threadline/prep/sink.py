"""Write a step's output table: large Parquet row groups, written and profiled on worker threads.

Steps stream small record batches (64 Ki rows); written one row group each, Parquet spends
more time on per-group overhead and compresses worse (per-group dictionaries). A `TableSink`
gathers batches into row groups of up to a million rows (or 16 MiB) and hands each group to
two worker threads, one encoding it and one updating the profile, while the step reads and
transforms the next group (Arrow and NumPy release the GIL for the heavy parts): parsing,
encoding and profiling overlap instead of taking turns.

Memory stays bounded: one group being filled and one being written and profiled.

Example:
    with TableSink(folder / "clean.parquet", schema) as sink:
        for batch in batches:
            sink.write(batch)
    write_json(folder / META_DIR / "profile.json", sink.profile.to_dict())
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Self

import pyarrow as pa
import pyarrow.parquet as pq

from threadline.errors import InvalidArgument
from threadline.prep.profile import TableProfile
from threadline.storage.memory import tune_allocator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from types import TracebackType

#: rows per row group: big enough for cheap writes and good dictionaries, small enough to
#: keep two groups of a wide table in memory
ROW_GROUP_ROWS = 1 << 20
#: rows per profile update (see `_profile_group`). Smaller windows pay the sketches' per-call
#: overhead more often; larger ones make every NumPy temporary big enough for malloc to mmap
#: it, and the page faults of a fresh mapping per temporary cost more than the arithmetic
#: (measured on 2M mixed rows: 16 Ki 0.165 s, 32 Ki 0.144 s, 64 Ki 0.21 s, 128 Ki 0.28 s).
PROFILE_ROWS = 1 << 15
#: a profile window of small batches is joined into one only up to this size
COMBINE_BYTES = 4 << 20
#: a group is also cut at this many bytes, so wide or text-heavy rows stay bounded
ROW_GROUP_BYTES = 16 << 20


class TableSink:
    """A Parquet file written in large row groups, with the profile of what was written.

    Args:
        path: the file to write.
        schema: every batch's schema.
        profile: also profile the rows (`profile` is then their `TableProfile`).
        row_group_rows: the most rows per row group.
        profile_columns: profile only these columns (the caller has the others' profiles).
        compression: the Parquet codec; snappy is the fastest every reader has, and the
            object store compresses the committed file again with zstd where that still pays.
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        *,
        profile: bool = True,
        row_group_rows: int = ROW_GROUP_ROWS,
        profile_columns: Sequence[str] | None = None,
        compression: str = "snappy",
    ) -> None:
        if row_group_rows < 1:
            raise InvalidArgument(f"row_group_rows must be at least 1, not {row_group_rows}")
        tune_allocator()  # the profile's NumPy temporaries reuse the heap instead of fresh mappings
        self.path = path
        self.schema = schema
        self.rows = 0
        self.row_group_rows = row_group_rows
        self._profile_columns = (
            list(profile_columns) if profile_columns is not None else list(schema.names)
        )
        self.profile: TableProfile = TableProfile.from_table(
            pa.Table.from_batches([], schema=schema).select(self._profile_columns)
        )
        self._profiling = profile
        # Dictionary pages pay for text; on numbers they mostly cost time before falling back.
        texts = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                 or pa.types.is_dictionary(f.type)]
        self._writer = pq.ParquetWriter(path, schema, compression=compression, use_dictionary=texts)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        # One thread encodes, one profiles: each keeps its groups in order (the profile's
        # sketches are deterministic only for a fixed order), and the two overlap.
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="tl-sink-encode")
        self._profiler = ThreadPoolExecutor(1, thread_name_prefix="tl-sink-profile")
        self._done: list[Future[None]] = []

    def write(self, batch: pa.RecordBatch) -> None:
        """Add a batch; a full row group is written (and profiled) as soon as it is complete."""
        while batch.num_rows:
            room = self.row_group_rows - self._pending_rows
            piece, batch = batch.slice(0, room), batch.slice(room)
            self._pending.append(piece)
            self._pending_rows += piece.num_rows
            self._pending_bytes += piece.nbytes
            self.rows += piece.num_rows
            if self._pending_rows >= self.row_group_rows or self._pending_bytes >= ROW_GROUP_BYTES:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        group = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._wait()  # at most one group in the workers: bounded memory, groups in order
        self._done.append(self._encoder.submit(self._write_group, group))
        if self._profiling:
            self._done.append(self._profiler.submit(self._profile_group, group.select(self._profile_columns)))

    def _write_group(self, group: pa.Table) -> None:
        self._writer.write_table(group, row_group_size=group.num_rows)

    def _profile_group(self, selected: pa.Table) -> None:
        """Profile a group in windows of `PROFILE_ROWS` rows, whatever batches it came in.

        A step's small batches (a few thousand rows) would each pay the sketches' per-call
        cost, so a window that spans several is concatenated first (a copy of at most
        `PROFILE_ROWS` rows, and only of narrow rows: wide ones are few per batch already and
        their copy would cost memory); a window inside one batch is a zero-copy slice.
        """
        if selected.num_columns == 0:  # nothing to sketch, only rows to count
            for batch in selected.to_batches(max_chunksize=PROFILE_ROWS):
                self.profile.update(batch)
            return
        for start in range(0, selected.num_rows, PROFILE_ROWS):
            window = selected.slice(start, PROFILE_ROWS)
            if window.nbytes <= COMBINE_BYTES and any(column.num_chunks > 1 for column in window.columns):
                window = window.combine_chunks()
            for batch in window.to_batches():
                self.profile.update(batch)

    def _wait(self) -> None:
        done, self._done = self._done, []
        for future in done:
            future.result()

    def close(self) -> TableProfile:
        """Write what is left, close the file and return the finished profile."""
        try:
            self._flush()
            self._wait()
        finally:
            self._shutdown()
            self._writer.close()
        return self.profile

    def _shutdown(self) -> None:
        for pool in (self._encoder, self._profiler):
            pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Close without writing what is left (the step failed; its folder is discarded)."""
        self._pending.clear()
        try:
            self._shutdown()
        finally:
            self._writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
