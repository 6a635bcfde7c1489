"""The local-folder ObjectStore: one file per key under a root folder.

Writes go to a temp file in `<root>/.tmp/`, are fsynced, renamed into place and the folder is
fsynced, so a blob is either absent or complete even if the process is killed. Temp files left
by a dead writer are removed the next time the store is opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import unquote, urlparse

from threadline.errors import InvalidArgument, NotFound, StorageError
from threadline.storage.backend import ObjectInfo, ObjectStore, check_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

TMP_DIRNAME = ".tmp"
#: a temp file whose writer cannot be identified is removed after this many seconds
STALE_TEMP_SECONDS = 24 * 3600


def storage_error(exc: OSError, path: Path | str, action: str) -> StorageError:
    """Wrap an OSError into a StorageError that names the path and suggests a fix."""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = "; free some disk space and retry"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "; check the folder's permissions"
    return StorageError(f"could not {action} {path}: {exc.strerror or exc}{hint}", path=str(path))


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TempFiles:
    """Names temp files after their writer (host, pid) so dead writers' leftovers can be found."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = socket.gethostname().replace("-", "_").replace(".", "_")

    def new_path(self, suffix: str = "") -> Path:
        """A fresh temp path owned by this process."""
        return self.folder / f"{self.host}-{os.getpid()}-{secrets.token_hex(6)}{suffix}.tmp"

    def clean_stale(self) -> list[Path]:
        """Remove temp files whose writer is dead (same host) or that are very old."""
        removed: list[Path] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return removed
        for entry in entries:
            host, _, rest = entry.name.partition("-")
            pid_text = rest.partition("-")[0]
            dead = host == self.host and pid_text.isdigit() and not pid_alive(int(pid_text))
            try:
                old = now - entry.stat().st_mtime > STALE_TEMP_SECONDS
            except FileNotFoundError:
                continue
            if dead or old:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        return removed


def _files_under(root: Path, prefix: str) -> list[tuple[str, str]]:
    """(key, path) of the blobs whose key starts with `prefix`, in key order: a walk of the
    folder the prefix names only, skipping hidden folders (the temp folder)."""
    found: list[tuple[str, str]] = []
    folders = prefix.rpartition("/")[0]
    if any(part.startswith(".") for part in folders.split("/") if part):
        return found  # hidden folders hold no blobs
    for folder, dirs, files in os.walk(os.path.join(root, folders) if folders else root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            key = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            if key.startswith(prefix):
                found.append((key, os.path.join(folder, name)))
    found.sort()
    return found


class LocalObjectStore(ObjectStore):
    """Blobs as files under a root folder.

    Args:
        root: the folder; created if missing.
    """

    scheme: ClassVar[str] = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / TMP_DIRNAME
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, self.tmp, "create") from exc
        self.temps = TempFiles(self.tmp)
        self.temps.clean_stale()
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> LocalObjectStore:
        """Open `file:///abs/path`."""
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URL {url!r} names a host; use file:///absolute/path")
        return cls(Path(unquote(parsed.path)))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def temp_path(self, suffix: str = "") -> Path:
        """A temp path on the store's filesystem, for building a blob before `put_file`."""
        return self.temps.new_path(suffix)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write each blob to a temp file, fsync, rename into place, fsync the folder."""
        folders: set[Path] = set()
        for key, data in items:
            final = self._path(key)
            if final.is_file():  # a folder is no blob: os.replace below fails loudly
                continue
            tmp = self.temps.new_path()
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise storage_error(exc, final, "write") from exc
            folders.add(final.parent)
        for folder in folders:
            fsync_dir(folder)

    def put_file(self, key: str, path: Path) -> None:
        """Move a finished (already fsynced) file into place under `key`."""
        final = self._path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_file():
                path.unlink()
                return
            os.replace(path, final)
            fsync_dir(final.parent)
        except OSError as exc:
            raise storage_error(exc, final, "store") from exc

    def _fd(self, key: str) -> int:
        fd = self._fds.get(key)
        if fd is not None:
            return fd
        with self._fd_lock:
            fd = self._fds.get(key)
            if fd is None:
                try:
                    fd = os.open(self._path(key), os.O_RDONLY)
                except FileNotFoundError as exc:
                    raise NotFound(f"object {key} is missing from {self.root}") from exc
                except OSError as exc:
                    raise storage_error(exc, self._path(key), "open") from exc
                self._fds[key] = fd
            return fd

    def get_many(self, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield whole blobs in the order asked."""
        for key in keys:
            try:
                yield key, self._path(key).read_bytes()
            except (FileNotFoundError, IsADirectoryError) as exc:
                raise NotFound(f"object {key} is missing from {self.root}") from exc
            except OSError as exc:
                raise storage_error(exc, self._path(key), "read") from exc

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Read byte ranges with pread on a cached descriptor (thread-safe, no seek state)."""
        fd = self._fd(key)
        out: list[bytes] = []
        for offset, length in ranges:
            try:
                data = os.pread(fd, length, offset)
            except OSError as exc:
                raise storage_error(exc, self._path(key), "read") from exc
            if len(data) != length:
                raise NotFound(
                    f"object {key} is truncated: wanted {length} bytes at {offset}, got {len(data)}"
                )
            out.append(data)
        return out

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        """Check each key with one stat."""
        return {key for key in keys if self._path(key).is_file()}

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk the folder `prefix` names (skipping the temp folder) and yield blobs under
        `prefix` in key order."""
        for key, path in _files_under(self.root, prefix):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            yield ObjectInfo(key, st.st_size, st.st_mtime)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys `list` yields, without a stat of each blob."""
        return (key for key, _path in _files_under(self.root, prefix))

    def delete_many(self, keys: Iterable[str]) -> None:
        """Unlink blobs (closing any cached descriptor first) and fsync their folders."""
        folders: set[Path] = set()
        for key in keys:
            with self._fd_lock:
                fd = self._fds.pop(key, None)
            if fd is not None:
                os.close(fd)
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise storage_error(exc, path, "delete") from exc
            folders.add(path.parent)
        for folder in folders:
            fsync_dir(folder)

    def close(self) -> None:
        """Close cached descriptors."""
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
