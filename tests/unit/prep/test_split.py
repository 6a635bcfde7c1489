"""Splitting tables into named parts: validation, determinism, stability, exact counts, streaming."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.prep.split import (
    FORMAT,
    SplitReport,
    SplitSpec,
    split_batches,
    split_table,
    stratified_counts,
)

THREE = {"train": 0.7, "validation": 0.2, "test": 0.1}


def assign(
    table: pa.Table, spec: SplitSpec, key: str = "id", max_chunksize: int | None = None
) -> dict[Any, str]:
    """Split `table` and map each row's `key` value to its part."""
    out: dict[Any, str] = {}
    for part, batch in split_table(lambda: table.to_batches(max_chunksize=max_chunksize), spec):
        for value in batch.column(key).to_pylist():
            assert value not in out
            out[value] = part
    assert len(out) == table.num_rows
    return out


def ids(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64())})


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ({"train": 0.8, "test": 0.3}, r"sum to 1\.1.*not 1"),
        ({"train": 1.2, "test": -0.2}, r"test=-0\.2 must be a number > 0"),
        ({"train": 1.0, "test": 0.0}, r"test=0\.0 must be a number > 0"),
        ({}, "empty"),
        ({"train": float("nan")}, "must be a number > 0"),
        ({"train": "1"}, r"train='1' must be a number"),
    ],
)
def test_bad_fractions_are_refused_naming_the_values(fractions: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        SplitSpec(fractions)


def test_fractions_summing_to_one_within_rounding_are_accepted() -> None:
    assert SplitSpec({"a": 0.1, "b": 0.2, "c": 0.7}).parts == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "shuffle"}, "method 'shuffle' is not one of"),
        ({"method": "hash"}, "method 'hash' needs 'by'"),
        ({"method": "stratify"}, "needs 'stratify'"),
        ({"method": "random", "by": ("id",)}, "option 'by' does not apply to method 'random'"),
        ({"method": "hash", "by": ("id", "id")}, "repeat a column"),
        ({"seed": -1}, r"seed -1 must be an integer in \[0, 2\*\*64\)"),
        ({"method": "time", "time_column": "t"}, "needs 1 cutoffs"),
        ({"method": "time", "time_column": "t", "cutoffs": ("2024-13-01",)}, "'2024-13-01' is not an ISO"),
    ],
)
def test_bad_method_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        SplitSpec({"train": 0.5, "test": 0.5}, **kwargs)


def test_cutoffs_must_increase() -> None:
    with pytest.raises(InvalidArgument, match="strictly increasing"):
        SplitSpec(THREE, method="time", time_column="t", cutoffs=("2024-02-01", "2024-01-01"))


def test_validate_names_an_unknown_column() -> None:
    spec = SplitSpec(THREE, method="hash", by=("user",))
    with pytest.raises(InvalidArgument, match=r"column 'user' is not in the table; columns: \['id'\]"):
        spec.validate(pa.schema([("id", pa.int64())]))
    with pytest.raises(InvalidArgument, match="'user' is not in the table"):
        list(split_batches(ids(10).to_batches(), spec))


@pytest.mark.parametrize(
    ("spec", "dtype", "match"),
    [
        (
            SplitSpec(THREE, method="hash", by=("c",)),
            pa.list_(pa.int64()),
            "type list<item: int64>; it must be",
        ),
        (
            SplitSpec(THREE, method="stratify", stratify="c"),
            pa.float64(),
            "type double; it must be an integer",
        ),
        (
            SplitSpec(THREE, method="time", time_column="c", cutoffs=("2024-01-01", "2024-02-01")),
            pa.int64(),
            "type int64; it must be a timestamp, date or ISO-8601 string",
        ),
    ],
)
def test_validate_names_a_wrong_type(spec: SplitSpec, dtype: pa.DataType, match: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"column 'c' has {match}"):
        spec.validate(pa.schema([("c", dtype)]))


# --- random -------------------------------------------------------------------------------------


def test_random_split_is_deterministic_per_seed_with_sizes_near_the_fractions() -> None:
    table = ids(100_000)
    first = assign(table, SplitSpec(THREE, seed=1))
    assert assign(table, SplitSpec(THREE, seed=1)) == first
    other = assign(table, SplitSpec(THREE, seed=2))
    assert sum(first[i] != other[i] for i in first) > 30_000
    sizes = Counter(first.values())
    for part, fraction in THREE.items():
        assert abs(sizes[part] / 100_000 - fraction) < 0.01


def test_random_split_depends_on_the_global_row_index() -> None:
    spec = SplitSpec(THREE, seed=5)
    whole = [(p, b.column("id").to_pylist()) for p, b in split_batches(ids(1000).to_batches(), spec)]
    tail = ids(600, start=400)
    shard = [
        (p, b.column("id").to_pylist()) for p, b in split_batches(tail.to_batches(), spec, row_offset=400)
    ]
    whole_parts = {i: p for p, vals in whole for i in vals}
    assert all(whole_parts[i] == p for p, vals in shard for i in vals)


# --- hash ---------------------------------------------------------------------------------------


def test_hash_split_keeps_every_old_row_in_its_part_when_data_grows_and_is_shuffled() -> None:
    rng = np.random.default_rng(0)
    old = pa.table({"id": pa.array(range(5000), pa.int64()), "user": [f"u{i}" for i in range(5000)]})
    grown = pa.concat_tables(
        [
            old,
            pa.table(
                {"id": pa.array(range(5000, 8000), pa.int64()), "user": [f"u{i}" for i in range(5000, 8000)]}
            ),
        ]
    )
    grown = grown.take(pa.array(rng.permutation(grown.num_rows)))
    for by in (("id",), ("user",), ("user", "id")):
        spec = SplitSpec(THREE, method="hash", by=by, seed=3)
        before = assign(old, spec, max_chunksize=700)
        after = assign(grown, spec, max_chunksize=333)
        assert all(after[i] == part for i, part in before.items()), by
        sizes = Counter(after.values())
        assert abs(sizes["train"] / 8000 - 0.7) < 0.03, by


def test_hash_split_differs_by_seed_and_by_key_columns() -> None:
    table = pa.table({"id": pa.array(range(2000), pa.int64()), "user": [f"u{i}" for i in range(2000)]})
    by_id = assign(table, SplitSpec(THREE, method="hash", by=("id",)))
    assert assign(table, SplitSpec(THREE, method="hash", by=("id",), seed=1)) != by_id
    assert assign(table, SplitSpec(THREE, method="hash", by=("user",))) != by_id
    assert assign(table, SplitSpec(THREE, method="hash", by=("id", "user"))) != by_id


def test_equal_keys_share_a_part_whatever_the_integer_width_or_encoding() -> None:
    spec = SplitSpec(THREE, method="hash", by=("k",), seed=9)
    values = list(range(-500, 500)) * 2
    parts_by_type = []
    for arr in (
        pa.array(values, pa.int64()),
        pa.array(values, pa.int16()),
        pa.array(values).dictionary_encode(),
    ):
        table = pa.table({"k": arr, "id": range(len(values))})
        rows = assign(table, spec)
        parts_by_type.append([rows[i] for i in range(len(values))])
    assert parts_by_type[0] == parts_by_type[1] == parts_by_type[2]
    assert parts_by_type[0][:1000] == parts_by_type[0][1000:]


def test_string_keys_are_stable_across_batches_and_nulls_share_one_part() -> None:
    users = [None if i % 10 == 0 else f"user-{i % 97}" for i in range(3000)]
    table = pa.table({"user": users, "id": range(3000)})
    spec = SplitSpec(THREE, method="hash", by=("user",), seed=4)
    small, big = assign(table, spec, max_chunksize=17), assign(table, spec)
    assert small == big
    part_of: dict[Any, set[str]] = {}
    for i, user in enumerate(users):
        part_of.setdefault(user, set()).add(big[i])
    assert all(len(parts) == 1 for parts in part_of.values())


def test_float_bool_and_timestamp_keys_hash() -> None:
    table = pa.table(
        {
            "f": pa.array([0.5, -0.0, 0.0, None] * 50),
            "b": [True, False] * 100,
            "t": pa.array([datetime(2024, 1, 1 + i % 28) for i in range(200)], pa.timestamp("ms")),
            "id": range(200),
        }
    )
    rows = assign(table, SplitSpec(THREE, method="hash", by=("f", "b", "t")))
    assert len(rows) == 200
    only_f = assign(table, SplitSpec(THREE, method="hash", by=("f",)))
    assert only_f[1] == only_f[2]  # -0.0 and 0.0 are the same key


# --- stratify -----------------------------------------------------------------------------------


def test_stratified_split_gives_exact_per_class_counts() -> None:
    labels = ["a"] * 700 + ["b"] * 200 + ["c"] * 100
    order = np.random.default_rng(1).permutation(1000)
    table = pa.table({"id": range(1000), "label": [labels[i] for i in order]})
    spec = SplitSpec({"train": 0.8, "test": 0.2}, method="stratify", stratify="label", seed=11)
    report = SplitReport.empty(spec)
    counts: Counter[tuple[str, str]] = Counter()
    for part, batch in split_table(lambda: table.to_batches(max_chunksize=64), spec, report=report):
        counts.update((part, label) for label in batch.column("label").to_pylist())
    assert counts == {
        ("train", "a"): 560,
        ("test", "a"): 140,
        ("train", "b"): 160,
        ("test", "b"): 40,
        ("train", "c"): 80,
        ("test", "c"): 20,
    }
    assert report.rows == {"train": 800, "test": 200}
    assert report.to_dict()["total"] == 1000


def test_stratified_split_is_deterministic_streaming_and_seeded() -> None:
    rng = np.random.default_rng(2)
    table = pa.table({"id": range(5000), "label": rng.integers(0, 7, 5000), "x": rng.random(5000)})
    spec = SplitSpec(THREE, method="stratify", stratify="label", seed=1)
    one = assign(table, spec)
    assert assign(table, spec, max_chunksize=9) == one
    assert assign(table, SplitSpec(THREE, method="stratify", stratify="label", seed=2)) != one
    per_class = Counter((one[i], label) for i, label in enumerate(table.column("label").to_pylist()))
    for label, n in Counter(table.column("label").to_pylist()).items():
        assert [per_class[(p, label)] for p in THREE] == stratified_counts(n, spec)


def test_stratified_counts_use_largest_remainder_rounding() -> None:
    spec = SplitSpec(THREE)
    assert stratified_counts(10, spec) == [7, 2, 1]
    assert stratified_counts(3, spec) == [2, 1, 0]
    assert stratified_counts(1, spec) == [1, 0, 0]
    assert stratified_counts(0, spec) == [0, 0, 0]
    assert sum(stratified_counts(12_345, spec)) == 12_345


def test_stratified_split_counts_null_labels_as_a_class_and_refuses_split_batches() -> None:
    table = pa.table({"id": range(10), "label": ["a", None] * 5})
    spec = SplitSpec({"train": 0.6, "test": 0.4}, method="stratify", stratify="label")
    rows = assign(table, spec)
    assert Counter(rows[i] for i in range(1, 10, 2)) == {"train": 3, "test": 2}
    with pytest.raises(InvalidArgument, match="needs two passes; use split_table"):
        list(split_batches(table.to_batches(), spec))


def test_stratified_split_refuses_a_source_that_changes_between_passes() -> None:
    tables = iter(
        [
            ids(10).append_column("label", pa.array(["a"] * 10)),
            ids(10).append_column("label", pa.array(["b"] * 10)),
        ]
    )
    spec = SplitSpec({"train": 0.5, "test": 0.5}, method="stratify", stratify="label")
    with pytest.raises(InvalidArgument, match="new class 'b' on its second pass"):
        list(split_table(lambda: next(tables).to_batches(), spec))


# --- time ---------------------------------------------------------------------------------------

TIME_SPEC = SplitSpec(THREE, method="time", time_column="t", cutoffs=("2024-03-01", "2024-03-10T12:00:00"))
MOMENTS = [
    datetime(2024, 1, 1),
    datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime(2024, 3, 1),
    datetime(2024, 3, 10, 11, 59),
    datetime(2024, 3, 10, 12),
    datetime(2025, 1, 1),
]
EXPECTED = ["train", "train", "validation", "validation", "test", "test"]


@pytest.mark.parametrize(
    "column",
    [
        pa.array(MOMENTS, pa.timestamp("us")),
        pa.array(MOMENTS, pa.timestamp("ns")),
        pa.array(MOMENTS, pa.timestamp("us", tz="UTC")),
        pa.array([m.isoformat() for m in MOMENTS]),
        pa.array([m.replace(tzinfo=UTC).isoformat() for m in MOMENTS]),
    ],
    ids=["us", "ns", "utc", "iso", "iso-offset"],
)
def test_time_split_cuts_at_the_cutoffs(column: pa.Array) -> None:
    table = pa.table({"id": range(len(MOMENTS)), "t": column})
    rows = assign(table, TIME_SPEC, max_chunksize=4)
    assert [rows[i] for i in range(len(MOMENTS))] == EXPECTED


def test_time_split_on_dates() -> None:
    days = [date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 10), date(2024, 3, 11)]
    table = pa.table({"id": range(4), "t": pa.array(days, pa.date32())})
    rows = assign(table, TIME_SPEC)
    assert [rows[i] for i in range(4)] == ["train", "validation", "validation", "test"]


def test_time_split_refuses_null_and_unparseable_times() -> None:
    nulls = pa.table({"id": range(2), "t": pa.array([datetime(2024, 1, 1), None])})
    with pytest.raises(InvalidArgument, match="time column 't' has 1 null values"):
        list(split_batches(nulls.to_batches(), TIME_SPEC))
    junk = pa.table({"id": range(2), "t": ["2024-01-01", "yesterday"]})
    with pytest.raises(InvalidArgument, match="time column 't' holds strings that are not ISO-8601"):
        list(split_batches(junk.to_batches(), TIME_SPEC))


# --- streaming and serialisation ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["random", "hash", "stratify"])
def test_many_small_batches_split_like_one_big_batch(method: str) -> None:
    rng = np.random.default_rng(3)
    table = pa.table({"id": range(4000), "label": rng.integers(0, 3, 4000).astype(str)})
    by_method: dict[str, dict[str, Any]] = {"hash": {"by": ("id",)}, "stratify": {"stratify": "label"}}
    options = by_method.get(method, {})
    spec = SplitSpec(THREE, method=method, seed=8, **options)  # type: ignore[arg-type]
    whole = assign(table, spec, max_chunksize=None)
    assert assign(table.combine_chunks(), spec, max_chunksize=7) == whole
    empty_first = [pa.RecordBatch.from_pylist([], schema=table.schema), *table.to_batches(max_chunksize=100)]
    parts = {v: p for p, b in split_table(lambda: empty_first, spec) for v in b.column("id").to_pylist()}
    assert parts == whole


def test_spec_round_trips_through_json() -> None:
    specs = [
        SplitSpec(THREE, seed=2**64 - 1),
        SplitSpec(THREE, method="hash", by=("user", "id"), seed=3),
        SplitSpec({"train": 0.8, "test": 0.2}, method="stratify", stratify="label"),
        TIME_SPEC,
    ]
    for spec in specs:
        data = json.loads(json.dumps(spec.to_dict()))
        assert data["format"] == FORMAT
        again = SplitSpec.from_dict(data)
        assert again == spec
        assert list(again.fractions) == list(spec.fractions)
    report = SplitReport.empty(TIME_SPEC)
    assert json.loads(json.dumps(report.to_dict()))["rows"] == {"train": 0, "validation": 0, "test": 0}


def test_from_dict_refuses_other_formats_and_unknown_keys() -> None:
    data = SplitSpec(THREE).to_dict()
    with pytest.raises(InvalidArgument, match=r"format is 'threadline\.split/9', expected"):
        SplitSpec.from_dict({**data, "format": "threadline.split/9"})
    with pytest.raises(InvalidArgument, match=r"unknown keys \['shuffle'\]"):
        SplitSpec.from_dict({**data, "shuffle": True})
    with pytest.raises(InvalidArgument, match="sum to"):
        SplitSpec.from_dict({**data, "fractions": {"train": 0.5}})


def test_hash_split_on_an_all_null_string_key_puts_the_rows_in_one_part() -> None:
    # A batch whose string key is all null has an empty dictionary once encoded.
    batch = pa.record_batch({"k": pa.array([None, None, None], type=pa.string()), "v": [1, 2, 3]})
    spec = SplitSpec({"a": 0.5, "b": 0.5}, method="hash", by=("k",))
    parts = [(part, b.num_rows) for part, b in split_batches([batch], spec)]
    assert len(parts) == 1
    assert parts[0][1] == 3
