"""Manifests: canonical encoding, decoding by format id, damage reported."""

from __future__ import annotations

import json

import pytest

from threadline.data.manifest import FORMAT, FileEntry, Manifest
from threadline.errors import IntegrityError

KEY = "ab" * 32


def _entries() -> list[FileEntry]:
    return [
        FileEntry("z.csv", KEY, 10, 1, False, 3),
        FileEntry("a/b.bin", "cd" * 32, 2_000_000, 9, True, None),
        FileEntry("é.txt", "ef" * 32, 0, 1),
    ]


def test_encode_decode_round_trip() -> None:
    manifest = Manifest(_entries())
    decoded = Manifest.decode(manifest.encode(), "m")
    assert decoded == manifest
    assert list(decoded) == sorted(_entries(), key=lambda e: e.path)
    assert decoded.get("a/b.bin") == _entries()[1]


def test_encoding_is_canonical() -> None:
    forward = Manifest(_entries()).encode()
    assert Manifest(reversed(_entries())).encode() == forward
    assert b" " not in forward.replace(b"a/b.bin", b"")
    doc = json.loads(forward)
    assert list(doc) == ["files", "format"]
    assert doc["format"] == FORMAT
    assert [row[0] for row in doc["files"]] == ["a/b.bin", "z.csv", "é.txt"]
    assert forward.isascii()


def test_encoding_is_the_json_of_format_1_byte_for_byte() -> None:
    # the bytes name the tree: a manifest written by an earlier version must get the same key
    odd = [FileEntry(p, KEY, i, 1, bool(i % 2), None if i % 3 else i) for i, p in
           enumerate(['q"uote', "back\\slash", "tab\there", "日本/語", "emoji😀", "a/b/c"])]
    for manifest in (Manifest(), Manifest(_entries()), Manifest(odd)):
        rows = [[e.path, e.key, e.size, e.chunks, e.executable, e.rows] for e in manifest]
        assert manifest.encode() == json.dumps({"files": rows, "format": FORMAT},
                                               separators=(",", ":")).encode()


def test_updated_adds_and_replaces_and_encodes_like_a_new_manifest() -> None:
    base = Manifest(_entries())
    base.encode()  # its rows and its size are reused below
    assert base.total_bytes == 2_000_010
    replaced = FileEntry("z.csv", "01" * 32, 11, 1, False, 4)
    added = FileEntry("b/new.txt", "23" * 32, 5, 1)
    updated = base.updated([replaced, added])
    expected = Manifest([_entries()[1], _entries()[2], replaced, added])
    assert updated == expected
    assert updated.encode() == expected.encode()
    assert updated.total_bytes == expected.total_bytes == 2_000_016
    assert base == Manifest(_entries())  # unchanged
    dropped = updated.updated([FileEntry("a/new.bin", KEY, 1, 1)], drop=["a", "b/new.txt", "nothing"])
    expected = Manifest([_entries()[2], replaced, FileEntry("a/new.bin", KEY, 1, 1)])
    assert dropped == expected
    assert dropped.encode() == expected.encode()
    assert dropped.total_bytes == expected.total_bytes == 12


def test_empty_manifest() -> None:
    empty = Manifest()
    assert Manifest.decode(empty.encode(), "m") == empty
    assert len(empty) == 0
    assert empty.total_bytes == 0


def test_under_and_is_dir() -> None:
    manifest = Manifest([FileEntry(p, KEY, 1, 1) for p in ("a/x", "a/y/z", "ab", "b")])
    assert [e.path for e in manifest.under("a")] == ["a/x", "a/y/z"]
    assert [e.path for e in manifest.under("ab")] == ["ab"]
    assert [e.path for e in manifest.under("")] == ["a/x", "a/y/z", "ab", "b"]
    assert manifest.under("c") == []
    assert manifest.is_dir("a")
    assert manifest.is_dir("a/y")
    assert not manifest.is_dir("ab")
    assert manifest.total_bytes == 4


def test_same_content_ignores_rows_but_not_mode() -> None:
    a = FileEntry("x", KEY, 1, 1, False, 1)
    assert a.same_content(FileEntry("y", KEY, 1, 1, False, 7))
    assert not a.same_content(FileEntry("x", KEY, 1, 1, True, 1))
    assert not a.same_content(FileEntry("x", "cd" * 32, 1, 1, False, 1))


def test_unknown_format_is_refused() -> None:
    blob = json.dumps({"files": [], "format": "threadline.manifest/9"}).encode()
    with pytest.raises(IntegrityError, match=r"manifest m1 has format 'threadline\.manifest/9'"):
        Manifest.decode(blob, "m1")


@pytest.mark.parametrize(
    "blob",
    [
        b"not json",
        b"[]",
        b'{"format": "threadline.manifest/1"}',
        b'{"format": "threadline.manifest/1", "files": [["x", "k"]]}',
    ],
)
def test_malformed_manifest_is_reported(blob: bytes) -> None:
    with pytest.raises(IntegrityError, match="manifest m2 is malformed") as info:
        Manifest.decode(blob, "m2")
    assert info.value.key == "m2"
