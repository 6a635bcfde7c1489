"""The content-addressed store: objects named by their BLAKE3 hash, packed, verified on read.

Above an ObjectStore backend this layer adds what makes storage grow with the change: files are
cut into content-defined chunks (an edit in the middle of a file changes only the chunks around
it), each chunk is stored once under its hash, compressed where it pays, and grouped into packs.
A key is never overwritten, and every read re-hashes what it returns.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from threadline.errors import IntegrityError, NotFound
from threadline.storage import codec
from threadline.storage.packs import Location, PackSet, PackWriter, coalesce, full_key, pack_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from types import TracebackType

    from threadline.storage.backend import ObjectStore

_CHUNK_ENTRY = struct.Struct("<32sQ")
CHUNK_LIST_MAGIC = b"TLCHUNKS1\n"


def hash_bytes(data: bytes | memoryview) -> bytes:
    """The 32-byte BLAKE3 digest that names `data`."""
    return blake3.blake3(data).digest()


def parse_key(key: str) -> bytes:
    """Hex object key to its 32 bytes; InvalidArgument-free because keys come from manifests."""
    try:
        raw = bytes.fromhex(key)
    except ValueError as exc:
        raise IntegrityError(f"malformed object key {key!r}", key=key) from exc
    if len(raw) != 32:
        raise IntegrityError(f"malformed object key {key!r}", key=key)
    return raw


@dataclass(frozen=True)
class StoredFile:
    """A file's content in the store.

    Attributes:
        key: for a one-chunk file the hash of its bytes; otherwise the hash of its chunk list.
        size: length in bytes.
        chunks: number of chunks (1 for small files; 0 is never used, an empty file is 1 chunk).
        lines: number of lines in the file when it was asked for (row counts of CSV files).
    """

    key: str
    size: int
    chunks: int
    lines: int | None = None


def encode_chunk_list(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """Serialise (key, size) pairs into a chunk-list object."""
    return CHUNK_LIST_MAGIC + b"".join(_CHUNK_ENTRY.pack(k, n) for k, n in chunks)


def decode_chunk_list(blob: bytes, key: str) -> list[tuple[bytes, int]]:
    """Parse a chunk-list object."""
    body = memoryview(blob)[len(CHUNK_LIST_MAGIC) :]
    if not blob.startswith(CHUNK_LIST_MAGIC) or len(body) % _CHUNK_ENTRY.size:
        raise IntegrityError(f"object {key} is not a chunk list", key=key)
    return [(k, n) for k, n in _CHUNK_ENTRY.iter_unpack(body)]


class ContentStore:
    """Content-addressed objects over an ObjectStore.

    Args:
        objects: the backend blob store.
        workers: threads used to hash, compress and decompress (default: one per core).
    """

    def __init__(self, objects: ObjectStore, workers: int | None = None) -> None:
        self.objects = objects
        self.workers = workers or os.cpu_count() or 2
        self.packs = PackSet(objects)
        self.packs.refresh()

    def refresh(self) -> None:
        """See packs written by other processes since this store was opened."""
        self.packs.refresh()

    def writer(self, *, dry_run: bool = False) -> ContentWriter:
        """Start a batch of writes that become visible together when the writer finishes.

        A dry-run writer only computes keys (for `status`): nothing is compressed or written.
        """
        return ContentWriter(self, dry_run=dry_run)

    def has_many(self, keys: Iterable[str]) -> set[str]:
        """The subset of hex keys present in the store."""
        wanted = list(keys)
        found = self.packs.contains([parse_key(k) for k in wanted])
        return {k for k, hit in zip(wanted, found.tolist()) if hit}

    def locate(self, keys: Sequence[bytes]) -> list[Location]:
        """Locations of 32-byte keys; raise NotFound naming the first missing object."""
        locations = self.packs.locate(keys)
        if None in locations:  # another process may have published packs since we loaded
            self.packs.refresh()
            locations = self.packs.locate(keys)
        for key, loc in zip(keys, locations):
            if loc is None:
                raise NotFound(
                    f"object {key.hex()} is missing from the store; "
                    "run `threadline data verify` to list what it affects"
                )
        return locations  # type: ignore[return-value]

    def read_many(self, keys: Sequence[bytes]) -> list[bytes]:
        """Verified contents of 32-byte keys, in order, read with as few reads as possible.

        If a pack vanished under us (gc in another process rewrote it), the index is
        re-loaded and the read retried once before the object is reported missing.
        """
        try:
            return self._read(keys)
        except NotFound:
            self.packs.refresh()
            return self._read(keys)

    def _read(self, keys: Sequence[bytes]) -> list[bytes]:
        out: list[bytes | None] = [None] * len(keys)
        for pack, start, length, members in coalesce(enumerate(self.locate(keys))):
            (blob,) = self.objects.read_ranges(pack_key(pack), [(start, length)])
            view = memoryview(blob)
            for i, loc in members:
                rel = loc.offset - start
                try:
                    raw = codec.decompress(loc.codec, bytes(view[rel : rel + loc.stored]), loc.raw)
                except IntegrityError:  # a damaged frame: report it like a hash mismatch
                    raw = None
                if raw is None or len(raw) != loc.raw or hash_bytes(raw) != keys[i]:
                    raise IntegrityError(
                        f"object {keys[i].hex()} is corrupt (pack {pack}, offset {loc.offset}); "
                        "run `threadline data verify` to list every damaged object",
                        key=keys[i].hex(),
                    )
                out[i] = raw
        return out  # type: ignore[return-value]  # every index was filled above

    def get_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (key, bytes) in the order asked, each verified against its hash."""
        yield from zip(keys, self.read_many([parse_key(k) for k in keys]))

    def get(self, key: str) -> bytes:
        """One verified object."""
        return next(self.get_many([key]))[1]

    def chunk_list(self, stored: StoredFile) -> list[tuple[bytes, int]]:
        """The (key, size) chunks of a stored file."""
        if stored.chunks == 1:
            return [(parse_key(stored.key), stored.size)]
        return decode_chunk_list(self.get(stored.key), stored.key)

    def iter_file(self, stored: StoredFile) -> Iterator[bytes]:
        """Stream a stored file's chunks, verified, reading a few MiB at a time."""
        batch: list[bytes] = []
        budget = 0
        for key, size in self.chunk_list(stored):
            batch.append(key)
            budget += size
            if budget >= 8 << 20:
                yield from self.read_many(batch)
                batch, budget = [], 0
        if batch:
            yield from self.read_many(batch)

    def read_file(self, stored: StoredFile) -> bytes:
        """A whole stored file (for small files; stream large ones with `iter_file`)."""
        return b"".join(self.iter_file(stored))

    def object_sizes(self) -> dict[bytes, tuple[int, int]]:
        """Every stored object: key -> (raw size, stored size), de-duplicated across packs."""
        out: dict[bytes, tuple[int, int]] = {}
        for name in self.packs.names():
            entries = self.packs.entries(name)
            for key, raw, stored in zip(
                entries["key"].tolist(), entries["raw"].tolist(), entries["stored"].tolist()
            ):
                out.setdefault(full_key(key), (raw, stored))
        return out

    def close(self) -> None:
        """Release the backend's handles."""
        self.objects.close()


class ContentWriter:
    """A batch of new objects, published together by `finish` (or dropped by `abort`)."""

    def __init__(self, store: ContentStore, *, dry_run: bool = False) -> None:
        self.store = store
        self.dry_run = dry_run
        self.pack = PackWriter(store.objects, store.packs)

    def put_blob(self, data: bytes) -> str:
        """Store one whole object (a manifest, a chunk list) and return its hex key."""
        key = hash_bytes(data)
        if not self.dry_run and not self.store.packs.contains([key])[0]:
            codec_id, payload = codec.compress(data)
            self.pack.add(key, len(data), codec_id, payload)
        return key.hex()

    def finish(self) -> list[str]:
        """Make the written objects durable and visible; return the published pack ids."""
        return self.pack.finish()

    def abort(self) -> None:
        """Drop everything not yet published."""
        self.pack.abort()

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.finish()
        except BaseException:  # publishing failed (disk full, I/O error): leave no temp pack
            self.abort()
            raise
