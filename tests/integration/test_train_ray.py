"""The same training on the local executor and on a real Ray cluster gives the same model.

The cluster is the one `test_compute_ray` starts (a 2-CPU head node on loopback with a private
auth token in RAY_AUTH_MODE/RAY_AUTH_TOKEN, so Ray never writes ~/.ray/auth_token); its fixture
skips without Ray, and fails instead where the CI variable is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import needs
import numpy as np
import pytest

from integration.test_compute_ray import ray_address
from threadline.compute import LocalExecutor, RayExecutor
from threadline.errors import InvalidArgument
from threadline.train import fit

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

__all__ = ["ray_address"]  # the module-scoped cluster fixture, shared with test_compute_ray


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, 5))
    y = rng.integers(3, size=rows)
    return centres[y] + rng.normal(size=(rows, 5)), y


def test_local_and_ray_train_identical_models(home: DataRepos, ray_address: str) -> None:
    needs.module("sklearn", "pip install 'threadline[sklearn]'")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import SGDClassifier

    X, y = _data(2000, seed=1)
    jobs = [(RandomForestClassifier(n_estimators=8), {}),
            (SGDClassifier(tol=None), {"strategy": "sync", "epochs": 3})]
    with LocalExecutor(workers=2) as local:
        expected = [fit(est, (X, y), executor=local, seed=11, **kw) for est, kw in jobs]
    with RayExecutor(address=ray_address, workers=2) as ray:
        got = [fit(est, (X, y), executor=ray, seed=11, **kw) for est, kw in jobs]
    np.testing.assert_array_equal(got[0].model.predict_proba(X), expected[0].model.predict_proba(X))
    np.testing.assert_array_equal(got[1].model.coef_, expected[1].model.coef_)
    np.testing.assert_array_equal(got[1].model.intercept_, expected[1].model.intercept_)
    assert [r.strategy for r in got] == ["combine", "sync"]


def test_fit_opens_a_ray_executor_by_name(home: DataRepos, ray_address: str) -> None:
    from sklearn.naive_bayes import GaussianNB

    X, y = _data(600, seed=2)
    result = fit(GaussianNB(), (X, y), executor="ray", address=ray_address, workers=2)
    local = fit(GaussianNB(), (X, y), workers=2)
    np.testing.assert_array_equal(result.model.theta_, local.model.theta_)


def test_training_refuses_a_cluster_of_several_machines(home: DataRepos, ray_address: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.naive_bayes import GaussianNB

    X, y = _data(200, seed=4)
    with RayExecutor(address=ray_address, workers=2) as ray:
        assert ray.machine_count() == 1  # the loopback cluster of this test
        # a second machine cannot be had here
        monkeypatch.setattr(RayExecutor, "machine_count", lambda _self: 2)
        with pytest.raises(InvalidArgument, match="nodes on 2 machines"):
            fit(GaussianNB(), (X, y), executor=ray)


def test_ddp_trains_the_same_weights_on_local_and_ray(home: DataRepos, ray_address: str) -> None:
    torch = needs.module("torch", "pip install 'threadline[torch]'")
    from threadline.train import TorchModel

    X, y = _data(1200, seed=3)
    model = TorchModel("threadline.train.torch_nets:mlp", params={"features": 5, "classes": 3, "hidden": 16},
                       lr=0.05, momentum=0.9, batch_size=64)
    with LocalExecutor(workers=2) as local:
        expected = fit(model, (X, y), executor=local, epochs=2, seed=11).model
    with RayExecutor(address=ray_address, workers=2) as ray:
        got = fit(model, (X, y), executor=ray, epochs=2, seed=11)
    assert got.strategy == "ddp"
    assert got.model.state_.keys() == expected.state_.keys()
    for key, value in expected.state_.items():
        assert torch.equal(got.model.state_[key], value), key
