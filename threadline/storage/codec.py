"""Compression of stored chunks: zstd level 1 where it pays, raw bytes where it does not.

Level 1 was chosen by measurement on this project's reference machine (docs/benchmarks.md):
on CSV it compresses to ~35% at ~0.4 GB/s per core, while levels -1..-5 buy little speed for a
much worse ratio. A chunk whose compressed form is not at least 10% smaller is stored raw, so
incompressible data (already-compressed Parquet, images) costs no decompression on read.
"""

from __future__ import annotations

import threading

import zstandard

from threadline.errors import IntegrityError

RAW = 0
ZSTD = 1
LEVEL = 1
#: keep the compressed form only if it is at most this fraction of the raw size
KEEP_RATIO = 0.9

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes | memoryview) -> tuple[int, bytes]:
    """Return (codec, payload) for a chunk: zstd if it saves 10% or more, else raw."""
    if len(data) >= 64:
        packed = _compressor().compress(data)
        if len(packed) <= len(data) * KEEP_RATIO:
            return ZSTD, packed
    return RAW, bytes(data)


def decompress(codec: int, payload: bytes, raw_size: int) -> bytes:
    """Invert `compress`; raises IntegrityError for an unknown codec or a damaged frame."""
    if codec == RAW:
        return payload
    if codec == ZSTD:
        try:
            return _decompressor().decompress(payload, max_output_size=raw_size)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"damaged compressed chunk: {exc}") from exc
    raise IntegrityError(f"unknown codec id {codec}; upgrade threadline to read this store")
