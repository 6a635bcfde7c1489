"""`fit` end to end on the local executor: accuracy against single-process fits, tracking, seeds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from train_data import blobs, linear

from threadline.errors import InvalidArgument
from threadline.tracking import TrackingStore
from threadline.train import Progress, fit

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos


@pytest.mark.parametrize(("estimator", "tolerance"), [
    (LogisticRegression(max_iter=1000), 0.01),
    (RandomForestClassifier(n_estimators=20, random_state=0), 0.03),
    (GaussianNB(), 0.0),
])
def test_combined_classifier_is_as_accurate_as_a_single_fit(
    home: DataRepos, pool: LocalExecutor, estimator: Any, tolerance: float
) -> None:
    X, y = blobs(4000, features=6, classes=3, spread=2.5, seed=3)
    test_X, test_y = blobs(2000, features=6, classes=3, spread=2.5, seed=3)  # same centres, other rows
    result = fit(estimator, (X[:3000], y[:3000]), workers=2, executor=pool)
    single = type(estimator)(**estimator.get_params()).fit(X[:3000], y[:3000])
    assert result.strategy == "combine"
    assert result.model.score(test_X, test_y) >= single.score(test_X, test_y) - tolerance - 1e-12
    assert [s.rows for s in result.shards] == [1500, 1500]


def test_combined_regressor_and_kmeans(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = linear(3000, features=4)
    ridge = fit(Ridge(alpha=1.0), (X, y), workers=2, executor=pool).model
    assert ridge.score(X, y) > Ridge(alpha=1.0).fit(X, y).score(X, y) - 0.001
    points, _ = blobs(3000, features=2, classes=3, spread=0.3)
    km = fit(KMeans(n_clusters=3, n_init=3), (points, np.zeros(len(points))), workers=2, executor=pool)
    single = KMeans(n_clusters=3, n_init=3, random_state=0).fit(points)
    assert -km.model.score(points) <= 1.01 * -single.score(points)


def test_run_records_params_inputs_children_and_the_model(
    home: DataRepos, pool: LocalExecutor, commit_table: Callable[..., str]
) -> None:
    X, y = blobs(1200)
    ref = commit_table(X, y)
    events: list[Progress] = []
    result = fit(RandomForestClassifier(n_estimators=5), ref, "label", workers=2, executor=pool,
                 seed=7, progress=events.append)
    store = TrackingStore(home)
    run = store.get_run(result.run_id)
    assert store.get_experiment(run.info.experiment_id).name == "training"
    assert run.params["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert (run.params["strategy"], run.params["workers"], run.params["seed"]) == ("combine", "2", "7")
    assert run.params["estimator.n_estimators"] == "5"
    commit = home.resolve(ref).require_commit().id
    assert [(i["ref"], i["commit"]) for i in run.inputs] == [(ref, commit)]
    assert "train_score" in run.metrics
    assert "wall_seconds" in run.metrics
    children = [c for c in store.search_runs([run.info.experiment_id])[0] if c.info.parent_id == run.info.id]
    assert sorted(c.info.name for c in children) == ["shard 0", "shard 1"]
    assert sorted(c.metrics["rows"].value for c in children) == [600, 600]
    assert {c.info.id for c in children} == {s.run_id for s in result.shards}
    assert {a["path"] for a in store.list_artifacts(result.run_id, "model")} == {
        "model/model.skops", "model/threadline-model.json"}
    meta = json.loads(store.read_artifact(result.run_id, "model/threadline-model.json"))
    assert (meta["format"], meta["flavor"]) == ("threadline.model/1", "sklearn")
    assert len(result.model.estimators_) == 5
    assert [e.done for e in events if e.stage == "shards"] == [1, 2]


def test_same_seed_same_model_other_seed_other_model(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(1000)
    first = fit(RandomForestClassifier(n_estimators=6), (X, y), executor=pool, seed=1).model
    again = fit(RandomForestClassifier(n_estimators=6), (X, y), executor=pool, seed=1).model
    other = fit(RandomForestClassifier(n_estimators=6), (X, y), executor=pool, seed=2).model
    probe, _ = blobs(300, seed=9)
    np.testing.assert_array_equal(first.predict_proba(probe), again.predict_proba(probe))
    assert not np.array_equal(first.predict_proba(probe), other.predict_proba(probe))


def test_refusals_name_what_would_work(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(200)
    with pytest.raises(InvalidArgument, match="GradientBoostingClassifier has no combiner; use "
                                              "strategy='search' or strategy='single'"):
        fit(GradientBoostingClassifier(), (X, y), strategy="combine", executor=pool)
    with pytest.raises(InvalidArgument, match="RandomForestClassifier has no support for strategy 'sync'; "
                                              "use strategy='combine' or"):
        fit(RandomForestClassifier(), (X, y), strategy="sync", executor=pool)
    with pytest.raises(InvalidArgument, match="unknown strategy 'magic'"):
        fit(GaussianNB(), (X, y), strategy="magic", executor=pool)
    sorted_y = np.sort(y)  # unshuffled, a shard could miss a class; shuffled shards see them all
    assert fit(GaussianNB(), (X, sorted_y), workers=4, executor=pool).strategy == "combine"
    with pytest.raises(InvalidArgument, match="has no rows of class"):
        fit(GaussianNB(), (X[:5], np.array([0, 0, 0, 0, 1])), workers=3, executor=pool)


def test_single_strategy_for_estimators_without_a_combiner(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(300)
    result = fit(GradientBoostingClassifier(n_estimators=5), (X, y), executor=pool)
    assert result.strategy == "single"
    assert result.metrics["train_score"] > 0.9
