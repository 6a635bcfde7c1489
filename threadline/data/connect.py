"""Open the data layer of a Threadline home: database, content store, lock, caches."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from threadline.config import Settings, load_settings
from threadline.data.repos import DataRepos
from threadline.meta.db import Database
from threadline.storage.backend import open_object_store
from threadline.storage.cas import ContentStore
from threadline.storage.locks import StoreLock

if TYPE_CHECKING:
    from pathlib import Path

_cache: dict[Path, DataRepos] = {}
_cache_lock = threading.Lock()


def connect(settings: Settings) -> DataRepos:
    """A new DataRepos for the home described by `settings` (migrates the schema if needed)."""
    db = Database(settings.database_url)
    content = ContentStore(open_object_store(settings.store_url))
    return DataRepos(
        db,
        content,
        StoreLock(settings.lock_dir / "store.lock"),
        settings.cache_dir / "stat-cache.sqlite",
        settings.author,
    )


def default_repos(home: Path | None = None) -> DataRepos:
    """The DataRepos of the home that applies to `home` or the working folder, opened once.

    For notebooks and scripts: repeated `tl.data.repo(...)` calls share one connection.
    """
    settings = load_settings(home)
    with _cache_lock:
        repos = _cache.get(settings.home)
        if repos is None:
            repos = _cache[settings.home] = connect(settings)
        return repos
