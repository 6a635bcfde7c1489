"""The ObjectStore interface: a batch-first, bytes-level blob store, and its scheme registry.

Backends know nothing of hashing, chunks or packs; the content-addressed layer
(`threadline.storage.cas`) builds those on top. A backend only has to store immutable blobs
under string keys, read byte ranges of them, list and delete them. Each implementation passes
the conformance suite in `threadline.storage.conformance`.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlparse

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from pathlib import Path

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")

#: scheme -> (dotted path of the class, the extra that provides it)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "file": ("threadline.storage.local.LocalObjectStore", None),
    "s3": ("threadline.storage.s3.S3ObjectStore", "s3"),
}


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative blob key, else raise InvalidArgument.

    Keys never contain `..`, empty segments, backslashes or a leading slash, so no backend can
    be made to write outside its root.
    """
    if len(key) > 512 or not _KEY_RE.match(key) or ".." in key.split("/"):
        raise InvalidArgument(f"invalid object key {key!r}: use letters, digits, '._-' and '/'")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    """A listed blob: its key, size in bytes and modification time (seconds since the epoch)."""

    key: str
    size: int
    mtime: float


class ObjectStore(ABC):
    """A store of immutable blobs under string keys.

    Writes are atomic per key (a reader sees the whole blob or none) and durable when they
    return. Writing an existing key leaves the existing blob in place: keys name content.

    Example of a subclass (an in-memory store, as used by tests)::

        class MemoryObjectStore(ObjectStore):
            scheme = "memory"

            def __init__(self) -> None:
                self.blobs: dict[str, bytes] = {}

            def put_many(self, items):
                for key, data in items:
                    self.blobs.setdefault(check_key(key), bytes(data))

            def temp_path(self, suffix=""):
                return Path(tempfile.mkdtemp()) / f"blob{suffix}"

            def put_file(self, key, path):
                self.blobs.setdefault(check_key(key), path.read_bytes())
                path.unlink()

            def get_many(self, keys):
                for key in keys:
                    if key not in self.blobs:
                        raise NotFound(f"object {key} is missing")
                    yield key, self.blobs[key]

            def read_ranges(self, key, ranges):
                blob = next(self.get_many([key]))[1]
                return [blob[o : o + n] for o, n in ranges]

            def exists_many(self, keys):
                return {k for k in keys if k in self.blobs}

            def list(self, prefix=""):
                for k, v in sorted(self.blobs.items()):
                    if k.startswith(prefix):
                        yield ObjectInfo(k, len(v), 0.0)

            def delete_many(self, keys):
                for k in keys:
                    self.blobs.pop(k, None)
    """

    scheme: ClassVar[str]

    @abstractmethod
    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store each (key, bytes) pair atomically and durably; existing keys are kept."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store a finished local file under `key`, consuming the file (moved or deleted)."""

    @abstractmethod
    def temp_path(self, suffix: str = "") -> Path:
        """A fresh local path to build a blob in before `put_file` (same filesystem if local).

        The name records this process, so leftovers of a killed writer are found and removed.
        """

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (key, bytes) for each key in order; raise NotFound naming a missing key."""

    @abstractmethod
    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return the bytes of each (offset, length) range of one blob."""

    @abstractmethod
    def exists_many(self, keys: Iterable[str]) -> set[str]:
        """Return the subset of `keys` that exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """List the blobs whose key starts with `prefix`, in key order."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys of `list(prefix)`; a backend where sizes cost extra work skips them."""
        return (info.key for info in self.list(prefix))

    @abstractmethod
    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete blobs; keys that do not exist are ignored."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release open handles."""


def open_object_store(url: str) -> ObjectStore:
    """Open the ObjectStore for a URL, importing its backend only when first used."""
    scheme = urlparse(url).scheme or "file"
    if scheme not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise InvalidArgument(f"unknown object store scheme {scheme!r} in {url!r}; use one of {known}")
    dotted, extra = BACKENDS[scheme]
    module_name, _, class_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'threadline[{extra}]'" if extra else "reinstall threadline"
        raise ImportError(f"{scheme} storage needs `{hint}`") from exc
    cls: type[ObjectStore] = getattr(module, class_name)
    return cls.from_url(url)  # type: ignore[attr-defined, no-any-return]
