"""Threadline: versioned data, pipelines, tracking, registry, serving and monitoring, in one package.

The SDK is small and lazy: `import threadline as tl` imports nothing heavy; `tl.data` loads the
data layer on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "data", "init", "lineage", "prep"]


def init(folder: str | None = None) -> str:
    """Create a Threadline home (`.threadline/`) in `folder` (default: the working folder)."""
    from pathlib import Path

    from threadline.config import init_home
    from threadline.data import connect

    settings = init_home(Path(folder) if folder else None)
    connect(settings).db.close()
    return str(settings.home)


def __getattr__(name: str) -> Any:
    if name in ("data", "lineage", "prep"):
        return importlib.import_module(f"threadline.{name}")
    raise AttributeError(f"module 'threadline' has no attribute {name!r}")
