"""The stat cache: skip re-reading files whose size, mtime and inode have not changed.

Machine-local (it stores absolute paths), so it lives in the home's cache folder in its own
SQLite file, never in the shared metadata database. Losing it only costs a re-hash.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

#: (size, mtime_ns, inode) of a file as last seen
Fingerprint = tuple[int, int, int]
#: (key, chunks, rows) of the file's content in the store
Cached = tuple[str, int, "int | None"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat_cache (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER,
    key TEXT, chunks INTEGER, rows INTEGER
)
"""


#: a file modified this recently may still change within the same timestamp tick: such files
#: are re-hashed next time instead of trusted (git's "racy" entries). Filesystems with whole-
#: second timestamps (NFS, FAT, some network mounts) get the longer window.
RACY_SECONDS_FINE = 0.05
RACY_SECONDS_COARSE = 2.0


def is_racy(st: os.stat_result, scanned_at: float, fine_window: float = RACY_SECONDS_FINE) -> bool:
    """Whether `st` is too fresh, relative to when it was taken, for its hash to be cached.

    Checkout passes `fine_window=0`: it wrote the bytes itself, so only whole-second
    timestamps leave room for an unseen edit.
    """
    coarse = st.st_mtime_ns % 1_000_000_000 == 0
    window = RACY_SECONDS_COARSE if coarse else fine_window
    return scanned_at - st.st_mtime < window


def fingerprint(st: os.stat_result) -> Fingerprint:
    """What must be unchanged for a cached hash to still hold."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class StatCache:
    """Maps absolute file paths to the stored content they had when last hashed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        with contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(_SCHEMA)

    def lookup(self, paths: Iterable[str]) -> dict[str, tuple[Fingerprint, Cached]]:
        """Cached entries for the given absolute paths.

        Many paths under one folder (a scanned tree) are read with one range query over the
        primary key; a few scattered paths with IN queries.
        """
        wanted = sorted(paths)
        out: dict[str, tuple[Fingerprint, Cached]] = {}
        if len(wanted) > 1000:
            # the common prefix of the first and last of a sorted list is that of all of them;
            # compared character by character, then cut back to a whole folder name
            prefix = os.path.commonprefix([wanted[0], wanted[-1]])  # noqa: RUF071
            common = prefix.rpartition("/")[0]
            if len(common) > 1:
                low, high = common + "/", common + "0"  # "0" sorts right after "/"
                want = set(wanted)
                for row in self.conn.execute(
                    "SELECT path, size, mtime_ns, inode, key, chunks, rows FROM stat_cache "
                    "WHERE path >= ? AND path < ?",
                    (low, high),
                ):
                    if row[0] in want:
                        out[row[0]] = ((row[1], row[2], row[3]), (row[4], row[5], row[6]))
                return out
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                f"SELECT path, size, mtime_ns, inode, key, chunks, rows "  # noqa: S608 - marks only
                f"FROM stat_cache WHERE path IN ({marks})",
                part,
            ):
                out[row[0]] = ((row[1], row[2], row[3]), (row[4], row[5], row[6]))
        return out

    def update(self, items: Iterable[tuple[str, Fingerprint, Cached]]) -> None:
        """Remember what these files hashed to."""
        rows = [(p, f[0], f[1], f[2], c[0], c[1], c[2]) for p, f, c in items]
        if rows:
            with contextlib.suppress(sqlite3.OperationalError):  # a cache may always miss
                self.conn.execute("BEGIN")
                self.conn.executemany(
                    "INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?,?,?)", rows
                )
                self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the cache database."""
        self.conn.close()
