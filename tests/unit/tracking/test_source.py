"""code_version and environment: git commit, dirtiness and its hash, the package-set hash."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from threadline.tracking import source

if TYPE_CHECKING:
    from pathlib import Path


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def _version(root: Path) -> dict[str, object]:
    source._code_version.cache_clear()  # the cache is per process; these tests change the tree
    return source.code_version(root)


def test_code_version_outside_git(tmp_path: Path) -> None:
    assert _version(tmp_path) == {"git_commit": None, "dirty": None, "diff_hash": None}


def test_code_version_tracks_commit_and_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "--allow-empty",
         "-m", "empty")
    (tmp_path / "train.py").write_text("print(1)\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "c")
    head = _git(tmp_path, "rev-parse", "HEAD").strip()
    clean = _version(tmp_path)
    assert clean == {"git_commit": head, "dirty": False, "diff_hash": None}

    (tmp_path / "train.py").write_text("print(2)\n")
    edited = _version(tmp_path)
    assert edited["git_commit"] == head
    assert edited["dirty"] is True
    assert isinstance(edited["diff_hash"], str)
    assert len(edited["diff_hash"]) == 64

    (tmp_path / "new.py").write_text("x = 1\n")
    with_untracked = _version(tmp_path)
    assert with_untracked["diff_hash"] != edited["diff_hash"]
    (tmp_path / "new.py").write_text("x = 2\n")
    assert _version(tmp_path)["diff_hash"] != with_untracked["diff_hash"]  # contents count
    (tmp_path / "new.py").write_text("x = 1\n")
    assert _version(tmp_path)["diff_hash"] == with_untracked["diff_hash"]  # and are deterministic


def test_code_version_is_cached_per_process(tmp_path: Path) -> None:
    first = _version(tmp_path)
    _git(tmp_path, "init", "-q")
    assert source.code_version(tmp_path) == first  # cached: git is not asked again


def test_environment() -> None:
    env = source.environment()
    assert env["python"].count(".") == 2
    assert len(env["packages_hash"]) == 64
    assert env["package_count"] > 10
    assert env["threadline"] != ""
    assert source.environment() == env


def test_code_version_sees_the_whole_work_tree_from_a_sub_folder(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("a\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "c")
    assert _version(tmp_path / "sub")["dirty"] is False
    (tmp_path / "top.py").write_text("untracked, outside the sub-folder\n")
    from_sub = _version(tmp_path / "sub")
    assert from_sub["dirty"] is True
    assert from_sub == _version(tmp_path)
