"""Pack files: many objects in one blob, found through a sorted, checksummed index.

A store of millions of tiny files is slow on disk and on S3, so objects are appended to pack
blobs (`packs/<id>.pack`) and located through an index blob (`packs/<id>.idx`). The index is
written after its pack, so a pack's objects become visible only once both are complete.

Index format `TLPACKIX` version 1 (little endian):
    magic (8 bytes) | version u32 | count u64 | count entries | BLAKE3 of everything before (32)
    entry = key (32-byte BLAKE3 of the raw object) | offset u64 | stored size u32
            | raw size u32 | codec u8
Entries are sorted by key, so lookups are a binary search; the pack id is the BLAKE3 of the
entries, so packs are content-addressed like everything else.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3
import numpy as np

from threadline.errors import IntegrityError, StorageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from numpy.typing import NDArray

    from threadline.storage.backend import ObjectStore

MAGIC = b"TLPACKIX"
VERSION = 1
_HEADER = struct.Struct("<8sIQ")
KEY_SIZE = 32
ENTRY_DTYPE = np.dtype(
    [("key", "S32"), ("offset", "<u8"), ("stored", "<u4"), ("raw", "<u4"), ("codec", "u1")]
)
PACK_PREFIX = "packs/"
#: bytes of small objects gathered before one writev
WRITE_BUFFER = 4 << 20
IOV_MAX = 1024


def pack_key(pack_id: str) -> str:
    """Blob key of a pack's data."""
    return f"{PACK_PREFIX}{pack_id}.pack"


def index_key(pack_id: str) -> str:
    """Blob key of a pack's index."""
    return f"{PACK_PREFIX}{pack_id}.idx"


def full_key(key: bytes) -> bytes:
    """Restore trailing NUL bytes that numpy's fixed-width bytes type strips."""
    return key.ljust(KEY_SIZE, b"\0")


def encode_index(entries: NDArray[np.void]) -> tuple[str, bytes]:
    """Sort entries by key and return (pack id, index blob)."""
    ordered = np.sort(entries, order="key")
    body = ordered.tobytes()
    pack_id = blake3.blake3(body).hexdigest()
    head = _HEADER.pack(MAGIC, VERSION, len(ordered)) + body
    return pack_id, head + blake3.blake3(head).digest()


def decode_index(blob: bytes, name: str) -> NDArray[np.void]:
    """Parse and check an index blob; raise IntegrityError naming the pack if damaged."""
    if len(blob) < _HEADER.size + KEY_SIZE:
        raise IntegrityError(f"pack index {name} is truncated", key=name)
    magic, version, count = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise IntegrityError(f"{name} is not a pack index", key=name)
    if version != VERSION:
        raise IntegrityError(
            f"pack index {name} has format version {version}; upgrade threadline", key=name
        )
    end = _HEADER.size + count * ENTRY_DTYPE.itemsize
    if len(blob) != end + KEY_SIZE or blake3.blake3(blob[:end]).digest() != blob[end:]:
        raise IntegrityError(
            f"pack index {name} is damaged (checksum mismatch); "
            "run `threadline data verify` to see what it affects",
            key=name,
        )
    return np.frombuffer(blob, dtype=ENTRY_DTYPE, count=count, offset=_HEADER.size)


@dataclass(frozen=True)
class Location:
    """Where an object's stored bytes are."""

    pack: str
    offset: int
    stored: int
    raw: int
    codec: int


class _LoadedPack:
    __slots__ = ("entries", "keys", "name")

    def __init__(self, name: str, entries: NDArray[np.void]) -> None:
        self.name = name
        self.entries = entries
        self.keys = np.ascontiguousarray(entries["key"])


class PackSet:
    """The in-memory view of every pack index in a store; safe to query from many threads."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._packs: dict[str, _LoadedPack] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Load indexes added by other writers and forget packs that were removed."""
        names = {
            key[len(PACK_PREFIX) : -len(".idx")]
            for key in self.objects.keys(PACK_PREFIX)
            if key.endswith(".idx")
        }
        with self._lock:
            known = set(self._packs)
        new = sorted(names - known)
        loaded = {
            name: _LoadedPack(name, decode_index(blob, index_key(name)))
            for name, blob in zip(new, (b for _, b in self.objects.get_many(map(index_key, new))))
        }
        with self._lock:
            for gone in known - names:
                del self._packs[gone]
            self._packs.update(loaded)

    def add(self, name: str, entries: NDArray[np.void]) -> None:
        """Register a pack this process has just published."""
        with self._lock:
            self._packs[name] = _LoadedPack(name, np.sort(entries, order="key"))

    def names(self) -> list[str]:
        """Ids of the known packs."""
        with self._lock:
            return sorted(self._packs)

    def entries(self, name: str) -> NDArray[np.void]:
        """All index entries of one pack."""
        with self._lock:
            return self._packs[name].entries

    def _snapshot(self) -> list[_LoadedPack]:
        with self._lock:
            return list(self._packs.values())

    def contains(self, keys: Sequence[bytes]) -> NDArray[np.bool_]:
        """For each 32-byte key, whether some pack holds it."""
        found = np.zeros(len(keys), dtype=bool)
        if not keys:
            return found
        query = np.array(keys, dtype="S32")
        for pack in self._snapshot():
            todo = np.flatnonzero(~found)
            if not len(todo):
                break
            q = query[todo]
            pos = np.searchsorted(pack.keys, q)
            pos[pos >= len(pack.keys)] = 0
            hit = pack.keys[pos] == q if len(pack.keys) else np.zeros(len(q), dtype=bool)
            found[todo[hit]] = True
        return found

    def locate(self, keys: Sequence[bytes]) -> list[Location | None]:
        """Where each 32-byte key is stored, or None if no pack holds it."""
        out: list[Location | None] = [None] * len(keys)
        if not keys:
            return out
        query = np.array(keys, dtype="S32")
        missing = np.ones(len(keys), dtype=bool)
        for pack in self._snapshot():
            todo = np.flatnonzero(missing)
            if not len(todo) or not len(pack.keys):
                if not len(todo):
                    break
                continue
            q = query[todo]
            pos = np.searchsorted(pack.keys, q)
            pos[pos >= len(pack.keys)] = 0
            hit = pack.keys[pos] == q
            for i, p in zip(todo[hit].tolist(), pos[hit].tolist()):
                e = pack.entries[p]
                out[i] = Location(
                    pack.name, int(e["offset"]), int(e["stored"]), int(e["raw"]), int(e["codec"])
                )
            missing[todo[hit]] = False
        return out


class PackWriter:
    """Appends objects to a local temp pack, then publishes pack and index through the store.

    Nothing is visible to readers until `finish`; `abort` (or a crash, followed by the next
    open's temp cleanup) leaves no trace.
    """

    def __init__(self, objects: ObjectStore, packs: PackSet, max_bytes: int = 1 << 30) -> None:
        self.objects = objects
        self.packs = packs
        self.max_bytes = max_bytes
        self.published: list[str] = []
        self.written: set[bytes] = set()
        self._path: Path | None = None
        self._fd = -1
        self._size = 0
        self._entries: list[tuple[bytes, int, int, int, int]] = []
        self._buffer: list[bytes | memoryview] = []
        self._buffered = 0

    def _open(self) -> None:
        self._path = self.objects.temp_path(".pack")
        try:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(
                f"could not create {self._path}: {exc.strerror}", path=str(self._path)
            ) from exc
        self._size = 0
        self._entries = []

    def add(self, key: bytes, raw_size: int, codec: int, payload: bytes) -> None:
        """Append one object unless this writer already holds it."""
        if key in self.written:
            return
        if self._fd < 0:
            self._open()
        # Small objects are gathered and written with one writev: a tree of 20,000 small
        # files would otherwise cost 20,000 write calls on the committing thread.
        if payload:  # writev reports 0 bytes for an empty buffer: never queue one
            self._buffer.append(payload)
            self._buffered += len(payload)
        if self._buffered >= WRITE_BUFFER:
            self._flush()
        self._entries.append((key, self._size, len(payload), raw_size, codec))
        self._size += len(payload)
        self.written.add(key)
        if self._size >= self.max_bytes:
            self._publish()

    def _flush(self) -> None:
        buffers, start = self._buffer, 0
        try:
            while start < len(buffers):
                done = os.writev(self._fd, buffers[start : start + IOV_MAX])
                while done:  # skip what was written; a partly written buffer keeps its tail
                    head = buffers[start]
                    if done >= len(head):
                        done -= len(head)
                        start += 1
                    else:
                        buffers[start] = memoryview(head)[done:]
                        done = 0
        except OSError as exc:
            raise StorageError(
                f"could not write {self._path}: {exc.strerror}; free some disk space and retry",
                path=str(self._path),
            ) from exc
        self._buffer = []
        self._buffered = 0

    def _publish(self) -> None:
        if self._fd < 0 or self._path is None:
            return
        self._flush()
        entries = np.array(self._entries, dtype=ENTRY_DTYPE)
        pack_id, index_blob = encode_index(entries)
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"could not sync {self._path}: {exc.strerror}", path=str(self._path)) from exc
        finally:
            os.close(self._fd)
            self._fd = -1
        # Order matters: the pack is durable before the index that makes it visible.
        self.objects.put_file(pack_key(pack_id), self._path)
        self._path = None
        self.objects.put_many([(index_key(pack_id), index_blob)])
        self.packs.add(pack_id, entries)
        self.published.append(pack_id)

    def finish(self) -> list[str]:
        """Publish what was written; return the ids of the packs published by this writer."""
        self._publish()
        return self.published

    def abort(self) -> None:
        """Drop the unpublished pack."""
        self._buffer, self._buffered = [], 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


def coalesce(
    locations: Iterable[tuple[int, Location]], max_bytes: int = 16 << 20
) -> list[tuple[str, int, int, list[tuple[int, Location]]]]:
    """Group located objects into contiguous reads: (pack, offset, length, members)."""
    runs: list[tuple[str, int, int, list[tuple[int, Location]]]] = []
    ordered = sorted(locations, key=lambda item: (item[1].pack, item[1].offset))
    for item in ordered:
        loc = item[1]
        if runs:
            pack, start, length, members = runs[-1]
            if pack == loc.pack and start + length == loc.offset and length + loc.stored <= max_bytes:
                members.append(item)
                runs[-1] = (pack, start, length + loc.stored, members)
                continue
        runs.append((loc.pack, loc.offset, loc.stored, [item]))
    return runs
