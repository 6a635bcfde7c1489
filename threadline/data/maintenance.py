"""Store maintenance verbs: `gc` (free unreachable objects) and `du` (space accounting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadline.data.reach import reachable_objects
from threadline.storage.packs import PACK_PREFIX
from threadline.storage.repack import RepackPlan, execute_repack, plan_repack

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

DEFAULT_GRACE_SECONDS = 3600.0


def gc(repos: DataRepos, *, dry_run: bool = True, grace_seconds: float = DEFAULT_GRACE_SECONDS
       ) -> RepackPlan:
    """Remove objects no commit reaches. Dry run by default; the plan is the same either way.

    Holds the store lock exclusively, so no commit is in flight while reachability is computed
    and objects are deleted; packs younger than `grace_seconds` are never touched.
    """
    with repos.lock.exclusive():
        repos.content.refresh()
        live = reachable_objects(repos, repos.all_commits())
        plan = plan_repack(repos.content, live, grace_seconds)
        if not dry_run:
            execute_repack(repos.content, plan)
        return plan


@dataclass(frozen=True)
class Usage:
    """Space used by one repo (or the whole store).

    Attributes:
        logical_bytes: the sum of every commit's tree size (what whole copies would take).
        unique_bytes: the raw size of the distinct chunks those commits need.
        stored_bytes: what those chunks take in the store after compression.
        store_bytes: the size of every pack on disk, garbage included (whole store only).
    """

    scope: str
    commits: int
    logical_bytes: int
    unique_bytes: int
    stored_bytes: int
    store_bytes: int | None = None

    @property
    def dedup_ratio(self) -> float:
        """logical / unique: how many times de-duplication shrank the data."""
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        """unique / stored: how many times compression shrank the unique data."""
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"scope": self.scope, "commits": self.commits, "logical_bytes": self.logical_bytes,
                "unique_bytes": self.unique_bytes, "stored_bytes": self.stored_bytes,
                "store_bytes": self.store_bytes, "dedup_ratio": round(self.dedup_ratio, 3),
                "compression_ratio": round(self.compression_ratio, 3)}


def du(repos: DataRepos, repo: str | None = None) -> Usage:
    """Logical versus stored bytes for one repo or for everything."""
    repos.content.refresh()
    if repo is not None:
        repos.get(repo)
    commits = [c for c in repos.all_commits() if repo is None or c.repo == repo]
    live = reachable_objects(repos, commits)
    sizes = repos.content.object_sizes()
    unique = sum(sizes[k][0] for k in live if k in sizes)
    stored = sum(sizes[k][1] for k in live if k in sizes)
    store_bytes = None
    if repo is None:
        store_bytes = sum(i.size for i in repos.content.objects.list(PACK_PREFIX))
    return Usage(repo or "(all repos)", len(commits), sum(c.total_bytes for c in commits),
                 unique, stored, store_bytes)
