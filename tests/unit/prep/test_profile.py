"""Table profiles: exact statistics, sketches, merging, serialisation and determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.prep.profile import FORMAT_ID, SUMMARY_QUANTILES, TableProfile


def profile(table: pa.Table, chunk: int = 1_000) -> TableProfile:
    return TableProfile.from_batches(table.to_batches(max_chunksize=chunk))


@pytest.fixture(scope="module")
def big() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 100_000
    return pa.table(
        {
            "u": rng.random(n),
            "id": np.arange(n, dtype=np.int64),
            "s": pa.array([f"user-{i}" for i in rng.permutation(n)]),
            "z": pa.array(np.minimum(rng.zipf(1.6, n), 1000).astype(str)),
        }
    )


def test_exact_numeric_stats_on_a_small_table() -> None:
    x = [3.0, 1.0, None, 4.0, 1.0, 5.0]
    t = pa.table({"x": x, "i": pa.array([7, -2, None, 0, 7, 7], pa.int32())})
    p = profile(t, chunk=2)
    col = p.columns["x"]
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    assert (p.rows, col.kind, col.type, col.count, col.nulls) == (6, "numeric", "double", 5, 1)
    assert (col.min, col.max) == (1.0, 5.0)
    assert col.mean == pytest.approx(values.mean())
    assert col.std == pytest.approx(values.std())
    assert col.distinct == 4
    i = p.columns["i"]
    assert (i.type, i.count, i.nulls, i.min, i.max, i.distinct) == ("int32", 5, 1, -2, 7, 3)
    assert isinstance(i.min, int)
    assert i.mean == pytest.approx(19 / 5)
    assert i.quantiles is not None
    assert i.quantiles.quantile(0.5) == 7.0
    assert i.quantiles.summary()[0] == -2.0
    assert len(i.quantiles.summary()) == len(SUMMARY_QUANTILES)


def test_categorical_boolean_and_temporal_columns() -> None:
    t = pa.table(
        {
            "c": ["ab", "b", None, "ab", "héllo"],
            "b": [True, False, True, None, True],
            "d": pa.array([1, 2, None, 3, 3], pa.int64()).cast(pa.timestamp("ns")),
            "bin": pa.array([b"\x00", b"\x01\x02", None, None, b"\x00"]),
            "l": pa.array([[1], [2], None, [], [3]]),
        }
    )
    p = profile(t, chunk=2)
    c, b, d, bin_, lst = (p.columns[k] for k in ("c", "b", "d", "bin", "l"))
    assert (c.kind, c.count, c.nulls, c.distinct) == ("categorical", 4, 1, 3)
    assert c.top == [("ab", 2), ("b", 1), ("héllo", 1)]
    assert (c.length_min, c.length_max, c.length_mean) == (1, 5, pytest.approx(10 / 4))
    assert (b.kind, b.count, b.nulls, b.distinct, b.top) == ("boolean", 4, 1, 2, [("true", 3), ("false", 1)])
    assert (d.kind, d.min, d.max, d.count, d.distinct) == ("temporal", 1, 3, 4, 3)
    assert d.mean == pytest.approx(9 / 4)
    assert bin_.top == [("00", 2), ("0102", 1)]
    assert (bin_.length_min, bin_.length_max) == (1, 2)
    assert (lst.kind, lst.count, lst.nulls, lst.distinct, lst.mean) == ("other", 4, 1, None, None)
    html = p._repr_html_()
    assert "1970-01-01T00:00:00.000000003" in html
    assert "ab (2)" in html


def test_dictionary_column_is_profiled_like_its_values() -> None:
    t = pa.table({"c": pa.array(["x", "y", "x", None]).dictionary_encode()})
    col = profile(t).columns["c"]
    assert (col.kind, col.count, col.nulls, col.distinct, col.top) == (
        "categorical",
        3,
        1,
        2,
        [("x", 2), ("y", 1)],
    )


def test_nan_counts_as_null_and_empty_columns_give_none() -> None:
    t = pa.table(
        {
            "f": [math.nan, 2.0, None, 4.0],
            "all_nan": [math.nan] * 4,
            "all_null": pa.array([None] * 4, pa.float64()),
            "s_null": pa.array([None] * 4, pa.string()),
        }
    )
    p = profile(t)
    f = p.columns["f"]
    assert (f.count, f.nulls, f.nans, f.min, f.max, f.mean, f.distinct) == (2, 2, 1, 2.0, 4.0, 3.0, 2)
    for name in ("all_nan", "all_null", "s_null"):
        col = p.columns[name]
        assert (col.count, col.nulls, col.min, col.max, col.mean, col.std, col.distinct) == (
            0,
            4,
            None,
            None,
            None,
            None,
            0,
        )
    assert p.columns["all_nan"].quantiles is not None
    assert p.columns["all_nan"].quantiles.quantile(0.5) is None
    assert p.columns["s_null"].top == []
    assert p.columns["s_null"].length_mean is None
    # an empty table: columns exist, no rows, nothing raises, and it serialises
    empty = TableProfile.from_table(t.slice(0, 0))
    assert empty.rows == 0
    assert empty.columns["f"].count == 0
    assert TableProfile.from_json(empty.to_json()).to_json() == empty.to_json()
    assert TableProfile.from_batches([]).columns == {}


def test_quantiles_of_uniform_values_within_one_percent_rank_error(big: pa.Table) -> None:
    col = profile(big, chunk=10_000).columns["u"]
    values = np.sort(big["u"].to_numpy())
    assert col.quantiles is not None
    for q in np.linspace(0.0, 1.0, 201):
        got = col.quantiles.quantile(float(q))
        assert got is not None
        rank = np.searchsorted(values, got, side="right") / values.size
        assert abs(rank - q) < 0.01, (q, got, rank)
    assert col.quantiles.quantile(0.0) == values[0]
    assert col.quantiles.quantile(1.0) == values[-1]


def test_distinct_estimates(big: pa.Table) -> None:
    p = profile(big, chunk=10_000)
    for name in ("u", "id", "s"):
        estimate = p.columns[name].distinct
        assert estimate is not None
        assert abs(estimate - 100_000) / 100_000 < 0.05, (name, estimate)
    for n in (1, 2, 17, 50):
        small = pa.table({"i": np.arange(n).repeat(3), "s": pa.array([f"k{i}" for i in range(n)] * 3)})
        ps = profile(small, chunk=7)
        for name in ("i", "s"):
            estimate = ps.columns[name].distinct
            assert estimate is not None
            assert abs(estimate - n) <= 1, (name, n, estimate)


def test_top_values_on_a_skewed_column(big: pa.Table) -> None:
    col = profile(big, chunk=10_000).columns["z"]
    truth = {
        str(k): int(c)
        for k, c in zip(*np.unique(big["z"].to_numpy(zero_copy_only=False), return_counts=True))
    }
    expected = sorted(truth, key=lambda k: -truth[k])[:5]
    assert col.top is not None
    assert len(col.top) <= 64
    assert [k for k, _ in col.top[:5]] == expected
    # counts are lower bounds, short by at most n / (k + 1)
    for key, count in col.top[:5]:
        assert truth[key] - 100_000 / 65 <= count <= truth[key]


def test_merge_of_halves_equals_the_whole(big: pa.Table) -> None:
    whole = profile(big, chunk=10_000)
    a = profile(big.slice(0, 40_000), chunk=10_000)
    b = profile(big.slice(40_000), chunk=10_000)
    merged = a.merge(b)
    assert merged.rows == whole.rows
    for name, w in whole.columns.items():
        m = merged.columns[name]
        assert (m.count, m.nulls, m.min, m.max, m.length_min, m.length_max) == (
            w.count,
            w.nulls,
            w.min,
            w.max,
            w.length_min,
            w.length_max,
        )
        assert m.distinct == w.distinct  # HyperLogLog registers merge exactly
        if w.mean is not None:
            assert m.mean == pytest.approx(w.mean, rel=1e-12)
            assert m.std == pytest.approx(w.std, rel=1e-9)
    mq, wq = merged.columns["u"].quantiles, whole.columns["u"].quantiles
    assert mq is not None
    assert wq is not None
    for q in SUMMARY_QUANTILES:
        assert mq.quantile(q) == pytest.approx(wq.quantile(q), abs=0.02)
    top_merged, top_whole = merged.columns["z"].top, whole.columns["z"].top
    assert top_merged is not None
    assert top_whole is not None
    assert [k for k, _ in top_merged[:5]] == [k for k, _ in top_whole[:5]]
    # merging does not depend on argument order
    assert b.merge(a).to_json() == merged.to_json()


def test_merge_of_small_exact_profiles_is_exact() -> None:
    t = pa.table({"x": [1.0, 2.0, 3.0, None], "c": ["a", "b", "a", None]})
    merged = profile(t.slice(0, 2)).merge(profile(t.slice(2)))
    whole = profile(t)
    assert merged.columns["c"].top == whole.columns["c"].top == [("a", 2), ("b", 1)]
    assert merged.columns["x"].distinct == whole.columns["x"].distinct == 3
    assert TableProfile().merge(whole).to_json() == whole.to_json()


def test_merge_with_different_columns_names_the_column() -> None:
    a = profile(pa.table({"x": [1], "y": [2]}))
    with pytest.raises(InvalidArgument, match="column 'y' is only in the profile"):
        a.merge(profile(pa.table({"x": [1]})))
    with pytest.raises(InvalidArgument, match="column 'y' is int64 in the profile but string"):
        a.merge(profile(pa.table({"x": [1], "y": ["2"]})))
    with pytest.raises(InvalidArgument, match="column 'z' is only in the batch"):
        a.update(pa.record_batch({"x": [1], "y": [2], "z": [3]}))


def test_json_round_trip_and_format_id(big: pa.Table) -> None:
    t = big.slice(0, 5_000).append_column("f", pa.array([math.inf, -math.inf] + [1.0] * 4_998))
    p = profile(t)
    text = p.to_json()
    d = json.loads(text)
    assert d["format"] == FORMAT_ID
    back = TableProfile.from_json(text)
    assert back.to_json() == text
    for name, col in p.columns.items():
        other = back.columns[name]
        assert (other.count, other.min, other.max, other.distinct, other.top) == (
            col.count,
            col.min,
            col.max,
            col.distinct,
            col.top,
        )
        assert other.mean == pytest.approx(col.mean, nan_ok=True)
        if col.quantiles is not None:
            assert other.quantiles is not None
            assert other.quantiles.summary() == col.quantiles.summary()
    assert (back.columns["f"].min, back.columns["f"].max) == (-math.inf, math.inf)
    assert back.columns["f"].mean is not None
    assert math.isnan(back.columns["f"].mean)
    # a read-back profile keeps merging
    assert back.merge(p).rows == 2 * p.rows


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown profile format 'threadline\.profile/99'"):
        TableProfile.from_dict({"format": "threadline.profile/99", "rows": 0, "columns": []})
    with pytest.raises(InvalidArgument, match="unknown profile format None"):
        TableProfile.from_dict({"rows": 0})


def test_serialised_numeric_column_is_compact(big: pa.Table) -> None:
    p = profile(big, chunk=10_000)
    for col in p.to_dict()["columns"]:
        if col["kind"] == "numeric":
            size = len(json.dumps(col, separators=(",", ":")))
            assert size < 3 * 1024, (col["name"], size)


def test_same_input_gives_identical_json(big: pa.Table) -> None:
    assert profile(big, chunk=10_000).to_json() == profile(big, chunk=10_000).to_json()


def test_html_escapes_values() -> None:
    p = profile(pa.table({"<b>": ["<script>", "<script>"]}))
    html = p._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt; (2)" in html
    assert "&lt;b&gt;" in html

