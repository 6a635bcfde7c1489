"""scikit-learn and skops, imported on first use with a clear message when the extra is missing.

Training needs them, `import threadline` must not: they are loaded here, by module name, so a
missing library says which extra installs it (and mypy sees `Any`, as they ship no types).
"""

from __future__ import annotations

import importlib
from typing import Any

from threadline.errors import InvalidArgument

__all__ = ["sk"]


def sk(module: str) -> Any:
    """Import `module` (e.g. "sklearn.base", "skops.io") or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = module.split(".")[0]
        raise InvalidArgument(f"training needs {name}: pip install 'threadline[sklearn]'") from exc
