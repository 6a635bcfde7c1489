"""The chunk codec: zstd where it pays, raw bytes where it does not, damage detected."""

from __future__ import annotations

import random

import pytest

from threadline.errors import IntegrityError
from threadline.storage import codec


def test_incompressible_data_is_stored_raw() -> None:
    data = random.Random(1).randbytes(100_000)
    codec_id, payload = codec.compress(data)
    assert codec_id == codec.RAW
    assert payload == data
    assert codec.decompress(codec_id, payload, len(data)) == data


def test_compressible_data_is_compressed_and_round_trips() -> None:
    data = b"id,value\n" + b"1,hello\n" * 10_000
    codec_id, payload = codec.compress(memoryview(data))
    assert codec_id == codec.ZSTD
    assert len(payload) < len(data) // 10
    assert codec.decompress(codec_id, payload, len(data)) == data


def test_small_chunks_are_stored_raw() -> None:
    assert codec.compress(b"a" * 63) == (codec.RAW, b"a" * 63)
    assert codec.compress(b"") == (codec.RAW, b"")


def test_barely_compressible_data_stays_raw() -> None:
    # about 5% saving: below the 10% threshold, so not worth a decompression on every read
    rng = random.Random(2)
    data = bytes(rng.randrange(256) if i % 20 else 0 for i in range(50_000))
    codec_id, payload = codec.compress(data)
    assert codec_id == codec.RAW
    assert payload == data


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(IntegrityError, match="unknown codec id 7; upgrade threadline"):
        codec.decompress(7, b"x", 1)


def test_damaged_frame_raises_integrity_error() -> None:
    data = b"abc" * 1000
    _, payload = codec.compress(data)
    with pytest.raises(IntegrityError, match="damaged compressed chunk"):
        codec.decompress(codec.ZSTD, payload[:-4], len(data))
    with pytest.raises(IntegrityError, match="damaged compressed chunk"):
        codec.decompress(codec.ZSTD, b"\x28\xb5\x2f\xfd" + b"\xff" * 20, len(data))
