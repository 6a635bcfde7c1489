"""Rewriting packs: garbage collection, and merging the small packs that commits leave behind.

Garbage collection drops unreachable objects and keeps everything else byte-identical. The
caller computes reachability (only it knows the roots) and holds the store lock exclusively.
A pack is left alone if all of it is live or if it is younger than the grace period (a writer
elsewhere may be about to reference it); a pack with nothing live is deleted; a mixed pack
has its live objects copied - still compressed, still verified - into a new pack, which is
published before the old one is removed, so a crash at any point loses nothing live.

Every commit publishes a pack of its own, and every look-up searches each pack's index, so a
store that takes a commit a minute (a pipeline that watches a branch) would get slower all
day. `merge_small_packs` copies small packs into one once there are more than
`AUTO_PACK_LIMIT` of them (git merges its packs the same way, past `gc.autoPackLimit`),
choosing them geometrically so that a big merged pack is not copied on every merge. It
deletes nothing it has not copied into a published pack first, so it needs only the store
lock shared: readers that still know an old pack find it gone, re-read the indexes and retry
(`ContentStore.read_many`), and two processes merging at once at worst both publish a copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.storage.packs import PACK_PREFIX, PackWriter, full_key, index_key, pack_key

#: a commit merges the small packs once there are more than this many
AUTO_PACK_LIMIT = 16
#: packs up to this size count as small; larger ones are never copied by a merge
SMALL_PACK_BYTES = 8 << 20

if TYPE_CHECKING:
    from collections.abc import Set

    from threadline.storage.cas import ContentStore


@dataclass
class RepackPlan:
    """What gc will do; computed identically for a dry run and a real run."""

    delete: list[str] = field(default_factory=list)
    rewrite: dict[str, list[int]] = field(default_factory=dict)  # pack -> live entry indexes
    orphans: list[str] = field(default_factory=list)  # blobs of packs that never got an index
    kept_recent: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "packs_deleted": len(self.delete),
            "packs_rewritten": len(self.rewrite),
            "orphan_blobs": len(self.orphans),
            "packs_kept_in_grace_period": self.kept_recent,
            "objects_removed": self.objects_removed,
            "bytes_freed": self.bytes_freed,
        }


def plan_repack(store: ContentStore, live: Set[bytes], grace_seconds: float) -> RepackPlan:
    """Decide, per pack, whether to keep, delete or rewrite it."""
    plan = RepackPlan()
    now = time.time()
    listed = {info.key: info for info in store.objects.list(PACK_PREFIX)}
    for name in store.packs.names():
        info = listed.get(index_key(name))
        entries = store.packs.entries(name)
        keys = [full_key(k) for k in entries["key"].tolist()]
        keep = [i for i, k in enumerate(keys) if k in live]
        if len(keep) == len(keys):
            continue
        if info is not None and now - info.mtime < grace_seconds:
            plan.kept_recent += 1
            continue
        dead = [i for i in range(len(keys)) if i not in set(keep)]
        plan.objects_removed += len(dead)
        plan.bytes_freed += int(entries["stored"][dead].sum()) if dead else 0
        if keep:
            plan.rewrite[name] = keep
        else:
            plan.delete.append(name)
    indexed = {index_key(n) for n in store.packs.names()}
    for key, info in listed.items():
        orphan = key.endswith(".pack") and key[:-5] + ".idx" not in indexed
        if orphan and now - info.mtime >= grace_seconds:
            plan.orphans.append(key)
            plan.bytes_freed += info.size
    return plan


def execute_repack(store: ContentStore, plan: RepackPlan) -> None:
    """Carry out a plan: publish rewritten packs first, then delete what they replace."""
    for name, keep in plan.rewrite.items():
        entries = store.packs.entries(name)
        writer = PackWriter(store.objects, store.packs)
        try:
            for i in keep:
                e = entries[i]
                (payload,) = store.objects.read_ranges(
                    pack_key(name), [(int(e["offset"]), int(e["stored"]))]
                )
                writer.add(full_key(e["key"]), int(e["raw"]), int(e["codec"]), payload)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        store.objects.delete_many([index_key(name), pack_key(name)])
    for name in plan.delete:
        store.objects.delete_many([index_key(name), pack_key(name)])
    store.objects.delete_many(plan.orphans)
    store.refresh()


def _pack_size(store: ContentStore, name: str) -> int:
    entries = store.packs.entries(name)
    return int((entries["offset"] + entries["stored"]).max()) if len(entries) else 0


def small_packs(store: ContentStore) -> list[tuple[str, int]]:
    """(id, bytes) of the packs holding at most `SMALL_PACK_BYTES`, smallest first."""
    sizes = [(size, name) for name in store.packs.names()
             if (size := _pack_size(store, name)) <= SMALL_PACK_BYTES]
    return [(name, size) for size, name in sorted(sizes)]


def packs_to_merge(small: list[tuple[str, int]], limit: int = AUTO_PACK_LIMIT) -> list[str]:
    """Which of the small packs (smallest first) to merge: none while there are at most `limit`.

    Past it, the smallest ones, and each next one while it is at most twice what is taken so
    far: a pack already merged from many commits is copied again only once the new ones add
    up to half its size, so copying stays proportional to what was written (git's geometric
    repack), not to the store. At least enough are taken to leave `limit // 2` packs.
    """
    if len(small) <= limit:
        return []
    taken = max(2, len(small) - limit // 2)
    total = sum(size for _, size in small[:taken])
    while taken < len(small) and small[taken][1] <= 2 * total:
        total += small[taken][1]
        taken += 1
    return [name for name, _ in small[:taken]]


def merge_small_packs(store: ContentStore, limit: int = AUTO_PACK_LIMIT) -> list[str]:
    """If more than `limit` packs are small, copy the objects of those `packs_to_merge` picks
    into one pack, publish it, then delete them; return the ids of the packs published (none
    if there was nothing to do).

    The caller holds the store lock shared (garbage collection must not run meanwhile). A pack
    another process deleted first (it was merging too) makes this merge give up unpublished.
    """
    names = packs_to_merge(small_packs(store), limit)
    if not names:
        return []
    writer = PackWriter(store.objects, store.packs)
    try:
        for name in names:
            entries = store.packs.entries(name)
            end = _pack_size(store, name)
            if not end:
                continue
            (blob,) = store.objects.read_ranges(pack_key(name), [(0, end)])
            for key, offset, stored, raw, codec in zip(
                entries["key"].tolist(), entries["offset"].tolist(), entries["stored"].tolist(),
                entries["raw"].tolist(), entries["codec"].tolist(),
            ):
                writer.add(full_key(key), raw, codec, blob[offset : offset + stored])
        published = writer.finish()
    except BaseException:
        writer.abort()
        raise
    store.objects.delete_many([key for name in names for key in (index_key(name), pack_key(name))])
    store.refresh()
    return published
