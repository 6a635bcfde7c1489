"""The flavors by name, auto-detection, and saving/loading whole model folders.

Flavor modules are imported on first use (`(name, "module:Class")` pairs), so the registry
never imports a model library it does not need. Detection order matters: XGBoost and
LightGBM wrappers are also scikit-learn estimators, and a `TorchModel` carries scikit-learn's
tags, so they are tried first; `pickle` and `pyfunc` are never detected, only chosen by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry import examples, signature
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    hash_files,
    read_meta,
    verify_files,
    write_meta,
)

if TYPE_CHECKING:
    from pathlib import Path

FLAVORS: dict[str, str] = {
    "xgboost": "threadline.registry.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "threadline.registry.flavors.lightgbm:LightGBMFlavor",
    "onnx": "threadline.registry.flavors.onnx:OnnxFlavor",
    "torch": "threadline.registry.flavors.torch:TorchFlavor",
    "sklearn": "threadline.registry.flavors.sklearn:SklearnFlavor",
    "pyfunc": "threadline.registry.flavors.pyfunc:PyfuncFlavor",
    "pickle": "threadline.registry.flavors.pickle:PickleFlavor",
}
_loaded: dict[str, Flavor] = {}


def get_flavor(name: str) -> Flavor:
    """The flavor called `name`."""
    if name not in FLAVORS:
        raise InvalidArgument(f"unknown model flavor {name!r}; choose one of {', '.join(FLAVORS)}")
    if name not in _loaded:
        module, _, cls = FLAVORS[name].partition(":")
        flavor = getattr(importlib.import_module(module), cls)()
        assert isinstance(flavor, Flavor)
        _loaded[name] = flavor
    return _loaded[name]


def detect_flavor(model: Any) -> Flavor:
    """The first flavor that recognises `model`."""
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.detect(model):
            return flavor
    raise InvalidArgument(
        f"no model flavor recognises {type(model).__name__}; pass flavor='pyfunc' with its code, "
        "or flavor='pickle' if nothing else can store it"
    )


def save_folder(
    model: Any, folder: Path, *, flavor: str | None = None, example: Any = None, **options: Any
) -> ModelMeta:
    """Save a model into an empty folder as flavor files plus `threadline-model.json`.

    With an example input the folder also holds the example batch, and the description a
    signature inferred from the example and the model's output on it.
    """
    chosen = get_flavor(flavor) if flavor else detect_flavor(model)
    saved = chosen.save(model, folder, **({"example": example, **options}
                                          if chosen.name == "onnx" else options))
    names = list(saved.files)
    sig: dict[str, Any] = {}
    example_name = None
    if example is not None:
        example_name = examples.write_example(folder, example)
        names.append(example_name)
        output = model.predict(example) if hasattr(model, "predict") else None
        sig = signature.infer(example, output)
    return_meta = ModelMeta(
        flavor=chosen.name, format_id=saved.format_id or chosen.format_id(model),
        files=hash_files(folder, names), signature=sig, example=example_name,
        versions=chosen.versions(), options=saved.options,
    )
    write_meta(folder, return_meta)
    return return_meta


def load_folder(folder: Path, policy: LoadPolicy, *, flavor: str | None = None) -> Any:
    """Load the model in a folder after checking every file against its hash.

    Args:
        folder: a model folder (as written by `save_folder`).
        policy: what the caller trusts; `expected_hash` is the registry's record.
        flavor: the flavor the registry recorded; the folder must agree.
    """
    meta = read_meta(folder)
    if flavor is not None and meta.flavor != flavor:
        raise InvalidArgument(f"the model folder says flavor {meta.flavor!r}, the registry {flavor!r}")
    verify_files(folder, meta, policy.expected_hash)
    return get_flavor(meta.flavor).load(folder, meta, policy)
