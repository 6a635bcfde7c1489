"""Training configs: estimators only from the allow-list, params checked, unknown keys refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sklearn.linear_model import LogisticRegression

from threadline.errors import InvalidArgument
from threadline.train.spec import estimator_from_name, estimator_name, read_config

if TYPE_CHECKING:
    from pathlib import Path


def test_a_config_builds_its_estimator(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("estimator: sklearn.linear_model.LogisticRegression\nparams: {C: 0.5}\n"
                    "data: ds@main:train.parquet\ntarget: label\nworkers: 2\n"
                    "search: {method: grid, space: {C: [0.1, 1.0]}}\n")
    config = read_config(path)
    model = config.build()
    assert isinstance(model, LogisticRegression)
    assert model.C == 0.5
    assert (config.strategy, config.executor, config.workers, config.seed) == ("auto", "local", 2, 0)
    assert config.search == {"method": "grid", "space": {"C": [0.1, 1.0]}}


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "sklearnx.Evil",
                                  "threadline.train.fit"])
def test_estimators_outside_the_allow_list_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"estimator '{name}' is not allowed: name a class under "
                                              r"sklearn\., xgboost\., lightgbm\."):
        estimator_from_name(name)


def test_bad_names_params_and_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        estimator_from_name("sklearn.linear_model.NoSuchModel")
    with pytest.raises(InvalidArgument, match="is not an estimator class"):
        estimator_from_name("sklearn.metrics.accuracy_score")
    with pytest.raises(InvalidArgument, match="bad params"):
        estimator_from_name("sklearn.linear_model.Ridge", {"gamma": 1})
    path = tmp_path / "t.yaml"
    path.write_text("estimator: sklearn.linear_model.Ridge\ndata: d@main:t.parquet\ntarget: y\nepoch: 3\n")
    with pytest.raises(InvalidArgument, match=r"unknown key.s. epoch"):
        read_config(path)
    path.write_text("estimator: sklearn.linear_model.Ridge\ntarget: y\n")
    with pytest.raises(InvalidArgument, match="'data' is required"):
        read_config(path)


def test_estimator_names_are_public_paths() -> None:
    assert estimator_name(LogisticRegression()) == "sklearn.linear_model.LogisticRegression"
