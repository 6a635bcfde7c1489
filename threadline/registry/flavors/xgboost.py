"""XGBoost boosters and their scikit-learn wrappers, in XGBoost's own UBJSON format.

The native format holds trees and parameters only, no code; the wrapper class is recorded by
name and rebuilt from a fixed list, so the description file cannot name an arbitrary class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    SavedFiles,
    python_version,
    require,
)
from threadline.tracking.source import dist_version, major_minor

if TYPE_CHECKING:
    from pathlib import Path

MODEL_FILE = "model.ubj"
#: the classes a saved model may be rebuilt as (the description names one of them)
WRAPPERS = ("Booster", "XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
            "XGBRFRegressor")


def _xgboost_version() -> str:
    # the CPU-only wheel is distributed as `xgboost-cpu`
    return dist_version("xgboost") or dist_version("xgboost-cpu")


class BoosterModel:
    """A bare `xgboost.Booster` with a `predict` that accepts arrays and data frames."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, data: Any) -> Any:
        """Predictions of the booster on `data`."""
        xgb = require("xgboost", "xgboost")
        return self.booster.predict(xgb.DMatrix(data))


class XGBoostFlavor(Flavor):
    """`xgboost.Booster` and `XGBModel` subclasses."""

    name = "xgboost"

    def detect(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "xgboost" and type(model).__name__ in WRAPPERS

    def format_id(self, model: Any) -> str:
        return f"xgboost-ubj+xgboost/{major_minor(_xgboost_version())}"

    def versions(self) -> dict[str, str]:
        return {"python": python_version(), "xgboost": _xgboost_version()}

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        if type(model).__name__ not in WRAPPERS:
            raise InvalidArgument(f"the xgboost flavor saves {', '.join(WRAPPERS)}, "
                                  f"not {type(model).__name__}")
        model.save_model(str(folder / MODEL_FILE))
        return SavedFiles([MODEL_FILE], {"class": type(model).__name__})

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        xgb = require("xgboost", "xgboost")
        cls_name = meta.options.get("class", "Booster")
        if cls_name not in WRAPPERS:
            raise InvalidArgument(f"unknown xgboost model class {cls_name!r} in the model description")
        if cls_name == "Booster":
            booster = xgb.Booster()
            booster.load_model(str(folder / MODEL_FILE))
            return BoosterModel(booster)
        model = getattr(xgb, cls_name)()
        model.load_model(str(folder / MODEL_FILE))
        return model
