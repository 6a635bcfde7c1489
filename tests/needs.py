"""What a test needs from this machine: a real service or an optional library.

Locally a missing one skips the test with the command that installs it. Under CI (`CI` set,
as `.ci/run` does) it fails instead: CI installs everything, so there a skip would hide a
check that never ran.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from types import ModuleType


def missing(what: str, install: str) -> NoReturn:
    """Skip (fail under CI) a test that cannot run here: `what` is absent, `install` gets it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; CI must provide it ({install})")
    pytest.skip(f"{what} is missing ({install})")


def module(name: str, install: str) -> ModuleType:
    """Import `name`, or skip (fail under CI) naming how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python module {name}", install)
