"""Result caches keyed by (model version, canonical input bytes), with single-flight misses.

A prediction is a pure function of the version that answered it and the request's rows, so the
cache key holds both (`cache_keys`): when an alias moves from "churn/3" to "churn/4", requests
through the alias look up "churn/4" keys and never see an answer "churn/3" gave. Values are the
encoded predictions (`bytes`).

Two backends share one `get_or_compute` API: `ResultCache` (in-process LRU bounded by entries and
bytes, with a TTL, here) and `RedisCache` (shared by every worker process, `SET key value PX ttl`,
in `redis_cache`). Both coalesce concurrent identical misses in this process into one computation
(`singleflight`). `open_cache` picks one from a deployment's `CacheSettings` (`cache_settings`);
this module re-exports those names, so callers import every cache name from here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from threadline.serving.cache_keys import cache_digest
from threadline.serving.cache_settings import CacheSettings, check_positive, redact_url
from threadline.serving.redis_cache import RedisCache
from threadline.serving.singleflight import SingleFlight

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["CacheSettings", "RedisCache", "ResultCache", "cache_digest", "open_cache", "redact_url"]


@dataclass(slots=True)
class _Entry:
    version_id: str
    value: bytes
    expires_at: float | None


class ResultCache:
    """An in-process LRU of prediction results, bounded by entry count, total value bytes and age.

    Args:
        max_entries: at most this many results are kept.
        max_bytes: the stored values total at most this many bytes; a single value larger than
            this is returned but not stored.
        ttl_s: a result older than this is not served (None: results never expire).
        clock: monotonic seconds; tests pass a fake one.

    Counters for metrics: `hits`, `misses` (computations started because of a miss),
    `evictions` (removed to make room), `expirations`, `size_bytes`, `entries`.
    A request that waited on an identical request's computation counts as a hit.
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_s: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_positive("max_entries", max_entries, integer=True)
        check_positive("max_bytes", max_bytes, integer=True)
        if ttl_s is not None:
            check_positive("ttl_s", ttl_s, integer=False)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._by_version: dict[str, set[bytes]] = {}
        self._flights = SingleFlight()
        # Invalidation epochs: a computation that started before its version (or everything)
        # was invalidated must not store its result afterwards.
        self._epoch = 0
        self._all_invalidated_at = 0
        self._version_invalidated_at: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0
        self.size_bytes = 0

    @property
    def entries(self) -> int:
        """How many results are stored (expired ones not yet dropped included)."""
        return len(self._entries)

    @property
    def in_flight(self) -> int:
        """How many computations are running for this cache now."""
        return len(self._flights)

    async def get_or_compute(
        self, version_id: str, input_key: bytes, compute: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        """The result for (version, input): stored, or computed once by `compute()`.

        Returns:
            (value, hit): hit is False only for the call that ran `compute()`.

        Raises:
            Whatever `compute()` raised, to the caller that ran it and to every caller that
            waited on it; nothing is stored then.
        """
        key = cache_digest(version_id, input_key)
        value = self._lookup(key)
        if value is not None:
            self.hits += 1
            return value, True

        async def lead() -> tuple[bytes, bool]:
            # Another leader may have stored it between our lookup and now (we retried
            # after a cancelled leader).
            stored = self._lookup(key)
            if stored is not None:
                return stored, True
            self.misses += 1
            started = self._epoch
            computed = await compute()
            if not self._invalidated_since(version_id, started):
                self._store(key, version_id, computed)
            return computed, False

        value, hit = await self._flights.run(key, lead)
        if hit:
            self.hits += 1
        return value, hit

    def get_or_compute_now(
        self, version_id: str, input_key: bytes, compute: Callable[[], bytes | None]
    ) -> tuple[bytes, bool] | None:
        """`get_or_compute` without waiting: the stored result, or `compute()`'s, computed at
        once and stored. None when that cannot be done without waiting (`compute()` returned
        None, or an identical computation is in flight): the caller then awaits
        `get_or_compute`. Counts hits and misses as `get_or_compute` does.
        """
        key = cache_digest(version_id, input_key)
        value = self._lookup(key)
        if value is not None:
            self.hits += 1
            return value, True
        if key in self._flights:
            return None
        try:
            computed = compute()
        except Exception:
            self.misses += 1  # it ran and failed: a miss, as `get_or_compute` counts it
            raise
        if computed is None:
            return None
        self.misses += 1  # nothing ran in between, so no invalidation can have come first
        self._store(key, version_id, computed)
        return computed, False

    def get(self, version_id: str, input_key: bytes) -> bytes | None:
        """A stored result without computing anything (the raw-body fast path); counts a hit."""
        value = self._lookup(cache_digest(version_id, input_key))
        if value is not None:
            self.hits += 1
        return value

    def put(self, version_id: str, input_key: bytes, value: bytes) -> None:
        """Store a result computed elsewhere (under a second key of the same answer)."""
        self._store(cache_digest(version_id, input_key), version_id, value)

    def invalidate(self, version_id: str | None = None) -> int:
        """Drop one version's results (it was unloaded), or all; returns how many were dropped.

        Computations in flight for that version still answer their callers but store nothing.
        """
        self._epoch += 1
        if version_id is None:
            dropped = len(self._entries)
            self._entries.clear()
            self._by_version.clear()
            self._version_invalidated_at.clear()
            self._all_invalidated_at = self._epoch
            self.size_bytes = 0
            return dropped
        self._version_invalidated_at[version_id] = self._epoch
        keys = self._by_version.pop(version_id, set())
        for key in keys:
            entry = self._entries.pop(key)
            self.size_bytes -= len(entry.value)
        return len(keys)

    async def aclose(self) -> None:
        """Drop everything (same API as `RedisCache.aclose`)."""
        self.invalidate()

    def _invalidated_since(self, version_id: str, epoch: int) -> bool:
        return (self._all_invalidated_at > epoch
                or self._version_invalidated_at.get(version_id, 0) > epoch)

    def _lookup(self, key: bytes) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            self._remove(key)
            self.expirations += 1
            return None
        self._entries.move_to_end(key)
        return entry.value

    def _store(self, key: bytes, version_id: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        expires_at = None if self.ttl_s is None else self._clock() + self.ttl_s
        self._entries[key] = _Entry(version_id, value, expires_at)
        self._by_version.setdefault(version_id, set()).add(key)
        self.size_bytes += len(value)
        while len(self._entries) > self.max_entries or self.size_bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.size_bytes -= len(entry.value)
        keys = self._by_version.get(entry.version_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_version[entry.version_id]


def open_cache(
    settings: CacheSettings, *, prefix: str = "threadline:result:"
) -> ResultCache | RedisCache | None:
    """The cache `settings` ask for: None when disabled, Redis when a URL is set, else in-process."""
    if not settings.enabled:
        return None
    if settings.redis_url is not None:
        return RedisCache(settings.redis_url, settings.ttl_s, prefix)
    return ResultCache(settings.max_entries, settings.max_bytes, settings.ttl_s)
