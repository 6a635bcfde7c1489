"""Estimators named in configuration: an allow-list of import prefixes, and the YAML config.

Configuration never becomes arbitrary code: an estimator is named by its dotted class path
and only classes under `ALLOWED_PREFIXES` (or in `ALLOWED_NAMES`) are imported; params are
plain YAML/JSON values. A `TorchModel`'s params name its network factory as `module:function`:
the operator's own code, installed where the workers run, as a pipeline's module is::

    estimator: threadline.train.TorchModel
    params: {factory: "threadline.train.torch_nets:mlp", params: {features: 20, classes: 2},
             lr: 0.05, batch_size: 256}
    strategy: ddp
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadline.errors import InvalidArgument

__all__ = ["ALLOWED_NAMES", "ALLOWED_PREFIXES", "TrainConfig", "estimator_from_name", "estimator_name",
           "read_config"]

ALLOWED_PREFIXES = ("sklearn.", "xgboost.", "lightgbm.")
#: Threadline's own estimator-like classes, allowed by exact name (estimator_name's and the public one)
ALLOWED_NAMES = ("threadline.train.TorchModel", "threadline.train.torch_model.TorchModel")
_KEYS = {"estimator", "params", "data", "target", "features", "strategy", "workers", "executor",
         "epochs", "search", "seed", "experiment", "name"}


def estimator_name(estimator: Any) -> str:
    """The public dotted path of an estimator's class, e.g. `sklearn.linear_model.LogisticRegression`."""
    cls = type(estimator)
    module = cls.__module__
    parts = module.split(".")
    # the public module (sklearn.linear_model) rather than the private one (._logistic)
    public = ".".join(p for p in parts if not p.startswith("_"))
    try:
        if getattr(importlib.import_module(public), cls.__name__, None) is cls:
            module = public
    except ImportError:
        pass
    return f"{module}.{cls.__name__}"


def estimator_from_name(name: str, params: dict[str, Any] | None = None) -> Any:
    """Build an estimator from its dotted class path, if the path is allowed.

    Raises:
        InvalidArgument: the path is outside ALLOWED_PREFIXES, does not import, is not an
            estimator class, or the params are refused by the class.
    """
    own = name in ALLOWED_NAMES
    if not isinstance(name, str) or not (name.startswith(ALLOWED_PREFIXES) or own) or "." not in name:
        raise InvalidArgument(f"estimator {name!r} is not allowed: name a class under "
                              f"{', '.join(ALLOWED_PREFIXES)} (e.g. sklearn.linear_model.LogisticRegression),"
                              " or threadline.train.TorchModel")
    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(f"estimator {name!r} does not exist: {exc}") from exc
    if not isinstance(cls, type) or not (hasattr(cls, "fit") or own):
        raise InvalidArgument(f"{name!r} is not an estimator class (it has no fit method)")
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise InvalidArgument(f"{name}: bad params {params!r}: {exc}") from exc


def plain_params(estimator: Any) -> dict[str, Any]:
    """The estimator's own params that are plain JSON values (nested estimators are left out)."""
    out = {}
    for key, value in estimator.get_params(deep=False).items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


@dataclass
class TrainConfig:
    """A parsed `train.yaml`."""

    estimator: str
    data: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    features: list[str] | None = None
    strategy: str = "auto"
    workers: int | None = None
    executor: str = "local"
    epochs: int = 5
    search: dict[str, Any] | None = None
    seed: int = 0
    experiment: str = "training"
    name: str = ""

    def build(self) -> Any:
        """The configured estimator."""
        return estimator_from_name(self.estimator, self.params)


def read_config(path: str | Path) -> TrainConfig:
    """Parse and check a training config file (YAML, read with safe_load).

    Raises:
        InvalidArgument: unreadable YAML, unknown keys, or a missing estimator/data/target.
    """
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"cannot read training config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{path}: a training config is a mapping with estimator, data, target...")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidArgument(f"{path}: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(_KEYS))}")
    for key in ("estimator", "data", "target"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InvalidArgument(f"{path}: {key!r} is required (a string)")
    if not isinstance(raw.get("params") or {}, dict):
        raise InvalidArgument(f"{path}: 'params' must be a mapping")
    try:
        config = TrainConfig(**raw)
    except TypeError as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc
    config.params = dict(config.params or {})
    estimator_from_name(config.estimator, config.params)  # refuse a bad estimator before any work
    return config
