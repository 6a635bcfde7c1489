"""The conformance suite every ObjectStore backend passes (DVC's `dvc/testing/remote_tests.py`).

A backend's test module subclasses the suites and provides an `object_store` fixture that
yields a fresh, empty store::

    import pytest

    from threadline.storage.conformance import ContentStoreConformance, ObjectStoreConformance
    from threadline.storage.local import LocalObjectStore


    @pytest.fixture
    def object_store(tmp_path):
        store = LocalObjectStore(tmp_path / "objects")
        yield store
        store.close()


    class TestLocalObjectStore(ObjectStoreConformance):
        pass


    class TestLocalContentStore(ContentStoreConformance):
        pass

`ObjectStoreConformance` checks the bytes-level contract of `ObjectStore`;
`ContentStoreConformance` runs the content-addressed layer (chunks, packs, verified reads) over
the backend, which is what users actually depend on. Neither touches the backend's files
directly: a damaged blob is simulated by deleting it and writing flipped bytes back under the
same key, so the suites work for remote backends too.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

import pytest

from threadline.errors import IntegrityError, InvalidArgument, NotFound, ThreadlineError
from threadline.storage.cas import ContentStore, StoredFile
from threadline.storage.files import MAX_CHUNK, restore_files, store_files
from threadline.storage.packs import PACK_PREFIX

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.storage.backend import ObjectStore

__all__ = ["ContentStoreConformance", "ObjectStoreConformance"]

#: keys no backend may accept: they could escape the store root or alias another key
INVALID_KEYS = ["../x", "a/../../x", "/abs", "a//b", "a\\b", "a\x00b", "", "a/", ".hidden"]


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible test data


def _compressible_bytes(size: int) -> bytes:
    row = b"2024-01-01,store_17,widget,3,19.99\n"
    return (row * (size // len(row) + 1))[:size]


class ObjectStoreConformance:
    """The bytes-level contract of an ObjectStore; needs an `object_store` fixture."""

    def test_put_many_get_many_round_trip(self, object_store: ObjectStore) -> None:
        items = {"a": b"alpha", "b/c": b"", "b/d/e.bin": _random_bytes(70_000, 1)}
        object_store.put_many(items.items())
        got = list(object_store.get_many(["b/d/e.bin", "a", "b/c"]))
        assert got == [("b/d/e.bin", items["b/d/e.bin"]), ("a", b"alpha"), ("b/c", b"")]

    def test_put_existing_key_keeps_original(self, object_store: ObjectStore) -> None:
        object_store.put_many([("k", b"first")])
        object_store.put_many([("k", b"second, longer")])
        assert list(object_store.get_many(["k"])) == [("k", b"first")]

    def test_put_file_consumes_the_file(self, object_store: ObjectStore) -> None:
        path = object_store.temp_path(".blob")
        path.write_bytes(b"from a file")
        object_store.put_file("files/one", path)
        assert not path.exists()
        assert list(object_store.get_many(["files/one"])) == [("files/one", b"from a file")]

    def test_put_file_on_existing_key_keeps_original_and_consumes(self, object_store: ObjectStore) -> None:
        object_store.put_many([("k", b"original")])
        path = object_store.temp_path()
        path.write_bytes(b"replacement")
        object_store.put_file("k", path)
        assert not path.exists()
        assert list(object_store.get_many(["k"])) == [("k", b"original")]

    def test_temp_paths_are_fresh_and_consumable(self, object_store: ObjectStore) -> None:
        first, second = object_store.temp_path(".pack"), object_store.temp_path(".pack")
        assert first != second
        assert ".pack" in first.name  # the suffix is kept, so leftovers can be recognised
        for i, path in enumerate((first, second)):
            path.write_bytes(b"x" * i)
            object_store.put_file(f"t/{i}", path)
        assert not first.exists()
        assert not second.exists()
        assert dict(object_store.get_many(["t/0", "t/1"])) == {"t/0": b"", "t/1": b"x"}
        # a temp file is never listed as a blob
        assert [info.key for info in object_store.list()] == ["t/0", "t/1"]

    def test_read_ranges(self, object_store: ObjectStore) -> None:
        blob = bytes(range(256)) * 10
        object_store.put_many([("r", blob)])
        ranges = [(0, 3), (250, 10), (2550, 10), (100, 0), (5, 1)]
        assert object_store.read_ranges("r", ranges) == [blob[o : o + n] for o, n in ranges]

    def test_read_ranges_of_missing_key_raises_not_found(self, object_store: ObjectStore) -> None:
        with pytest.raises(NotFound, match="nope"):
            object_store.read_ranges("nope", [(0, 1)])

    def test_read_ranges_past_the_end_fails(self, object_store: ObjectStore) -> None:
        object_store.put_many([("short", b"abc")])
        with pytest.raises(NotFound, match="short"):
            object_store.read_ranges("short", [(1, 10)])

    def test_exists_many(self, object_store: ObjectStore) -> None:
        object_store.put_many([("x/1", b"1"), ("x/2", b"2")])
        assert object_store.exists_many(["x/1", "x/3", "x/2", "x"]) == {"x/1", "x/2"}
        assert object_store.exists_many([]) == set()

    def test_key_that_prefixes_other_keys_is_not_a_blob(self, object_store: ObjectStore) -> None:
        object_store.put_many([("x/1", b"1")])
        assert object_store.exists_many(["x"]) == set()
        with pytest.raises(NotFound, match="object x is missing"):
            list(object_store.get_many(["x"]))
        # Writing it is stored (object stores) or refused (folders); never silently dropped.
        try:
            object_store.put_many([("x", b"data")])
        except ThreadlineError:
            assert object_store.exists_many(["x"]) == set()
        else:
            assert list(object_store.get_many(["x"])) == [("x", b"data")]
        assert list(object_store.get_many(["x/1"])) == [("x/1", b"1")]

    def test_list_prefix_sorted_with_sizes(self, object_store: ObjectStore) -> None:
        object_store.put_many(
            [("p/b", b"22"), ("p/a/z", b"333"), ("q/a", b"1"), ("p/a/y", b""), ("pz", b"4444")]
        )
        listed = [(i.key, i.size) for i in object_store.list("p/")]
        assert listed == [("p/a/y", 0), ("p/a/z", 3), ("p/b", 2)]
        assert [i.key for i in object_store.list()] == ["p/a/y", "p/a/z", "p/b", "pz", "q/a"]
        assert [i.key for i in object_store.list("p")] == ["p/a/y", "p/a/z", "p/b", "pz"]
        assert list(object_store.list("nothing/")) == []
        assert [i.key for i in object_store.list("p/a")] == ["p/a/y", "p/a/z"]
        assert [i.key for i in object_store.list("p/a/z")] == ["p/a/z"]
        assert list(object_store.list("p/a/zz")) == []
        for prefix in ("", "p", "p/", "p/a", "nothing/"):
            assert list(object_store.keys(prefix)) == [i.key for i in object_store.list(prefix)]
        assert all(i.mtime >= 0 for i in object_store.list())

    def test_delete_many_ignores_missing_keys(self, object_store: ObjectStore) -> None:
        object_store.put_many([("d/1", b"1"), ("d/2", b"2")])
        object_store.delete_many(["d/1", "d/never", "d/1"])
        assert object_store.exists_many(["d/1", "d/2"]) == {"d/2"}
        assert [i.key for i in object_store.list()] == ["d/2"]

    def test_deleted_key_can_be_written_again(self, object_store: ObjectStore) -> None:
        object_store.put_many([("k", b"old")])
        assert object_store.read_ranges("k", [(0, 3)]) == [b"old"]
        object_store.delete_many(["k"])
        object_store.put_many([("k", b"new!")])
        assert object_store.read_ranges("k", [(0, 4)]) == [b"new!"]

    def test_get_many_missing_key_raises_not_found_naming_it(self, object_store: ObjectStore) -> None:
        object_store.put_many([("present", b"1")])
        with pytest.raises(NotFound, match="missing/key-42"):
            list(object_store.get_many(["present", "missing/key-42"]))

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_are_refused(self, object_store: ObjectStore, key: str) -> None:
        message = re.escape(f"invalid object key {key!r}")
        with pytest.raises(InvalidArgument, match=message):
            object_store.put_many([(key, b"x")])
        with pytest.raises(InvalidArgument, match=message):
            list(object_store.get_many([key]))
        with pytest.raises(InvalidArgument, match=message):
            object_store.exists_many([key])
        with pytest.raises(InvalidArgument, match=message):
            object_store.read_ranges(key, [(0, 1)])
        with pytest.raises(InvalidArgument, match=message):
            object_store.delete_many([key])
        path = object_store.temp_path()
        path.write_bytes(b"x")
        with pytest.raises(InvalidArgument, match=message):
            object_store.put_file(key, path)
        path.unlink(missing_ok=True)
        assert list(object_store.list()) == []


def _pack_bytes(objects: ObjectStore) -> int:
    return sum(info.size for info in objects.list(PACK_PREFIX))


def _flip_byte(objects: ObjectStore, key: str, offset: int) -> None:
    """Simulate bit rot: rewrite blob `key` with one byte flipped (blobs are immutable)."""
    ((_, blob),) = objects.get_many([key])
    damaged = bytearray(blob)
    damaged[offset] ^= 0x40
    objects.delete_many([key])
    objects.put_many([(key, bytes(damaged))])


class ContentStoreConformance:
    """The content-addressed layer over a backend; needs an `object_store` fixture."""

    @pytest.fixture
    def content(self, object_store: ObjectStore) -> ContentStore:
        return ContentStore(object_store, workers=2)

    @staticmethod
    def store(content: ContentStore, *paths: Path) -> list[StoredFile]:
        with content.writer() as writer:
            return store_files(writer, list(paths))

    @pytest.mark.parametrize("kind", ["random", "compressible"])
    @pytest.mark.parametrize("size", [0, 1, 100 << 10, 5 << 20])
    def test_round_trip(self, content: ContentStore, tmp_path: Path, size: int, kind: str) -> None:
        data = _random_bytes(size, size) if kind == "random" else _compressible_bytes(size)
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        (stored,) = self.store(content, src)
        assert stored.size == size
        assert (stored.chunks > 1) == (size > MAX_CHUNK)
        # a fresh ContentStore sees only what was published through the backend
        reopened = ContentStore(content.objects, workers=2)
        assert reopened.read_file(stored) == data
        out = tmp_path / "out.bin"
        restore_files(reopened, [(stored, out, 0o640)])
        assert out.read_bytes() == data
        assert out.stat().st_mode & 0o777 == 0o640
        if kind == "compressible" and size >= 100 << 10:
            assert _pack_bytes(content.objects) < size // 4

    def test_many_files_in_one_batch(self, content: ContentStore, tmp_path: Path) -> None:
        files = {}
        for i, size in enumerate([0, 1, 10, 4096, 70_000, 1 << 20, (1 << 20) + 1, 3 << 20]):
            path = tmp_path / f"f{i}"
            path.write_bytes(_random_bytes(size, i))
            files[path] = path.read_bytes()
        stored = self.store(content, *files)
        assert [s.size for s in stored] == [len(d) for d in files.values()]
        outs = [(s, tmp_path / f"out{i}", 0o644) for i, s in enumerate(stored)]
        restore_files(content, outs)
        assert [o.read_bytes() for _, o, _ in outs] == list(files.values())

    def test_identical_files_share_one_key(self, content: ContentStore, tmp_path: Path) -> None:
        a, b = tmp_path / "a", tmp_path / "b"
        a.write_bytes(_random_bytes(2 << 20, 7))
        b.write_bytes(a.read_bytes())
        first, second = self.store(content, a, b)
        assert first == second
        assert _pack_bytes(content.objects) < (2 << 20) * 1.05

    def test_storing_the_same_file_twice_adds_no_pack_bytes(
        self, content: ContentStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "same.bin"
        src.write_bytes(_random_bytes(3 << 20, 3))
        (first,) = self.store(content, src)
        before = _pack_bytes(content.objects)
        packs_before = [i.key for i in content.objects.list(PACK_PREFIX)]
        (second,) = self.store(content, src)
        assert second == first
        assert _pack_bytes(content.objects) == before
        assert [i.key for i in content.objects.list(PACK_PREFIX)] == packs_before
        # another process's view dedups too: its pack index says the chunks exist
        (third,) = self.store(ContentStore(content.objects, workers=2), src)
        assert third == first
        assert _pack_bytes(content.objects) == before

    def test_small_edit_stores_only_a_few_chunks(self, content: ContentStore, tmp_path: Path) -> None:
        size = 4 << 20
        data = bytearray(_random_bytes(size, 2024))
        src = tmp_path / "big.bin"
        src.write_bytes(data)
        (old,) = self.store(content, src)
        old_chunks = {key for key, _ in content.chunk_list(old)}
        before = _pack_bytes(content.objects)

        edit = size // 100
        middle = size // 2
        data[middle : middle + edit] = _random_bytes(edit, 99)
        src.write_bytes(data)
        (new,) = self.store(content, src)
        added = _pack_bytes(content.objects) - before
        new_chunks = [key for key, _ in content.chunk_list(new)]

        assert content.read_file(new) == bytes(data)
        # Content-defined chunking: only the chunks around the edit change. Every chunk that
        # ends before the edit is cut identically (cuts depend only on the bytes since the
        # previous cut), and the cuts resynchronise within a few chunks after it.
        offset, prefix = 0, []
        for key, n in content.chunk_list(old):
            if offset + n > middle:
                break
            prefix.append(key)
            offset += n
        assert new_chunks[: len(prefix)] == prefix
        fresh = [key for key in new_chunks if key not in old_chunks]
        assert 1 <= len(fresh) <= 5, f"{len(fresh)} of {len(new_chunks)} chunks are new"
        # The byte bound holds for this fixed content (4.3%); it is not a law for every 4 MiB
        # file: with 128 KiB average / 512 KiB maximum chunks, the one or two chunks an edit
        # touches reach 10-23% of the file for about one random file in seven.
        assert added < size * 0.10, f"a 1% edit stored {added} new bytes"

    def test_flipped_byte_in_pack_raises_integrity_error_naming_object(
        self, content: ContentStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "victim.bin"
        src.write_bytes(_random_bytes(50_000, 5))  # incompressible: stored raw
        (stored,) = self.store(content, src)
        (pack,) = [i.key for i in content.objects.list(PACK_PREFIX) if i.key.endswith(".pack")]
        _flip_byte(content.objects, pack, 25_000)
        reopened = ContentStore(content.objects, workers=2)
        with pytest.raises(IntegrityError, match=f"object {stored.key} is corrupt") as info:
            reopened.read_file(stored)
        assert info.value.key == stored.key
        with pytest.raises(IntegrityError, match=stored.key):
            restore_files(reopened, [(stored, tmp_path / "out.bin", 0o644)])
        assert not (tmp_path / "out.bin").exists()
        assert list(tmp_path.glob("*.tl-tmp")) == []  # no half-written file left behind

    def test_flipped_byte_in_large_file_names_the_damaged_chunk(
        self, content: ContentStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "large.bin"
        src.write_bytes(_random_bytes(3 << 20, 6))
        (stored,) = self.store(content, src)
        chunks = [key for key, _ in content.chunk_list(stored)]
        locations = content.locate(chunks)
        victim = len(chunks) // 2
        loc = locations[victim]
        _flip_byte(content.objects, f"{PACK_PREFIX}{loc.pack}.pack", loc.offset + loc.stored // 2)
        reopened = ContentStore(content.objects, workers=2)
        damaged = chunks[victim].hex()
        with pytest.raises(IntegrityError, match=f"object {damaged} is corrupt") as info:
            reopened.read_file(stored)
        assert info.value.key == damaged
        out = tmp_path / "out" / "large.bin"
        out.parent.mkdir()
        with pytest.raises(IntegrityError, match=damaged):
            restore_files(reopened, [(stored, out, 0o644)])
        assert list(out.parent.iterdir()) == []  # neither the file nor its temp is left

    @pytest.mark.parametrize("offset", [0, 5, -1])
    def test_flipped_byte_in_compressed_chunk_names_object(
        self, content: ContentStore, tmp_path: Path, offset: int
    ) -> None:
        src = tmp_path / "table.csv"
        src.write_bytes(_compressible_bytes(200_000))
        (stored,) = self.store(content, src)
        ((pack, size),) = [
            (i.key, i.size) for i in content.objects.list(PACK_PREFIX) if i.key.endswith(".pack")
        ]
        assert size < 200_000  # compressed, so the flip lands in a zstd frame
        _flip_byte(content.objects, pack, offset % size)
        reopened = ContentStore(content.objects, workers=2)
        with pytest.raises(IntegrityError, match=f"object {stored.key} is corrupt") as info:
            reopened.get(stored.key)
        assert info.value.key == stored.key

    def test_missing_object_raises_not_found(self, content: ContentStore) -> None:
        key = "ab" * 32
        with pytest.raises(NotFound, match=f"object {key} is missing"):
            content.get(key)
        assert content.has_many([key]) == set()

    def test_aborted_writer_publishes_nothing(self, content: ContentStore, tmp_path: Path) -> None:
        src = tmp_path / "x.bin"
        src.write_bytes(_random_bytes(10_000, 8))

        class Boom(Exception):
            pass

        def store_then_fail() -> None:
            with content.writer() as writer:
                store_files(writer, [src])
                raise Boom

        with pytest.raises(Boom):
            store_then_fail()
        assert list(content.objects.list()) == []
        assert ContentStore(content.objects).packs.names() == []
