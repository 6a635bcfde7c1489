"""Local files going into a commit: scanning, the stat cache, and building a manifest.

Snapshot semantics: the tree of a commit is exactly what the given paths contain (a folder
contributes its contents, a file its own name). The home folder and `.git` are never scanned.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from threadline.data.manifest import FileEntry, Manifest
from threadline.data.paths import normalize_path
from threadline.data.statcache import is_racy
from threadline.errors import InvalidArgument, NotFound
from threadline.storage.files import store_files

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from threadline.data.statcache import StatCache
    from threadline.storage.cas import ContentWriter

SKIPPED_DIRS = frozenset({".threadline", ".git"})
LINE_TABLE_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class LocalFile:
    """A file to commit: its in-repo path, its absolute path on disk, and its stat."""

    rel: str
    source: str
    st: os.stat_result
    scanned_at: float


def scan(sources: Sequence[Path], prefix: str = "") -> list[LocalFile]:
    """List regular files under `sources` with their in-repo paths (sorted, unique).

    Raises InvalidArgument for a symlink or special file and NotFound for a missing source.
    """
    prefix = normalize_path(prefix, allow_root=True)
    found: dict[str, LocalFile] = {}
    started = time.time()

    def add(rel: str, path: str, st: os.stat_result) -> None:
        full = normalize_path(f"{prefix}/{rel}" if prefix else rel)
        if full in found:
            raise InvalidArgument(
                f"two sources map to {full!r} ({found[full].source} and {path}); commit them "
                "from different folders or use a prefix"
            )
        found[full] = LocalFile(full, path, st, started)

    for source in sources:
        try:
            st = os.lstat(source)
        except FileNotFoundError as exc:
            raise NotFound(f"{source} does not exist; check the path") from exc
        if stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(f"{source} is a symlink; commit the file or folder it points to")
        if stat.S_ISREG(st.st_mode):
            add(source.name, os.path.abspath(source), st)
        elif stat.S_ISDIR(st.st_mode):
            _walk(os.path.abspath(source), "", add)
        else:
            raise InvalidArgument(f"{source} is not a regular file or folder")
    return [found[k] for k in sorted(found)]


def _walk(folder: str, rel: str, add: Callable[[str, str, os.stat_result], None]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                raise InvalidArgument(
                    f"{entry.path} is a symlink; replace it with the file, or move it out of the "
                    "committed folder"
                )
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_DIRS:
                    _walk(entry.path, child_rel, add)
            elif entry.is_file(follow_symlinks=False):
                add(child_rel, entry.path, entry.stat(follow_symlinks=False))
            else:
                raise InvalidArgument(f"{entry.path} is not a regular file or folder")


def _fingerprint(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _row_count(local: LocalFile, lines: int | None) -> int | None:
    name = local.rel.lower()
    if name.endswith(LINE_TABLE_SUFFIXES) and lines is not None:
        return max(lines - 1, 0)  # the header line is not a row
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq  # heavy: only when a Parquet file is committed

        try:
            return int(pq.read_metadata(local.source).num_rows)
        except Exception:  # noqa: BLE001 - a malformed .parquet is still a file we store
            return None
    return None


def build_manifest(
    files: Sequence[LocalFile],
    writer: ContentWriter,
    cache: StatCache | None,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Store the files' contents (skipping those the stat cache vouches for) into a manifest.

    Without a cache every file is read, and nothing is remembered: for a throwaway folder,
    whose paths never come back.
    """
    abs_paths = [f.source for f in files]
    cached = cache.lookup(abs_paths) if cache is not None else {}
    hits: dict[int, tuple[str, int, int | None]] = {}
    for i, local in enumerate(files):
        hit = cached.get(abs_paths[i])
        if hit and hit[0] == _fingerprint(local.st):
            hits[i] = hit[1]
    if hits and not writer.dry_run:  # a cached key is only trusted if the object still exists
        present = writer.store.has_many({key for key, _, _ in hits.values()})
        hits = {i: h for i, h in hits.items() if h[0] in present}
    entries: list[FileEntry | None] = [None] * len(files)
    for i, (key, chunks, rows) in hits.items():
        local = files[i]
        executable = bool(local.st.st_mode & stat.S_IXUSR)
        entries[i] = FileEntry(local.rel, key, local.st.st_size, chunks, executable, rows)
    if progress and hits:
        progress(sum(files[i].st.st_size for i in hits))
    todo = [i for i in range(len(files)) if i not in hits]
    if todo:
        wants_lines = [files[i].rel.lower().endswith(LINE_TABLE_SUFFIXES) for i in todo]
        stored = store_files(
            writer,
            [files[i].source for i in todo],
            count_lines=lambda j: wants_lines[j],
            progress=progress,
            sizes=[files[i].st.st_size for i in todo],
        )
        updates = []
        for i, sf in zip(todo, stored):
            local = files[i]
            rows = _row_count(local, sf.lines)
            executable = bool(local.st.st_mode & stat.S_IXUSR)
            entries[i] = FileEntry(local.rel, sf.key, sf.size, sf.chunks, executable, rows)
            if not is_racy(local.st, local.scanned_at) and sf.size == local.st.st_size:
                updates.append((abs_paths[i], _fingerprint(local.st), (sf.key, sf.chunks, rows)))
        if cache is not None:
            cache.update(updates)
    return Manifest(e for e in entries if e is not None)
