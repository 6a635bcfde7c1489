"""Threadline: versioned data, pipelines, tracking, registry, serving and monitoring, in one package.

The SDK is small and lazy: `import threadline as tl` imports nothing heavy; `tl.data` loads the
data layer on first use.

    import threadline as tl

    with tl.start_run("train", inputs=["churn-splits@main:train.parquet"]) as run:
        run.log_params({"C": 1.0})
        run.log_metric("auc", 0.91)
    model = tl.load_model("churn@production")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "autolog",
    "data",
    "evaluate",
    "init",
    "lineage",
    "load_model",
    "prep",
    "registry",
    "start_run",
    "tracking",
    "train",
]
_MODULES = ("data", "evaluate", "lineage", "prep", "registry", "tracking", "train")


def init(folder: str | None = None) -> str:
    """Create a Threadline home (`.threadline/`) in `folder` (default: the working folder)."""
    from pathlib import Path

    from threadline.config import init_home
    from threadline.data import connect

    settings = init_home(Path(folder) if folder else None)
    connect(settings).close()
    return str(settings.home)


def start_run(name: str | None = None, **options: Any) -> Any:
    """Start a tracked run (a context manager); see `threadline.tracking.start_run`."""
    from threadline.tracking import start_run as start

    return start(name, **options)


def autolog(**options: Any) -> None:
    """Log scikit-learn fits automatically; see `threadline.registry.autolog.autolog`."""
    from threadline.registry.autolog import autolog as enable

    enable(**options)


def load_model(uri: str, **options: Any) -> Any:
    """Load a registered model (`"churn@production"`, `"churn@3"`, `"churn"`) of this home.

    Loading is safe by default: see `threadline.registry.ModelRegistry.load_model` for the
    trusted-type, pickle and code opt-ins.
    """
    from threadline.registry import ModelRegistry

    return ModelRegistry.open().load_model(uri, **options)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"threadline.{name}")
    raise AttributeError(f"module 'threadline' has no attribute {name!r}")
