"""Pipeline fixtures: `project`, a user's project folder (on sys.path) with a Threadline home."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
from pipeline_helpers import InlineExecutor, Project

from threadline.config import load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from threadline.data.repos import DataRepos


@pytest.fixture
def project(home: DataRepos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project folder on sys.path (bytecode off, so rewritten modules reload) and its home."""
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    yield Project(root, home, load_settings(), InlineExecutor())
    for name in set(sys.modules) - before:  # modules of this project must not leak into others
        module = sys.modules.get(name)
        if module is not None and str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]
