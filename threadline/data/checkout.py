"""Materialise a commit (or a folder or file of it) into a local folder."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from threadline.data.paths import make_folder_inside, normalize_path
from threadline.data.statcache import StatCache, fingerprint, is_racy
from threadline.errors import InvalidArgument, NotFound
from threadline.storage.files import restore_files

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.data.manifest import FileEntry
    from threadline.data.repos import DataRepos


def plan_checkout(repos: DataRepos, ref: str) -> tuple[list[FileEntry], str]:
    """The files a checkout of `ref` writes, and the folder prefix stripped from their paths."""
    target = repos.resolve(ref)
    manifest = repos.manifest(target.require_commit())
    path = target.path
    entries = manifest.under(path)
    if path and not entries:
        raise NotFound(f"{ref}: no file or folder {path!r} in commit {target.commit.short_id}")  # type: ignore[union-attr]
    strip = path if path and manifest.is_dir(path) else path.rpartition("/")[0]
    return entries, strip


def checkout(
    repos: DataRepos,
    ref: str,
    dest: Path,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Write the tree of `ref` under `dest`; returns the entries written.

    `dest` must be empty or missing unless `force` is given; with `force`, files of the tree
    replace what is there and other files are left alone. Each file appears atomically.
    """
    entries, strip = plan_checkout(repos, ref)
    if dest.exists() and not dest.is_dir():
        raise InvalidArgument(f"{dest} exists and is not a folder; choose another destination")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise InvalidArgument(f"{dest} is not empty; choose an empty folder or pass --force")
    was_empty = not dest.exists() or not any(dest.iterdir())
    dest.mkdir(parents=True, exist_ok=True)
    items = []
    checked: set[str] = set()
    for entry in entries:
        rel = normalize_path(entry.path[len(strip) + 1 :] if strip else entry.path)
        folder = rel.rpartition("/")[0]
        if folder not in checked:  # each folder is created and checked once
            make_folder_inside(dest, folder)
            checked.add(folder)
        target = dest / rel
        if not was_empty and target.is_symlink():
            raise InvalidArgument(f"{target} is a symlink; remove it before checking out there")
        items.append((entry.stored, target, 0o755 if entry.executable else 0o644))
    restore_files(repos.content, items, progress=progress)
    written_at = time.time()
    cache = StatCache(repos.stat_cache_path)
    try:  # a following status or commit of this folder needs no re-hash
        stats = ((os.stat(path), path, e) for (_s, path, _m), e in zip(items, entries))
        cache.update(
            (os.path.abspath(path), fingerprint(st), (e.key, e.chunks, e.rows))
            for st, path, e in stats
            if not is_racy(st, written_at, fine_window=0.0)
        )
    finally:
        cache.close()
    return entries
