"""TableSink: large row groups cut exactly, and the profile of exactly what was written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from threadline.errors import InvalidArgument
from threadline.prep.profile import TableProfile
from threadline.prep.sink import PROFILE_ROWS, TableSink

if TYPE_CHECKING:
    from pathlib import Path


def _batches(count: int, rows: int) -> list[pa.RecordBatch]:
    return [
        pa.record_batch({"id": pa.array(range(i * rows, (i + 1) * rows)),
                         "label": pa.array([f"l{j % 7}" for j in range(rows)])})
        for i in range(count)
    ]


def test_batches_are_gathered_into_row_groups_of_the_given_size(tmp_path: Path) -> None:
    batches = _batches(10, 300)
    with TableSink(tmp_path / "t.parquet", batches[0].schema, row_group_rows=1000) as sink:
        for batch in batches:
            sink.write(batch)
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 1000]
    assert pq.read_table(tmp_path / "t.parquet").column("id").to_pylist() == list(range(3000))
    assert sink.rows == 3000


def test_the_profile_is_the_profile_of_the_rows_written(tmp_path: Path) -> None:
    batches = _batches(5, 1000)
    with TableSink(tmp_path / "t.parquet", batches[0].schema, row_group_rows=1500) as sink:
        for batch in batches:
            sink.write(batch)
    direct = TableProfile.from_batches(batches)
    assert sink.profile.rows == 5000

    def exact(profile: TableProfile) -> list[dict[str, object]]:
        # the quantile sketch's layout depends on how rows were grouped; its answers do not
        return [{k: v for k, v in c.items() if k != "kll"} for c in profile.to_dict()["columns"]]

    assert exact(sink.profile) == exact(direct)
    got, want = sink.profile.columns["id"].quantiles, direct.columns["id"].quantiles
    assert got is not None
    assert want is not None
    assert got.quantile(0.5) == pytest.approx(want.quantile(0.5), abs=100)


def test_an_empty_sink_writes_an_empty_table_with_the_schema(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64())])
    with TableSink(tmp_path / "t.parquet", schema) as sink:
        pass
    assert pq.read_table(tmp_path / "t.parquet").schema == schema
    assert sink.profile.rows == 0
    assert list(sink.profile.columns) == ["id"]


def test_a_failure_inside_the_sink_writes_no_pending_rows(tmp_path: Path) -> None:
    batches = _batches(1, 10)

    def boom() -> None:
        with TableSink(tmp_path / "t.parquet", batches[0].schema) as sink:
            sink.write(batches[0])
            raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        boom()
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 0


def test_a_row_group_size_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="row_group_rows"):
        TableSink(tmp_path / "t.parquet", pa.schema([("id", pa.int64())]), row_group_rows=0)


def test_small_batches_are_profiled_in_windows_of_profile_rows(tmp_path: Path) -> None:
    """However a step batches its rows, a row group is profiled in `PROFILE_ROWS` windows."""
    batches = _batches(90, 1_000)  # 90k rows in small batches: a window spans many of them
    with TableSink(tmp_path / "t.parquet", batches[0].schema, row_group_rows=50_000) as sink:
        for batch in batches:
            sink.write(batch)
    table = pa.Table.from_batches(batches)
    windows = [
        window
        for group in (table.slice(0, 50_000), table.slice(50_000))
        for window in group.combine_chunks().to_batches(max_chunksize=PROFILE_ROWS)
    ]
    assert sink.profile.to_json() == TableProfile.from_batches(windows).to_json()


def test_a_sink_profiling_no_columns_still_counts_rows(tmp_path: Path) -> None:
    batches = _batches(3, 100)
    with TableSink(tmp_path / "t.parquet", batches[0].schema, profile_columns=[]) as sink:
        for batch in batches:
            sink.write(batch)
    assert (sink.profile.rows, list(sink.profile.columns)) == (300, [])
