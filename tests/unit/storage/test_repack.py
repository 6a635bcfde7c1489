"""Repacking for gc: nothing reachable is ever deleted, and the plan is the same dry or real;
merging small packs: every object is still there, for this process and for others."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import pytest

from threadline.errors import NotFound
from threadline.storage import repack
from threadline.storage.cas import ContentStore, hash_bytes
from threadline.storage.local import LocalObjectStore
from threadline.storage.packs import PACK_PREFIX, full_key, index_key, pack_key
from threadline.storage.repack import (
    execute_repack,
    merge_small_packs,
    packs_to_merge,
    plan_repack,
    small_packs,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def content(tmp_path: Path) -> Iterator[ContentStore]:
    store = ContentStore(LocalObjectStore(tmp_path / "objects"), workers=2)
    yield store
    store.close()


def _blob(name: str, size: int = 5000) -> bytes:
    return name.encode() + random.Random(name).randbytes(size)


def _write_pack(content: ContentStore, *names: str) -> str:
    with content.writer() as writer:
        for name in names:
            writer.put_blob(_blob(name))
    (pack,) = writer.pack.published
    return pack


def _key(name: str) -> bytes:
    return hash_bytes(_blob(name))


def _age(content: ContentStore, pack: str, seconds: float = 7200) -> None:
    root = content.objects.root  # type: ignore[attr-defined]
    old = os.path.getmtime(root / index_key(pack)) - seconds
    for key in (index_key(pack), pack_key(pack)):
        os.utime(root / key, (old, old))


@pytest.fixture
def three_packs(content: ContentStore) -> dict[str, str]:
    return {
        "mixed": _write_pack(content, "a", "b", "c"),
        "dead": _write_pack(content, "d", "e"),
        "live": _write_pack(content, "f", "g"),
    }


LIVE = {"a", "c", "f", "g"}


def _live_keys() -> set[bytes]:
    return {_key(n) for n in LIVE}


def _pack_keys(content: ContentStore, pack: str) -> set[bytes]:
    return {full_key(k) for k in content.packs.entries(pack)["key"].tolist()}


def test_plan_deletes_nothing_reachable(content: ContentStore, three_packs: dict[str, str]) -> None:
    plan = plan_repack(content, _live_keys(), grace_seconds=0)
    assert plan.delete == [three_packs["dead"]]
    assert set(plan.rewrite) == {three_packs["mixed"]}
    assert plan.objects_removed == 3
    for pack in plan.delete:
        assert not _pack_keys(content, pack) & _live_keys()
    for pack, keep in plan.rewrite.items():
        entries = content.packs.entries(pack)
        kept = {full_key(entries[i]["key"]) for i in keep}
        assert kept == _pack_keys(content, pack) & _live_keys()
    dead_bytes = sum(
        int(e["stored"])
        for pack in three_packs.values()
        for e in content.packs.entries(pack)
        if full_key(e["key"]) not in _live_keys()
    )
    assert plan.bytes_freed == dead_bytes


def test_dry_run_plan_equals_real_plan(content: ContentStore, three_packs: dict[str, str]) -> None:
    dry = plan_repack(content, _live_keys(), grace_seconds=0)
    listing = [i.key for i in content.objects.list()]
    real = plan_repack(content, _live_keys(), grace_seconds=0)
    assert [i.key for i in content.objects.list()] == listing  # planning changes nothing
    assert real == dry
    assert (
        real.to_dict()
        == dry.to_dict()
        == {
            "packs_deleted": 1,
            "packs_rewritten": 1,
            "orphan_blobs": 0,
            "packs_kept_in_grace_period": 0,
            "objects_removed": 3,
            "bytes_freed": dry.bytes_freed,
        }
    )
    execute_repack(content, real)


def test_mixed_pack_is_rewritten_and_live_objects_read_back(
    content: ContentStore, three_packs: dict[str, str]
) -> None:
    before = sum(i.size for i in content.objects.list(PACK_PREFIX))
    plan = plan_repack(content, _live_keys(), grace_seconds=0)
    execute_repack(content, plan)

    names = content.packs.names()
    assert three_packs["mixed"] not in names
    assert three_packs["dead"] not in names
    assert three_packs["live"] in names
    assert len(names) == 2
    after = sum(i.size for i in content.objects.list(PACK_PREFIX))
    assert before - after >= plan.bytes_freed

    for store in (content, ContentStore(content.objects, workers=2)):
        for name in sorted(LIVE):
            assert store.get(_key(name).hex()) == _blob(name)
        for name in ("b", "d", "e"):
            with pytest.raises(NotFound, match=f"object {_key(name).hex()} is missing"):
                store.get(_key(name).hex())
    # a second gc finds nothing left to do
    again = plan_repack(content, _live_keys(), grace_seconds=0)
    assert (again.delete, again.rewrite, again.orphans) == ([], {}, [])


def test_grace_period_keeps_young_packs(content: ContentStore, three_packs: dict[str, str]) -> None:
    _age(content, three_packs["dead"])
    plan = plan_repack(content, _live_keys(), grace_seconds=3600)
    assert plan.delete == [three_packs["dead"]]
    assert plan.rewrite == {}
    assert plan.kept_recent == 1  # the young mixed pack
    execute_repack(content, plan)
    assert content.has_many([_key("b").hex()]) == {_key("b").hex()}
    assert content.has_many([_key("d").hex()]) == set()


def test_all_live_packs_are_left_alone(content: ContentStore, three_packs: dict[str, str]) -> None:
    every = {_key(n) for n in "abcdefg"}
    plan = plan_repack(content, every, grace_seconds=0)
    assert plan.to_dict()["bytes_freed"] == 0
    assert (plan.delete, plan.rewrite, plan.kept_recent) == ([], {}, 0)


def test_orphan_pack_without_index_is_removed_after_grace(content: ContentStore) -> None:
    _write_pack(content, "a")
    young = content.objects.temp_path()
    young.write_bytes(b"pack written by a writer that died before its index")
    content.objects.put_file(pack_key("0" * 64), young)
    old = content.objects.temp_path()
    old.write_bytes(b"older orphan")
    content.objects.put_file(pack_key("1" * 64), old)
    root = content.objects.root  # type: ignore[attr-defined]
    os.utime(root / pack_key("1" * 64), (1_000_000, 1_000_000))

    plan = plan_repack(content, {_key("a")}, grace_seconds=3600)
    assert plan.orphans == [pack_key("1" * 64)]
    assert plan.bytes_freed == len(b"older orphan")
    execute_repack(content, plan)
    assert content.objects.exists_many([pack_key("0" * 64), pack_key("1" * 64)]) == {pack_key("0" * 64)}
    assert content.get(_key("a").hex()) == _blob("a")


def _pack_files(content: ContentStore) -> set[str]:
    return {info.key for info in content.objects.list(PACK_PREFIX)}


def test_small_packs_are_merged_into_one_past_the_limit(content: ContentStore) -> None:
    names = [f"obj{i}" for i in range(6)]
    packs = [_write_pack(content, name, "shared") if i < 2 else _write_pack(content, name)
             for i, name in enumerate(names)]
    assert merge_small_packs(content, limit=6) == []  # not past the limit: nothing is copied
    assert set(content.packs.names()) == set(packs)
    stale = ContentStore(LocalObjectStore(content.objects.root), workers=1)  # type: ignore[attr-defined]
    try:
        (merged,) = merge_small_packs(content, limit=5)
        assert content.packs.names() == [merged]
        assert _pack_files(content) == {index_key(merged), pack_key(merged)}
        assert _pack_keys(content, merged) == {_key(n) for n in [*names, "shared"]}
        keys = [_key(n) for n in [*names, "shared"]]
        assert content.read_many(keys) == [_blob(n) for n in [*names, "shared"]]
        # a process that loaded the old indexes finds them gone, re-reads and gets the same bytes
        assert stale.packs.names() == sorted(packs)
        assert stale.read_many(keys) == [_blob(n) for n in [*names, "shared"]]
        assert stale.packs.names() == [merged]
    finally:
        stale.close()


def test_a_merge_racing_another_gives_up_without_losing_anything(content: ContentStore) -> None:
    packs = [_write_pack(content, f"obj{i}") for i in range(4)]
    other = ContentStore(LocalObjectStore(content.objects.root), workers=1)  # type: ignore[attr-defined]
    try:
        (merged,) = merge_small_packs(other, limit=3)  # another process merged first
        with pytest.raises(NotFound):
            merge_small_packs(content, limit=3)  # still knows the old packs: reading one fails
        content.refresh()
        assert content.packs.names() == [merged]
        assert _pack_files(content) == {index_key(merged), pack_key(merged)}  # no half-made pack
        assert content.read_many([_key(f"obj{i}") for i in range(4)]) == [_blob(f"obj{i}") for i in range(4)]
        assert not set(packs) & set(content.packs.names())
    finally:
        other.close()


def test_large_packs_are_never_copied(content: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    big = _write_pack(content, "big1", "big2")  # two 5,000-byte objects
    small = [_write_pack(content, f"s{i}") for i in range(3)]
    monkeypatch.setattr(repack, "SMALL_PACK_BYTES", 6000)
    assert [name for name, _ in small_packs(content)] == sorted(small, key=lambda p: (
        int(content.packs.entries(p)["stored"].sum()), p))
    (merged,) = merge_small_packs(content, limit=2)
    assert set(content.packs.names()) == {big, merged}
    assert _pack_keys(content, big) == {_key("big1"), _key("big2")}


def test_merges_leave_a_big_merged_pack_alone_until_the_new_ones_add_up() -> None:
    new = [(f"new{i}", 50_000) for i in range(17)]
    assert packs_to_merge(new[:16], limit=16) == []  # not past the limit
    assert packs_to_merge([*new, ("merged", 5_000_000)], limit=16) == [n for n, _ in new]
    grown = [*new, ("merged", 1_500_000)]  # at most twice the 850 KB of new ones: copied too
    assert packs_to_merge(grown, limit=16) == [n for n, _ in grown]
    # sizes that grow too fast to pass the size rule still bring the count down to limit // 2
    steep = [(f"p{i}", 3**i) for i in range(18)]
    assert packs_to_merge(steep, limit=16) == [f"p{i}" for i in range(10)]
