"""LightGBM boosters and their scikit-learn wrappers, in LightGBM's plain-text model format.

The text format holds trees only. A wrapper comes back as `LightGBMModel`, which predicts
like the wrapper did: class labels (and `predict_proba`) for a classifier.
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

MODEL_FILE = "model.txt"


class LightGBMModel:
    """A loaded LightGBM booster; a classifier maps probabilities back to its labels."""

    def __init__(self, booster: Any, classes: list[Any] | None) -> None:
        self.booster = booster
        self.classes = classes

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities, one column per class (classifiers only)."""
        np = require("numpy", "lightgbm")
        raw = np.asarray(self.booster.predict(data))
        return np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, data: Any) -> Any:
        """Labels for a classifier, raw predictions otherwise."""
        if self.classes is None:
            return self.booster.predict(data)
        np = require("numpy", "lightgbm")
        return np.asarray(self.classes)[np.argmax(self.predict_proba(data), axis=1)]


class LightGBMFlavor(Flavor):
    """`lightgbm.Booster` and `LGBMModel` subclasses."""

    name = "lightgbm"

    def detect(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "lightgbm"

    def format_id(self, model: Any) -> str:
        return f"lightgbm-text+lightgbm/{major_minor(dist_version('lightgbm'))}"

    def versions(self) -> dict[str, str]:
        return {"python": python_version(), "lightgbm": dist_version("lightgbm")}

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        booster = getattr(model, "booster_", model)
        if not hasattr(booster, "save_model"):
            raise InvalidArgument(f"cannot save {type(model).__name__} as a LightGBM model; fit it first")
        booster.save_model(str(folder / MODEL_FILE))
        classes = getattr(model, "classes_", None)
        return SavedFiles([MODEL_FILE],
                          {"classes": classes.tolist() if classes is not None else None})

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        lgb = require("lightgbm", "lightgbm")
        booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        classes = meta.options.get("classes")
        return LightGBMModel(booster, list(classes) if isinstance(classes, list) else None)
