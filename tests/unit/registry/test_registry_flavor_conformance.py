"""Every flavor passes the shared conformance suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.registry.flavors.conformance import FlavorCase, FlavorConformance

if TYPE_CHECKING:
    from pathlib import Path

FLAVORS = ["sklearn", "xgboost", "lightgbm", "onnx", "torch", "pyfunc", "pickle"]


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 3))
    return features, (features[:, 0] > 0).astype(int)


def _case(flavor: str, tmp_path: Path) -> FlavorCase:
    from sklearn.linear_model import LogisticRegression

    features, labels = _data()
    example = features[:5]
    if flavor == "xgboost":
        import xgboost

        model: Any = xgboost.XGBRegressor(n_estimators=4, max_depth=2).fit(features, labels)
    elif flavor == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMRegressor(n_estimators=4, min_child_samples=5, verbose=-1).fit(
            features, labels)
    elif flavor == "onnx":
        from threadline.registry.flavors.onnx import to_onnx

        fitted = LogisticRegression().fit(features, labels)
        return FlavorCase("onnx", to_onnx(fitted, example), example, fitted.predict(example))
    elif flavor == "torch":
        import torch

        from threadline.train import TorchModel

        # a trained TorchModel without the training: seeded initial weights, two classes
        model = TorchModel("threadline.train.torch_nets:mlp", {"features": 3, "classes": 2, "hidden": 4})
        torch.manual_seed(0)
        model = model.with_state({"model": model.build().state_dict(), "classes": [0, 1]})
    elif flavor == "pyfunc":
        code = tmp_path / "scale.py"
        code.write_text("def predict(data):\n    return [row[0] * 2 for row in data]\n")
        return FlavorCase("pyfunc", None, example, example[:, 0] * 2,
                          {"code": str(code), "entry": "predict"})
    else:
        model = LogisticRegression().fit(features, labels)
    return FlavorCase(flavor, model, example, model.predict(example))


@pytest.fixture(params=FLAVORS)
def flavor_case(request: pytest.FixtureRequest, tmp_path: Path) -> FlavorCase:
    return _case(str(request.param), tmp_path)


class TestEveryFlavor(FlavorConformance):
    pass


def test_the_suite_covers_every_flavor_the_registry_knows() -> None:
    from threadline.registry.flavors.catalog import FLAVORS as KNOWN

    # a flavor added to the catalog without a conformance case would go untested
    assert sorted(FLAVORS) == sorted(KNOWN)
