"""Garbage collection of packs: drop unreachable objects, keep everything else byte-identical.

The caller computes reachability (only it knows the roots) and holds the store lock
exclusively. A pack is left alone if all of it is live or if it is younger than the grace
period (a writer elsewhere may be about to reference it); a pack with nothing live is deleted;
a mixed pack has its live objects copied - still compressed, still verified - into a new pack,
which is published before the old one is removed, so a crash at any point loses nothing live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.storage.packs import PACK_PREFIX, PackWriter, full_key, index_key, pack_key

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
