"""Pack indexes: the encode/decode round trip, and every kind of damage detected."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from threadline.errors import IntegrityError
from threadline.storage.cas import hash_bytes
from threadline.storage.packs import (
    ENTRY_DTYPE,
    Location,
    coalesce,
    decode_index,
    encode_index,
    full_key,
)


def _entries(n: int) -> np.ndarray:
    rows = [(hash_bytes(str(i).encode()), i * 100, 100, 250, i % 2) for i in range(n)]
    return np.array(rows, dtype=ENTRY_DTYPE)


def test_encode_decode_round_trip_sorted_by_key() -> None:
    entries = _entries(50)
    pack_id, blob = encode_index(entries)
    decoded = decode_index(blob, "packs/x.idx")
    assert len(decoded) == 50
    assert list(decoded["key"]) == sorted(entries["key"])
    by_key = {full_key(e["key"]): (int(e["offset"]), int(e["codec"])) for e in entries}
    assert {full_key(e["key"]): (int(e["offset"]), int(e["codec"])) for e in decoded} == by_key
    assert len(pack_id) == 64


def test_pack_id_is_independent_of_entry_order() -> None:
    entries = _entries(20)
    assert encode_index(entries) == encode_index(entries[::-1].copy())
    assert encode_index(entries)[0] != encode_index(_entries(21))[0]


def test_empty_index_round_trips() -> None:
    _, blob = encode_index(_entries(0))
    assert len(decode_index(blob, "empty")) == 0


def test_key_with_trailing_nul_bytes_survives() -> None:
    key = b"\x07" * 30 + b"\0\0"
    entries = np.array([(key, 0, 1, 1, 0)], dtype=ENTRY_DTYPE)
    _, blob = encode_index(entries)
    assert full_key(decode_index(blob, "n")[0]["key"]) == key


@pytest.mark.parametrize("position", [20, 100, -5])
def test_flipped_byte_is_detected(position: int) -> None:
    _, blob = encode_index(_entries(10))
    damaged = bytearray(blob)
    damaged[position] ^= 0x01
    with pytest.raises(IntegrityError, match=r"pack index packs/p\.idx is damaged") as info:
        decode_index(bytes(damaged), "packs/p.idx")
    assert info.value.key == "packs/p.idx"


def test_truncated_index_is_detected() -> None:
    _, blob = encode_index(_entries(10))
    with pytest.raises(IntegrityError, match="is damaged"):
        decode_index(blob[:-1], "p")
    with pytest.raises(IntegrityError, match="pack index p is truncated"):
        decode_index(blob[:30], "p")


def test_wrong_magic_and_future_version_are_refused() -> None:
    _, blob = encode_index(_entries(3))
    with pytest.raises(IntegrityError, match="p is not a pack index"):
        decode_index(b"NOTAPACK" + blob[8:], "p")
    future = blob[:8] + struct.pack("<I", 2) + blob[12:]
    with pytest.raises(IntegrityError, match="format version 2; upgrade threadline"):
        decode_index(future, "p")


def test_coalesce_merges_adjacent_ranges_per_pack() -> None:
    locs = [
        (0, Location("a", 0, 10, 10, 0)),
        (1, Location("a", 10, 5, 5, 0)),
        (2, Location("a", 30, 5, 5, 0)),
        (3, Location("b", 15, 5, 5, 0)),
        (4, Location("a", 15, 15, 15, 0)),
    ]
    runs = [(p, o, n, [i for i, _ in m]) for p, o, n, m in coalesce(locs)]
    assert runs == [("a", 0, 35, [0, 1, 4, 2]), ("b", 15, 5, [3])]
    assert [(p, o, n) for p, o, n, _ in coalesce(locs, max_bytes=20)] == [
        ("a", 0, 15),
        ("a", 15, 20),
        ("b", 15, 5),
    ]
