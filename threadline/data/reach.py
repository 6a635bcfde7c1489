"""Reachability: which objects the commits in the database still need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.errors import IntegrityError, NotFound
from threadline.storage.cas import decode_chunk_list, parse_key

if TYPE_CHECKING:
    from collections.abc import Iterable

    from threadline.data.model import CommitInfo
    from threadline.data.repos import DataRepos


def reachable_objects(repos: DataRepos, commits: Iterable[CommitInfo]) -> set[bytes]:
    """Every object key (32 bytes) reachable from `commits`.

    Fails closed: a manifest or chunk list that cannot be read raises IntegrityError, because
    guessing would let gc delete data that is still referenced.
    """
    live: set[bytes] = set()
    lists_seen: set[str] = set()
    for commit in commits:
        try:
            live.add(parse_key(commit.manifest))
            manifest = repos.manifest(commit)
            for entry in manifest:
                live.add(parse_key(entry.key))
                if entry.chunks > 1 and entry.key not in lists_seen:
                    lists_seen.add(entry.key)
                    blob = repos.content.get(entry.key)
                    live.update(k for k, _ in decode_chunk_list(blob, entry.key))
        except (NotFound, IntegrityError) as exc:
            raise IntegrityError(
                f"cannot read commit {commit.repo}@{commit.short_id}: {exc}; nothing was deleted. "
                "Run `threadline data verify` and repair the store first",
                key=commit.id,
            ) from exc
    return live
