"""Code hashes: a step's hash follows the project code it calls, and nothing else."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from threadline.pipelines import codehash
from threadline.pipelines.codehash import command_hash, function_hash, project_root

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from pipeline_helpers import Project

STEPS = """
import json
from pkg import helpers
from pkg.other import shout
from threadline.pipelines import Output, step

LIMIT = {limit}

def local_helper(x):
    return x + {bump}

def unrelated():
    return {unrelated}

@step
def features(out=Output()):
    return helpers.double(local_helper(LIMIT)), shout("x"), json.dumps(1)
"""


def _steps(project: Project, *, limit: int = 3, bump: int = 1, unrelated: int = 0) -> str:
    mod = project.module("pkg.steps", STEPS.format(limit=limit, bump=bump, unrelated=unrelated))
    return function_hash(mod.features.fn)


def _base(project: Project) -> None:
    project.module("pkg.deep", "def twice(x):\n    return 2 * x\n")
    project.module("pkg.helpers", "from pkg import deep\ndef double(x):\n    return deep.twice(x)\n")
    project.module("pkg.other", "def shout(s):\n    return s.upper()\n")
    project.module("pkg.unused", "def nothing():\n    return None\n")


def test_the_hash_is_stable_and_rooted_in_the_project(project: Project) -> None:
    _base(project)
    assert _steps(project) == _steps(project)
    assert project_root("pkg.steps") == project.root
    assert project_root("json") is None
    assert project_root("sqlalchemy") is None


def test_changing_a_called_helper_in_another_module_changes_the_hash(project: Project) -> None:
    _base(project)
    before = _steps(project)
    project.module("pkg.helpers", "from pkg import deep\ndef double(x):\n    return deep.twice(x) + 1\n")
    assert _steps(project) != before


def test_a_change_two_imports_away_changes_the_hash(project: Project) -> None:
    _base(project)
    before = _steps(project)
    project.module("pkg.deep", "def twice(x):\n    return x + x\n")
    assert _steps(project) != before


def test_same_module_helpers_and_constants_count(project: Project) -> None:
    _base(project)
    before = _steps(project)
    assert _steps(project, bump=2) != before
    assert _steps(project, limit=4) != before


def test_unrelated_code_does_not_change_the_hash(project: Project) -> None:
    _base(project)
    before = _steps(project)
    project.module("pkg.unused", "def nothing():\n    return 42\n")
    assert _steps(project) == before
    assert _steps(project, unrelated=99) == before  # another function of the step's own module


def test_a_command_hash_covers_the_files_it_names(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text("print(1)\n")
    argv = ("python", "clean.py", "{inputs.raw}", "{output}", "missing.py")
    before = command_hash(argv, tmp_path)
    assert command_hash(argv, tmp_path) == before
    (tmp_path / "clean.py").write_text("print(2)\n")
    assert command_hash(argv, tmp_path) != before
    (tmp_path / "unrelated.py").write_text("x = 1\n")
    changed = command_hash(argv, tmp_path)
    assert command_hash(argv, tmp_path) == changed
    assert command_hash((*argv[:-1], "--flag"), tmp_path) != changed


def test_a_remembered_hash_follows_files_and_globals_changed_since(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _base(project)
    mod = project.module("pkg.steps", STEPS.format(limit=3, bump=1, unrelated=0))
    fn = mod.features.fn
    first = function_hash(fn)
    computed: list[object] = []
    real = codehash._function_hash
    monkeypatch.setattr(codehash, "_function_hash", lambda f, c: computed.append(f) or real(f, c))
    assert function_hash(fn) == first
    assert computed == []  # remembered: nothing changed

    mod.LIMIT = 4  # a constant it names, changed at run time
    assert function_hash(fn) != first
    mod.LIMIT = 3
    assert function_hash(fn) == first
    mod.local_helper = lambda x: x  # a function it calls, rebound
    assert function_hash(fn) != first
    mod.local_helper = mod.unrelated
    project.module("pkg.steps", STEPS.format(limit=3, bump=1, unrelated=0))  # back as it was
    fn = sys.modules["pkg.steps"].features.fn
    assert function_hash(fn) == first

    helpers = project.root / "pkg" / "helpers.py"  # a module it reaches, edited on disk only
    before = helpers.stat()
    helpers.write_text(helpers.read_text().replace("deep.twice(x)", "deep.twice(x) - 1"))
    if helpers.stat().st_mtime_ns == before.st_mtime_ns:
        os.utime(helpers, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    computed.clear()
    assert function_hash(fn) != first
    assert computed == [fn]


def test_the_remembered_hashes_are_bounded(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _base(project)
    monkeypatch.setattr(codehash, "_HASHES", {})
    monkeypatch.setattr(codehash, "_HASHES_MAX", 2)
    hashes = []
    for bump in range(3):  # each re-import makes a new function object
        fn = project.module("pkg.steps", STEPS.format(limit=3, bump=bump, unrelated=0)).features.fn
        hashes.append(function_hash(fn))
        assert len(codehash._HASHES) <= 2
    assert len(set(hashes)) == 3
    assert function_hash(fn) == hashes[-1]
