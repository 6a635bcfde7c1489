"""Parallel search: the known-best params win, trials are child runs, halving, Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeClassifier
from train_data import blobs, linear

from threadline.errors import InvalidArgument
from threadline.tracking import TrackingStore
from threadline.train import Progress, fit

if TYPE_CHECKING:
    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos
    from threadline.tracking import Run


def _children(store: TrackingStore, run_id: str) -> list[Run]:
    run = store.get_run(run_id)
    return [r for r in store.search_runs([run.info.experiment_id])[0] if r.info.parent_id == run_id]


def test_grid_search_picks_the_known_best_params_and_records_child_runs(
    home: DataRepos, pool: LocalExecutor
) -> None:
    X, y = linear(1500, features=5)
    events: list[Progress] = []
    result = fit(Ridge(), (X, y), search={"method": "grid", "space": {"alpha": [1e5, 1e-3, 1e3]}},
                 executor=pool, progress=events.append)
    assert result.strategy == "search"
    assert result.best_params == {"alpha": 1e-3}  # heavy shrinkage only hurts a noise-free linear fit
    assert result.metrics["valid_r2"] > 0.99
    assert result.model.alpha == 1e-3
    assert result.model.n_features_in_ == 5
    store = TrackingStore(home)
    children = _children(store, result.run_id)
    assert sorted(c.params["alpha"] for c in children) == ["0.001", "1000.0", "100000.0"]
    assert all("valid_r2" in c.metrics for c in children)
    assert store.get_run(result.run_id).params["best.alpha"] == "0.001"
    assert events[-1].stage == "trials"
    assert events[-1].detail["best"] == pytest.approx(result.metrics["valid_r2"])


def test_random_search_with_successive_halving(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(2000, features=4, classes=3, spread=3.0, seed=2)
    search = {"method": "random", "trials": 8, "halving": True,
              "space": {"max_depth": {"low": 1, "high": 8}, "criterion": ["gini", "entropy"]}}
    result = fit(DecisionTreeClassifier(), (X, y), search=search, executor=pool, seed=4)
    children = _children(TrackingStore(home), result.run_id)
    assert len(children) == 8
    rungs = sorted(len(TrackingStore(home).metric_history(c.info.id, "valid_accuracy"))
                   for c in children)
    assert rungs == [1, 1, 1, 1, 2, 2, 3, 3]  # 8 -> 4 -> 2 survivors
    assert result.best_params["max_depth"] >= 2
    again = fit(DecisionTreeClassifier(), (X, y), search=search, executor=pool, seed=4)
    assert again.best_params == result.best_params


def test_bayesian_search_with_optuna(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = linear(800, features=3)
    space = {"alpha": {"low": 1e-4, "high": 1e4, "log": True}}
    result = fit(Ridge(), (X, y), executor=pool, seed=1,
                 search={"method": "bayes", "trials": 6, "space": space})
    assert result.metrics["trials"] == 6
    assert 1e-4 <= result.best_params["alpha"] <= 1e4
    assert result.metrics["valid_r2"] > 0.9


def test_bad_search_options_are_refused(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = linear(100)
    with pytest.raises(InvalidArgument, match="grid search takes lists of values"):
        fit(Ridge(), (X, y), executor=pool, search={"space": {"alpha": {"low": 1, "high": 2}}})
    with pytest.raises(InvalidArgument, match="unknown key"):
        fit(Ridge(), (X, y), executor=pool, search={"space": {"alpha": [1]}, "budget": 3})
    with pytest.raises(InvalidArgument, match="strategy 'search' needs search="):
        fit(Ridge(), (X, y), executor=pool, strategy="search")
