"""Out of space and I/O errors: the operation fails with a typed error naming the path, the
repository stays consistent, and a retry after the fault is gone succeeds (RELIABILITY.md).

Disk-full is real: the home lives on a tmpfs mounted with a tiny size limit. An I/O error in the
middle of a commit cannot be produced on demand, so it comes from a faulty ObjectStore wrapper
that runs the same conformance suite as the real backend.
"""

from __future__ import annotations

import errno
import os
import subprocess
from typing import TYPE_CHECKING

import needs
import pytest

from threadline.config import init_home, settings_for
from threadline.data.repos import DataRepos
from threadline.data.verify import verify
from threadline.errors import StorageError
from threadline.meta.db import Database
from threadline.storage.backend import ObjectStore
from threadline.storage.cas import ContentStore
from threadline.storage.conformance import ObjectStoreConformance
from threadline.storage.local import LocalObjectStore, storage_error
from threadline.storage.locks import StoreLock

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from pathlib import Path

    from threadline.storage.backend import ObjectInfo


class FaultyObjectStore(ObjectStore):
    """Delegates to a real store; after `fail_after` writes every write fails with `error`."""

    scheme = "faulty"

    def __init__(self, inner: LocalObjectStore, fail_after: int | None = None,
                 error: int = errno.EIO) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.error = error
        self.writes = 0

    def _write(self, key: str) -> None:
        self.writes += 1
        if self.fail_after is not None and self.writes > self.fail_after:
            raise storage_error(OSError(self.error, os.strerror(self.error)), key, "write")

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        for key, data in items:
            self._write(key)
            self.inner.put_many([(key, data)])

    def put_file(self, key: str, path: Path) -> None:
        self._write(key)
        self.inner.put_file(key, path)

    def temp_path(self, suffix: str = "") -> Path:
        return self.inner.temp_path(suffix)

    def get_many(self, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        return self.inner.get_many(keys)

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return self.inner.read_ranges(key, ranges)

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        return self.inner.exists_many(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete_many(self, keys: Iterable[str]) -> None:
        self.inner.delete_many(keys)


class TestFaultyStoreConformance(ObjectStoreConformance):
    """The wrapper, with no fault armed, behaves exactly like a real backend."""

    @pytest.fixture
    def object_store(self, tmp_path: Path) -> FaultyObjectStore:
        return FaultyObjectStore(LocalObjectStore(tmp_path / "objects"))


def _repos_over(home: Path, objects: ObjectStore) -> DataRepos:
    settings = settings_for(home)
    return DataRepos(Database(settings.database_url), ContentStore(objects),
                     StoreLock(settings.lock_dir / "store.lock"),
                     settings.cache_dir / "stat-cache.sqlite", "tester")


def test_io_error_mid_commit_leaves_the_branch_and_store_intact(tmp_path: Path) -> None:
    settings = init_home(tmp_path)
    faulty = FaultyObjectStore(LocalObjectStore(settings.home / "objects"))
    repos = _repos_over(settings.home, faulty)
    repos.create("r")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_bytes(b"x,y\n" + b"1,2\n" * 1000)
    first = repos.commit("r", [src], "first").commit
    (src / "b.bin").write_bytes(os.urandom(300_000))

    faulty.fail_after = faulty.writes  # the very next write (the new pack) fails
    with pytest.raises(StorageError, match=r"could not write packs/.*Input/output error"):
        repos.commit("r", [src], "second")

    assert repos.resolve("r@main").require_commit().id == first.id
    assert len(repos.log("r")) == 1
    assert verify(repos).ok
    assert not list((settings.home / "objects" / ".tmp").iterdir()), "aborted pack left behind"

    faulty.fail_after = None  # the fault is gone: a retry succeeds
    second = repos.commit("r", [src], "second").commit
    assert second.parents == [first.id]
    assert {e.path for e in repos.manifest(second)} == {"a.csv", "b.bin"}
    assert verify(repos).ok


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: writes beyond that fail with a real ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # CI runs as root: there the real disk-full test must run
        needs.missing(f"a tmpfs for the disk-full test ({done.stderr.strip()})", "run as root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_cleanly_and_a_retry_after_freeing_space_succeeds(
    tiny_disk: Path, tmp_path: Path
) -> None:
    settings = init_home(tiny_disk)
    repos = _repos_over(settings.home, LocalObjectStore(settings.home / "objects"))
    repos.create("r")
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"hello\n")
    first = repos.commit("r", [src], "small").commit
    (src / "big.bin").write_bytes(os.urandom(6 << 20))  # incompressible, larger than the disk

    with pytest.raises(StorageError, match=r"No space left on device; free some disk space"):
        repos.commit("r", [src], "too big")

    assert repos.resolve("r").require_commit().id == first.id
    assert verify(repos).ok
    assert not list((settings.home / "objects" / ".tmp").iterdir())

    subprocess.run(["mount", "-o", "remount,size=32m", str(tiny_disk)], check=True)
    second = repos.commit("r", [src], "after freeing space").commit
    assert second.parents == [first.id]
    assert verify(repos).ok
