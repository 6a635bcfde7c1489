"""LocalObjectStore: the shared conformance suites, plus temp-file recovery after a crash."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument
from threadline.storage.backend import open_object_store
from threadline.storage.conformance import ContentStoreConformance, ObjectStoreConformance
from threadline.storage.local import TMP_DIRNAME, LocalObjectStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "objects")
    yield store
    store.close()


class TestLocalObjectStore(ObjectStoreConformance):
    pass


class TestLocalContentStore(ContentStoreConformance):
    pass


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_")


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(proc.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def test_open_removes_temp_files_of_dead_writers_only(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    LocalObjectStore(root).close()
    tmp = root / TMP_DIRNAME
    dead = tmp / f"{_host()}-{_dead_pid()}-0123456789ab.pack.tmp"
    live = tmp / f"{_host()}-{os.getpid()}-ba9876543210.pack.tmp"
    other_host = tmp / f"elsewhere-{_dead_pid()}-00aa00aa00aa.tmp"
    for path in (dead, live, other_host):
        path.write_bytes(b"half-written pack")

    store = LocalObjectStore(root)
    store.close()

    assert not dead.exists()
    assert live.exists()
    assert other_host.exists()  # another machine's pid means nothing here


def test_very_old_temp_file_is_removed_whoever_wrote_it(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    LocalObjectStore(root).close()
    old = root / TMP_DIRNAME / "elsewhere-1-00aa00aa00aa.tmp"
    old.write_bytes(b"x")
    os.utime(old, (1_000_000, 1_000_000))
    LocalObjectStore(root).close()
    assert not old.exists()


def test_temp_path_is_inside_the_store_and_names_this_process(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    path = store.temp_path(".pack")
    assert path.parent == tmp_path / "objects" / TMP_DIRNAME
    assert path.name.startswith(f"{_host()}-{os.getpid()}-")
    assert path.name.endswith(".pack.tmp")
    store.close()


def test_put_many_leaves_no_temp_files(object_store: LocalObjectStore) -> None:
    object_store.put_many([("a/b", b"1"), ("c", b"2")])
    assert list(object_store.tmp.iterdir()) == []
    assert (object_store.root / "a" / "b").read_bytes() == b"1"


def test_open_object_store_file_url(tmp_path: Path) -> None:
    store = open_object_store((tmp_path / "o").as_uri())
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "o"
    store.close()


def test_open_object_store_refuses_unknown_scheme_and_hosts() -> None:
    with pytest.raises(InvalidArgument, match="unknown object store scheme 'gopher'"):
        open_object_store("gopher://x/y")
    with pytest.raises(InvalidArgument, match="names a host"):
        open_object_store("file://server/share")
