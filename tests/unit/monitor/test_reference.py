"""Reference summaries: exact and from profiles, their size, JSON, and a model version's."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.monitor.reference import CategoricalReference, NumericReference, Reference
from threadline.monitor.version_reference import reference_for_version
from threadline.prep.profile import TableProfile
from threadline.registry import ModelRegistry

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.data.repos import DataRepos


def _table(n: int = 20_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    x[rng.random(n) < 0.05] = np.nan
    cats = rng.choice(np.array([f"cat{i}" for i in range(50)]), n, p=np.arange(50, 0, -1) / 1275)
    return pa.table({"x": x, "k": rng.integers(0, 5, n), "c": cats, "b": rng.random(n) < 0.3,
                     "when": pa.array(rng.integers(0, 10**9, n), pa.timestamp("s"))})


def test_numeric_columns_get_quantile_bins_and_exact_counts() -> None:
    ref = Reference.from_table(_table())
    x = ref.columns["x"]
    assert isinstance(x, NumericReference)
    assert x.edges.size == 63
    assert np.all(np.diff(x.edges) > 0)
    assert x.rows == 20_000
    assert x.nulls == pytest.approx(1000, abs=120)
    shares = x.counts / x.counts.sum()
    assert shares == pytest.approx(np.full(64, 1 / 64), abs=0.002)  # equal-mass bins
    assert x.scale == pytest.approx(2.0, rel=0.05)  # IQR / 1.349 of a normal with sd 2
    assert x.effective_rows == x.rows
    k = ref.columns["k"]
    assert isinstance(k, NumericReference)
    assert k.edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # a discrete column: one bin per value
    assert k.counts[-1] == 0
    assert set(ref.columns) == {"x", "k", "c", "b", "when"}


def test_categorical_columns_list_the_top_categories_and_an_other_bucket() -> None:
    ref = Reference.from_table(_table(), top=10)
    c = ref.columns["c"]
    assert isinstance(c, CategoricalReference)
    assert set(c.categories) <= {f"cat{i}" for i in range(15)}  # the frequent ones
    assert np.all(np.diff(c.counts[:-1]) <= 0)  # most frequent first
    assert len(c.categories) == 10
    assert c.counts.size == 11
    assert int(c.counts.sum()) == 20_000
    assert c.counts[-1] > 0
    b = ref.columns["b"]
    assert isinstance(b, CategoricalReference)
    assert set(b.categories) == {"true", "false"}


def test_pandas_frames_and_dicts_of_arrays_give_the_same_reference() -> None:
    table = _table(2000).select(["x", "c"])
    a = Reference.from_table(table)
    b = Reference.from_table(table.to_pandas())
    arrays = {"x": table.column("x").to_numpy(), "c": np.array(table.column("c").to_pylist())}
    c = Reference.from_table(arrays)
    assert a.to_json() == b.to_json() == c.to_json()


def test_json_round_trip_and_size_per_column() -> None:
    ref = Reference.from_table(_table())
    text = ref.to_json()
    again = Reference.from_json(text)
    assert again.to_json() == text
    assert again.fingerprint() == ref.fingerprint()
    for name, col in ref.columns.items():
        size = len(json.dumps(col.to_dict()))
        assert size <= 3072, f"{name}: {size} bytes"
    numeric = len(json.dumps(ref.columns["x"].to_dict()))
    assert 1000 < numeric <= 2048  # ~1.2 KiB: 63 cut points and 64 counts


def test_a_column_without_values_gives_an_empty_binning() -> None:
    ref = Reference.from_table({"x": np.full(10, np.nan)})
    x = ref.columns["x"]
    assert isinstance(x, NumericReference)
    assert x.edges.size == 0
    assert x.nulls == 10
    assert Reference.from_json(ref.to_json()).columns["x"].rows == 10


def test_reference_from_a_profile_is_close_to_the_exact_one() -> None:
    table = _table(50_000, seed=3)
    exact = Reference.from_table(table)
    profile = TableProfile.from_batches(table.to_batches(max_chunksize=8192)).to_dict()
    sketched = Reference.from_profile(profile)
    assert sketched.source == "profile"
    assert sketched.rows == 50_000
    x_exact, x_sketch = exact.columns["x"], sketched.columns["x"]
    assert isinstance(x_exact, NumericReference)
    assert isinstance(x_sketch, NumericReference)
    assert x_sketch.nulls == x_exact.nulls
    assert x_sketch.scale == pytest.approx(x_exact.scale, rel=0.03)
    # the sketch's bin shares, tested against the exact data binned on the sketch's cut points
    values = table.column("x").to_numpy()
    values = values[~np.isnan(values)]
    true = np.bincount(np.searchsorted(x_sketch.edges, values), minlength=x_sketch.counts.size)
    assert x_sketch.counts / x_sketch.counts.sum() == pytest.approx(true / true.sum(), abs=0.005)
    assert 5_000 <= x_sketch.effective_rows <= x_sketch.rows
    k = sketched.columns["k"]
    assert isinstance(k, NumericReference)
    assert k.counts[:5].tolist() == pytest.approx(exact.columns["k"].counts[:5].tolist(), rel=0.05)
    c_exact, c_sketch = exact.columns["c"], sketched.columns["c"]
    assert isinstance(c_sketch, CategoricalReference)
    assert isinstance(c_exact, CategoricalReference)
    assert c_sketch.categories == c_exact.categories  # 50 values: exact below 64 distinct
    assert c_sketch.counts.tolist() == c_exact.counts.tolist()
    assert c_sketch.effective_rows == c_sketch.rows


def test_bad_arguments_are_refused_with_the_fix() -> None:
    table = _table(100)
    with pytest.raises(InvalidArgument, match="bins=1 is out of range"):
        Reference.from_table(table, bins=1)
    with pytest.raises(InvalidArgument, match="column 'nope' is not in the data"):
        Reference.from_table(table, ["nope"])
    with pytest.raises(InvalidArgument, match="only numeric, temporal, string and boolean"):
        Reference.from_table(pa.table({"l": pa.array([[1], [2]])}), ["l"])
    with pytest.raises(InvalidArgument, match="not a data-preparation profile"):
        Reference.from_profile({"format": "x"})
    with pytest.raises(InvalidArgument, match="unknown reference format"):
        Reference.from_dict({"format": "threadline.reference/0"})
    with pytest.raises(InvalidArgument, match="cannot summarise a str"):
        Reference.from_table("x.csv")
    with pytest.raises(InvalidArgument, match="column 'z' is not in the profile"):
        Reference.from_profile(TableProfile.from_table(table).to_dict(), ["z"])


def test_a_model_versions_reference_comes_from_its_stored_profile_or_its_table(
    home: DataRepos, make_tree: Callable[..., Path]
) -> None:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    rows = "\n".join(f"{rng.normal():.5f},{['a', 'b', 'c'][i % 3]},{i % 2}" for i in range(3000))
    home.create("raw")
    home.commit("raw", [make_tree("src", {"t.csv": f"x,c,y\n{rows}\n".encode()})], "raw")
    registry = ModelRegistry(home)
    model = LogisticRegression().fit(rng.normal(size=(20, 1)), np.arange(20) % 2)
    version = registry.register("churn", model, data=["raw:t.csv"])
    ref = reference_for_version(registry, version)
    assert ref.source == "profile"
    assert ref.rows == 3000
    assert set(ref.columns) == {"x", "c", "y"}
    assert reference_for_version(registry, "churn@1", ["x"]).to_json() == Reference.from_profile(
        next(iter(version.profile.values())), ["x"]).to_json()
    # no stored profile: the table is streamed from its commit and profiled
    bare = dataclasses.replace(version, profile={})
    streamed = reference_for_version(registry, bare, ["x", "c"])
    assert streamed.rows == 3000
    assert set(streamed.columns) == {"x", "c"}
    with pytest.raises(InvalidArgument, match="records no training table"):
        reference_for_version(registry, dataclasses.replace(version, profile={}, data=[]))
    with pytest.raises(InvalidArgument, match="write it as 'name@3'"):
        reference_for_version(registry, "churn")


def test_pandas_is_optional_but_accepted() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, None]})
    assert Reference.from_table(frame).columns["x"].nulls == 1
