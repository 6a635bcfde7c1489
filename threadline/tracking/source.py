"""Where a run's code came from: git commit and uncommitted changes; the Python environment.

Both are computed once per process (per folder for git) and cached: a script that starts a
thousand runs pays for `git` and the package scan once. Subprocesses get argument lists, never
a shell.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3

_GIT_TIMEOUT = 10
#: untracked files are hashed by content up to this many bytes in all, then by name and size
#: only, so that a forgotten data folder does not make every run start slowly
_MAX_UNTRACKED_BYTES = 64 << 20


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=_GIT_TIMEOUT,
                              check=False)
    except (OSError, subprocess.SubprocessError):  # no git installed, or it hung
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=32)
def _code_version(root: Path) -> dict[str, Any]:
    head = _git(root, "rev-parse", "HEAD")
    top = _git(root, "rev-parse", "--show-toplevel")
    if head is None or top is None:
        return {"git_commit": None, "dirty": None, "diff_hash": None}
    # from the top of the work tree, so a run started in a sub-folder sees the whole change
    toplevel = Path(top.decode().strip())
    diff = _git(toplevel, "diff", "HEAD", "--binary") or b""
    untracked = (_git(toplevel, "ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0")
    hasher = blake3.blake3(diff)
    names = sorted(n for n in untracked if n)
    budget = _MAX_UNTRACKED_BYTES
    for name in names:
        path = toplevel / name.decode(errors="surrogateescape")
        hasher.update(b"\0untracked\0" + name + b"\0")
        try:
            size = path.stat().st_size
            if size <= budget:
                hasher.update(path.read_bytes())
                budget -= size
            else:
                hasher.update(b"size:%d" % size)
        except OSError:  # vanished or unreadable: its name still counts
            continue
    dirty = bool(diff) or bool(names)
    return {
        "git_commit": head.decode().strip(),
        "dirty": dirty,
        "diff_hash": hasher.hexdigest() if dirty else None,
    }


def code_version(path: str | Path = ".") -> dict[str, Any]:
    """The git state of the folder `path`: {"git_commit", "dirty", "diff_hash"}.

    `diff_hash` is a BLAKE3 hash of `git diff HEAD` plus the names and contents of untracked
    files, so two runs with the same commit and hash ran the same code. Outside a git
    repository all three are None.
    """
    return dict(_code_version(Path(path).resolve()))


@functools.lru_cache(maxsize=1)
def _environment() -> dict[str, Any]:
    packages = sorted(
        {f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in importlib.metadata.distributions()}
    )
    try:
        version = importlib.metadata.version("threadline")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages_hash": blake3.blake3("\n".join(packages).encode()).hexdigest(),
        "package_count": len(packages),
        "threadline": version,
    }


def environment() -> dict[str, Any]:
    """The interpreter and packages: Python version, platform, a hash of `name==version` of
    every installed distribution (sorted), and the threadline version."""
    return dict(_environment())


def dist_version(dist: str) -> str:
    """The installed version of a distribution, read without importing it ("" if absent)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def major_minor(version: str) -> str:
    """`1.9.1` -> `1.9` (format ids name the series that wrote a file)."""
    return ".".join(version.split(".")[:2])
