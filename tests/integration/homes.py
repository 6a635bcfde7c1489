"""Helpers for integration tests: a Threadline home on disk, source trees, the CLI."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from threadline.config import settings_for
from threadline.data.connect import connect

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos

#: every child process and CLI call must finish within this many seconds
CHILD_TIMEOUT = 120


def cli_executable() -> str:
    """The `threadline` console script of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("threadline")
    if beside.exists():
        return str(beside)
    found = shutil.which("threadline")
    assert found, "the threadline console script is not installed (pip install -e .)"
    return found


@dataclass
class Home:
    """A Threadline home under a test's tmp_path."""

    root: Path
    opened: list[DataRepos] = field(default_factory=list)
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The `.threadline` folder."""
        return self.root / ".threadline"

    @property
    def store_tmp(self) -> Path:
        """Where the local object store keeps writers' temp files."""
        return self.path / "objects" / ".tmp"

    @property
    def packs(self) -> Path:
        """The folder of pack and index files."""
        return self.path / "objects" / "packs"

    @property
    def env(self) -> dict[str, str]:
        """A child's environment: this home, the embedded engines, a fixed author."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_HOME=str(self.path),
            THREADLINE_AUTHOR="tester",
            COLUMNS="200",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def open(self) -> DataRepos:
        """A fresh DataRepos on this home (opening the store cleans dead writers' temp files)."""
        repos = connect(settings_for(self.path, env={}))
        self.opened.append(repos)
        return repos

    @contextlib.contextmanager
    def session(self) -> Iterator[DataRepos]:
        """A DataRepos on this home for the duration of a `with` block."""
        repos = connect(settings_for(self.path, env={}))
        try:
            yield repos
        finally:
            repos.close()

    def close(self) -> None:
        """Release every DataRepos opened through `open`; stop children a failed test left."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=CHILD_TIMEOUT)
        self.children.clear()
        for repos in self.opened:
            repos.close()
        self.opened.clear()

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run `threadline ARGS` against this home; never raises on a non-zero exit."""
        return subprocess.run(
            [cli_executable(), *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )

    def python(
        self, script: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start `python -c SCRIPT ARGS` against this home, with text pipes on every stream."""
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.children.append(proc)
        return proc


def write_tree(
    folder: Path, seed: int, *, big: int = 2_500_000, small: int = 4, base_seed: int | None = None
) -> dict[str, bytes]:
    """Write a source folder of a few MB from `seed`; return its files as {relative path: bytes}.

    One file is larger than the store's small-file threshold (streamed window by window), a
    few are small, one is a CSV whose rows are counted, one sits in a sub-folder. With
    `base_seed`, the large file is the base seed's with one 8 KiB stretch rewritten, so trees
    of one base share most of their chunks (commits de-duplicate against earlier packs).
    """
    rng = random.Random(seed)
    if base_seed is None:
        big_data = rng.randbytes(big)
    else:
        edited = bytearray(random.Random(base_seed).randbytes(big))
        at = rng.randrange(0, big - 8192)
        edited[at : at + 8192] = rng.randbytes(8192)
        big_data = bytes(edited)
    files: dict[str, bytes] = {
        "big.bin": big_data,
        "table.csv": b"id,value\n"
        + b"".join(f"{i},{rng.randint(0, 10**6)}\n".encode() for i in range(2000 + rng.randint(0, 500))),
        "nested/deeper/notes.txt": f"seed {seed}\n".encode() * 50,
    }
    for i in range(small):
        files[f"part-{i}.bin"] = rng.randbytes(rng.randint(50_000, 300_000))
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return files


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every regular file under `folder` as {relative POSIX path: bytes}."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
