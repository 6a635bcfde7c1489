"""Shards: block-shuffled, complete and disjoint, written where they are cheap, orphans swept;
the pilot start of large logistic-regression shards."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from train_data import blobs

from threadline.errors import InvalidArgument
from threadline.train import combine as rules
from threadline.train import shards as shards_module
from threadline.train.shards import TrainData, distinct, load_shard, shard_data, spill

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos


def _table(rows: int) -> TrainData:
    X = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)  # row i holds 3i, 3i+1, 3i+2
    return TrainData(X, (np.arange(rows) % 4).astype(np.int64), ["a", "b", "c"], "label")


def test_shards_are_disjoint_complete_balanced_and_mixed_from_the_whole_table(tmp_path: Path) -> None:
    data = _table(50_000)
    with spill(tmp_path) as out:
        shards = shard_data(data, 3, seed=7, out=out, classifier=True)
        ids = [np.asarray(load_shard(s.path)[0][:, 0] // 3, dtype=np.int64) for s in shards]
        labels = [load_shard(s.path)[1] for s in shards]
    assert sorted(np.concatenate(ids).tolist()) == list(range(50_000))  # every row exactly once
    assert max(s.rows for s in shards) - min(s.rows for s in shards) <= 1024
    for rows, y in zip(ids, labels, strict=True):
        np.testing.assert_array_equal(y, rows % 4)  # labels travel with their rows
        assert rows.min() < 5_000
        assert rows.max() > 45_000


def test_the_same_seed_deals_the_same_shards_another_seed_others(tmp_path: Path) -> None:
    data = _table(20_000)

    def deal(seed: int) -> list[np.ndarray]:
        with spill(tmp_path) as out:
            return [np.array(load_shard(s.path)[0]) for s in shard_data(data, 2, seed, out, classifier=False)]

    first, again, other = deal(1), deal(1), deal(2)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_string_labels_and_a_shard_missing_a_class(tmp_path: Path) -> None:
    X = np.zeros((4000, 2))
    y = np.array(["yes"] * 3999 + ["rare"])
    with spill(tmp_path) as out, pytest.raises(InvalidArgument, match=r"has no rows of class\(es\) rare"):
        shard_data(TrainData(X, y, ["a", "b"], "label"), 2, 0, out, classifier=True)


def test_distinct_counts_small_integer_ranges_and_sorts_the_rest() -> None:
    np.testing.assert_array_equal(distinct(np.array([5, -3, 5, 9, -3])), [-3, 5, 9])
    np.testing.assert_array_equal(distinct(np.array([2**40, 1, 2**40])), [1, 2**40])
    np.testing.assert_array_equal(distinct(np.array(["b", "a", "b"])), ["a", "b"])
    assert distinct(np.array([3, 1], dtype=np.uint8)).dtype == np.uint8


def test_scratch_goes_to_shared_memory_when_it_has_room_and_orphans_are_swept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards_module, "_SHM", tmp_path)
    gib = 1 << 30
    monkeypatch.setattr(shards_module.shutil, "disk_usage", lambda _: (8 * gib, 2 * gib, 6 * gib))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    orphan = tmp_path / f"tl-train-{dead}-abc"
    orphan.mkdir()
    ours = tmp_path / f"tl-train-{os.getpid()}-keep"
    ours.mkdir()
    with spill(need_bytes=1) as out:
        assert out.root.parent == tmp_path
        assert out.root.name.startswith(f"tl-train-{os.getpid()}-")
    assert not orphan.exists()
    assert ours.exists()
    with spill(need_bytes=5 * gib) as out:  # it would leave less than a quarter free: the temp folder
        assert out.root.parent != tmp_path


def test_large_logistic_shards_start_from_a_pilot_and_keep_the_users_setting(
        home: DataRepos, pool: LocalExecutor) -> None:
    from threadline.train import fit

    X, y = blobs(2 * rules.PILOT_MIN_ROWS + 1000, features=4, classes=3, spread=3.0)
    assert rules.wants_pilot(LogisticRegression(), rules.PILOT_MIN_ROWS)
    assert not rules.wants_pilot(LogisticRegression(solver="liblinear"), rules.PILOT_MIN_ROWS)
    assert not rules.wants_pilot(LogisticRegression(), rules.PILOT_MIN_ROWS - 1)
    single = LogisticRegression(max_iter=300).fit(X, y)
    result = fit(LogisticRegression(max_iter=300), (X, y), workers=2, executor=pool)
    assert result.model.get_params()["warm_start"] is False
    agreement = float(np.mean(result.model.predict(X[:20_000]) == single.predict(X[:20_000])))
    assert agreement > 0.99
    np.testing.assert_allclose(result.model.coef_, single.coef_, atol=0.05)


def test_a_pilot_that_misses_a_class_leaves_the_fit_cold() -> None:
    X = np.random.default_rng(0).normal(size=(200_000, 2))
    y = np.zeros(200_000, dtype=np.int64)
    y[-1] = 1  # one row of class 1: a 10% sample almost surely misses it
    model = LogisticRegression()
    rules._pilot(model, X, y, seed=0)
    assert model.get_params()["warm_start"] is False
    assert not hasattr(model, "coef_")
