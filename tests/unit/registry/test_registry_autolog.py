"""sklearn autologging: outer fits log params, training metrics and a registrable model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

tracking = pytest.importorskip("threadline.tracking.active")

from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from threadline.registry import ModelRegistry, autolog  # noqa: E402
from threadline.tracking.store import TrackingStore  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos


@pytest.fixture
def autologged() -> Iterator[None]:
    """autolog() for one test, always disabled afterwards."""
    autolog.autolog()
    try:
        yield
    finally:
        autolog.disable()


def _runs(home: DataRepos) -> list[Any]:
    store = TrackingStore(home)
    runs, _token = store.search_runs([e.id for e in store.list_experiments()])
    return runs


@pytest.mark.usefixtures("autologged")
def test_a_fit_in_an_active_run_logs_params_metrics_and_a_model_to_register(
    home: DataRepos, xy: tuple[Any, Any]
) -> None:
    features, labels = xy
    with tracking.start_run("train") as run:
        model = LogisticRegression(C=0.5).fit(features, labels)
    store = TrackingStore(home)
    logged = store.get_run(run.id)
    assert logged.params["C"] == "0.5"
    assert logged.metrics["training_accuracy"].value == pytest.approx(
        float(np.mean(model.predict(features) == labels)))
    assert {"training_precision", "training_recall", "training_f1", "training_log_loss",
            "training_roc_auc"} <= set(logged.metrics)
    assert logged.tags["estimator_class"].endswith("LogisticRegression")
    registry = ModelRegistry(home)
    version = registry.register("churn", run_id=run.id)
    assert version.run_id == run.id
    assert version.metrics["training_accuracy"] == logged.metrics["training_accuracy"].value
    assert version.signature["inputs"]["shape"] == [-1, 3]
    np.testing.assert_array_equal(registry.load_model("churn").predict(features),
                                  model.predict(features))


@pytest.mark.usefixtures("autologged")
def test_nested_fits_log_once_at_the_outer_call(home: DataRepos, xy: tuple[Any, Any]) -> None:
    features, labels = xy
    with tracking.start_run("pipe") as run:
        make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels)
    assert TrackingStore(home).get_run(run.id).tags["estimator_class"].endswith("Pipeline")
    before = len(_runs(home))
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2)
    search.fit(features, labels)  # no active run: exactly one run of its own
    runs = _runs(home)
    assert len(runs) == before + 1
    newest = max(runs, key=lambda r: r.info.start_time)
    assert newest.tags["estimator_class"].endswith("GridSearchCV")
    assert newest.params["param_grid"] == "{'C': [0.1, 1.0]}"
    assert tracking.active_run() is None


@pytest.mark.usefixtures("autologged")
def test_regressors_log_regression_metrics(home: DataRepos, xy: tuple[Any, Any]) -> None:
    features, _ = xy
    target = features @ np.array([1.0, 2.0, 3.0])
    with tracking.start_run("reg") as run:
        LinearRegression().fit(features, target)
    metrics = TrackingStore(home).get_run(run.id).metrics
    assert metrics["training_r2"].value == pytest.approx(1.0)
    assert metrics["training_rmse"].value == pytest.approx(0.0, abs=1e-9)
    assert "training_mae" in metrics


def test_disable_restores_the_original_fit(home: DataRepos, xy: tuple[Any, Any]) -> None:
    original = LogisticRegression.fit
    autolog.autolog()
    assert getattr(LogisticRegression.fit, "__threadline_autolog__", False)
    autolog.autolog(disable=True)
    assert LogisticRegression.fit is original
    LogisticRegression().fit(*xy)
    assert _runs(home) == []
