"""Window summaries: counts in the reference's bins, exact merges, JSON, and mismatches."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.monitor.drift import check_drift
from threadline.monitor.reference import Reference
from threadline.monitor.window import WindowSummary, summarise


def _data(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    c = rng.choice(np.array(["a", "b", "c", "new1", "new2"]), n, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    mask = rng.random(n) < 0.05
    return pa.table({"x": x, "c": pa.array(c, mask=mask), "i": pa.array(rng.integers(0, 9, n))})


@pytest.fixture
def reference() -> Reference:
    rng = np.random.default_rng(0)
    return Reference.from_table({"x": rng.normal(size=5000), "i": rng.integers(0, 9, 5000),
                                 "c": rng.choice(np.array(["a", "b", "c"]), 5000)})


def test_numeric_counts_fall_in_the_reference_bins(reference: Reference) -> None:
    window = _data(10_000, 1)
    summary = summarise(reference, window)
    x = summary.columns["x"]
    ref_x = reference.columns["x"]
    values = window.column("x").to_numpy()
    present = values[~np.isnan(values)]
    expected = np.bincount(np.searchsorted(ref_x.edges, present), minlength=ref_x.counts.size)  # type: ignore[union-attr]
    assert x.counts.tolist() == expected.tolist()
    assert x.nulls == int(np.isnan(values).sum())
    assert x.rows == 10_000
    assert x.lo == pytest.approx(present.min())
    assert x.hi == pytest.approx(present.max())


def test_categorical_counts_and_unlisted_values(reference: Reference) -> None:
    window = _data(10_000, 2)
    c = summarise(reference, window).columns["c"]
    column = window.column("c")
    assert c.nulls == column.null_count
    values = [v for v in column.to_pylist() if v is not None]
    listed = reference.columns["c"].categories  # type: ignore[union-attr]
    assert c.counts.tolist() == [values.count(v) for v in listed] + [sum(v not in listed for v in values)]
    assert set(c.unlisted) == {"new1", "new2"}
    assert sum(c.unlisted.values()) == c.counts[-1]


def test_summaries_of_two_halves_merge_into_the_summary_of_the_whole(reference: Reference) -> None:
    window = _data(20_000, 3)
    whole = summarise(reference, window)
    merged = summarise(reference, window.slice(0, 7_000)).merge(summarise(reference, window.slice(7_000)))
    assert merged.rows == whole.rows
    for name, col in whole.columns.items():
        other = merged.columns[name]
        assert other.counts.tolist() == col.counts.tolist(), name
        assert (other.nulls, other.unlisted) == (col.nulls, col.unlisted), name
        assert other.lo == col.lo or (np.isnan(other.lo) and np.isnan(col.lo))


def test_json_round_trip(reference: Reference) -> None:
    summary = summarise(reference, _data(1000, 4))
    text = json.dumps(summary.to_dict(), allow_nan=False)
    again = WindowSummary.from_dict(json.loads(text))
    assert json.dumps(again.to_dict(), allow_nan=False) == text
    with pytest.raises(InvalidArgument, match="unknown window summary format"):
        WindowSummary.from_dict({"format": "nope"})


def test_empty_all_null_and_missing_columns(reference: Reference) -> None:
    empty = summarise(reference, _data(0, 5))
    assert empty.rows == 0
    assert empty.columns["x"].rows == 0
    nulls = summarise(reference, {"x": np.full(4, np.nan), "c": pa.array([None] * 4, pa.null())})
    assert (nulls.columns["x"].nulls, nulls.columns["c"].nulls) == (4, 4)
    assert "i" not in nulls.columns
    assert json.dumps(nulls.to_dict(), allow_nan=False)


def test_windows_of_different_references_or_types_are_refused(reference: Reference) -> None:
    other = Reference.from_table({"x": np.arange(10.0)})
    with pytest.raises(InvalidArgument, match="against different references"):
        summarise(reference, _data(10, 6)).merge(summarise(other, {"x": np.arange(3.0)}))
    with pytest.raises(InvalidArgument, match="cast it to the reference's type"):
        summarise(reference, {"x": np.array(["1", "2"])})


def test_infinities_and_dictionary_columns_are_binned() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=2000)
    x[:10] = np.inf
    x[10:20] = -np.inf
    codes = pa.array(rng.choice(np.array(["p", "q", "r"]), 2000)).dictionary_encode()
    reference = Reference.from_table(pa.table({"x": x, "d": codes}))
    again = Reference.from_json(reference.to_json())
    assert again.columns["x"].hi == np.inf  # type: ignore[union-attr]
    summary = summarise(reference, pa.table({"x": x[::-1], "d": codes}))
    assert summary.columns["x"].counts.tolist() == reference.columns["x"].counts.tolist()
    assert summary.columns["d"].counts.tolist() == reference.columns["d"].counts.tolist()
    report = check_drift(reference, summary)
    assert report.drifted == []
    assert report.column("x").effects["wasserstein"] == 0.0
