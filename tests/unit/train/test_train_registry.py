"""The model folder a training run logs registers as is, with its data lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import LogisticRegression
from train_data import blobs

from threadline.registry import ModelRegistry
from threadline.train import fit

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos


def test_a_trained_model_registers_from_its_run(
    home: DataRepos, pool: LocalExecutor, commit_table: Callable[..., str]
) -> None:
    X, y = blobs(1000)
    ref = commit_table(X, y)
    result = fit(LogisticRegression(max_iter=500), ref, "label", executor=pool)
    registry = ModelRegistry(home)
    version = registry.register("churn", run_id=result.run_id, artifact_path="model")
    assert (version.version, version.flavor, version.run_id) == (1, "sklearn", result.run_id)
    assert [d["commit"] for d in version.data] == [home.resolve(ref).require_commit().id]
    loaded = registry.load_model("churn@1")
    np.testing.assert_array_equal(loaded.predict(X), result.model.predict(X))
    np.testing.assert_array_equal(loaded.coef_, result.model.coef_)
