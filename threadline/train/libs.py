"""scikit-learn, skops and torch, imported on first use with a clear message when the extra is missing.

Training needs them, `import threadline` must not: they are loaded here, by module name, so a
missing library says which extra installs it (and mypy sees `Any`, as they ship no types).
"""

from __future__ import annotations

import importlib
from typing import Any

from threadline.errors import InvalidArgument

__all__ = ["sk", "tch"]


def sk(module: str) -> Any:
    """Import `module` (e.g. "sklearn.base", "skops.io") or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = module.split(".")[0]
        raise InvalidArgument(f"training needs {name}: pip install 'threadline[sklearn]'") from exc


def tch(module: str = "torch") -> Any:
    """Import `module` (e.g. "torch", "torch.distributed") or say how to install torch."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidArgument("training a TorchModel needs torch: pip install 'threadline[torch]'") from exc
