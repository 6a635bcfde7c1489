"""What committing a local path would change, without storing anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.data.diff import Diff, diff_manifests
from threadline.data.manifest import Manifest
from threadline.data.statcache import StatCache
from threadline.data.worktree import build_manifest, scan

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from threadline.data.repos import DataRepos


def status(
    repos: DataRepos,
    ref: str,
    paths: Sequence[Path],
    *,
    prefix: str = "",
    progress: Callable[[int], None] | None = None,
) -> Diff:
    """The diff from `ref`'s tree to what `paths` hold now (unchanged files are not re-read)."""
    target = repos.resolve(ref)
    base = repos.manifest(target.commit) if target.commit else Manifest()
    files = scan(list(paths), prefix)
    cache = StatCache(repos.stat_cache_path)
    try:
        with repos.content.writer(dry_run=True) as writer:
            current = build_manifest(files, writer, cache, progress)
    finally:
        cache.close()
    return diff_manifests(base, current)
