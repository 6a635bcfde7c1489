"""Result caches keyed by (model version, canonical input bytes), with single-flight misses.

A prediction is a pure function of the version that answered it and the request's rows, so the
cache key holds both: when an alias moves from "churn/3" to "churn/4", requests through the alias
look up "churn/4" keys and never see an answer "churn/3" gave. Keys are 16-byte BLAKE3 digests,
so neither memory nor Redis ever holds a raw input. Values are the encoded predictions (`bytes`).

Two backends share one `get_or_compute` API: `ResultCache` (in-process LRU bounded by entries and
bytes, with a TTL) and `RedisCache` (shared by every worker process, `SET key value PX ttl`).
Both coalesce concurrent identical misses in this process into one computation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from blake3 import blake3

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    import redis.asyncio

__all__ = ["CacheSettings", "RedisCache", "ResultCache", "cache_digest", "open_cache"]

log = logging.getLogger(__name__)

DIGEST_BYTES = 16
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def cache_digest(version_id: str, input_key: bytes) -> bytes:
    """The 16-byte key of one (version, input) pair.

    The version is length-prefixed so no (version, input) pair can collide with another by
    moving bytes across the boundary ("a/1" + "2..." vs "a/12" + "...").
    """
    version = version_id.encode()
    hasher = blake3(len(version).to_bytes(4, "big"))
    hasher.update(version)
    hasher.update(input_key)
    return hasher.digest(length=DIGEST_BYTES)


class _SingleFlight:
    """Runs one computation per key at a time in this event loop; callers of a key in flight
    await the leader's result instead of computing it again.

    Failure semantics (tested): if the leader's computation raises, every follower waiting on it
    gets the same exception (retrying at once would only double the load on a failing model).
    If the leader is cancelled (its client left, its deadline passed), that cancellation is not
    the followers' business: one follower becomes the new leader and computes, the rest wait on
    it. A follower's own cancellation never cancels the leader (the wait is shielded).
    """

    def __init__(self) -> None:
        self._flights: dict[bytes, asyncio.Future[bytes]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(
        self, key: bytes, lead: Callable[[], Awaitable[tuple[bytes, bool]]]
    ) -> tuple[bytes, bool]:
        """`lead()`'s (value, hit) if this call leads; (leader's value, True) if it follows."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, lead)
            try:
                return await asyncio.shield(flight), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not flight.cancelled() or (task is not None and task.cancelling()):
                    raise  # this task was cancelled itself
                # The leader was cancelled: loop, and the first follower to get here leads.

    async def _lead(
        self, key: bytes, lead: Callable[[], Awaitable[tuple[bytes, bool]]]
    ) -> tuple[bytes, bool]:
        flight: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            value, hit = await lead()
        except Exception as exc:
            flight.set_exception(exc)
            # Mark it retrieved: with no follower waiting, asyncio would otherwise log
            # "Future exception was never retrieved" when the future is collected.
            flight.exception()
            raise
        except BaseException:
            flight.cancel()  # followers see a cancelled leader and take over
            raise
        else:
            flight.set_result(value)
            return value, hit
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]


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
        _check_positive("max_entries", max_entries, integer=True)
        _check_positive("max_bytes", max_bytes, integer=True)
        if ttl_s is not None:
            _check_positive("ttl_s", ttl_s, integer=False)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._by_version: dict[str, set[bytes]] = {}
        self._flights = _SingleFlight()
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


class RedisCache:
    """Results shared by every worker process through Redis (`SET key value PX ttl`).

    Redis is an optimisation, never a dependency of a prediction: any Redis error (down,
    timeout, refused) is logged once per outage and the result is computed; after an error
    Redis is skipped for `retry_after_s` so an outage does not add a timeout to every request.

    Args:
        url: redis://, rediss:// or unix:// URL (a password in it never reaches the logs).
        ttl_s: results expire after this long (None: never).
        prefix: prepended to every key, so several caches can share one Redis.
        timeout_s: socket connect and read timeout for each Redis call.
        retry_after_s: how long to skip Redis after an error.
        clock: monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self,
        url: str,
        ttl_s: float | None,
        prefix: str = "threadline:result:",
        *,
        timeout_s: float = 0.5,
        retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_redis_url(url)
        if ttl_s is not None:
            _check_positive("ttl_s", ttl_s, integer=False)
        redis_asyncio, redis_error = _import_redis()
        self.url = redact_url(url)
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._client: redis.asyncio.Redis = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._errors_from: tuple[type[BaseException], ...] = (
            redis_error, OSError, asyncio.TimeoutError)
        self._flights = _SingleFlight()
        self._skip_until = 0.0
        self._failing = False
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @property
    def in_flight(self) -> int:
        """How many computations are running in this process now."""
        return len(self._flights)

    async def get_or_compute(
        self, version_id: str, input_key: bytes, compute: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        """Like `ResultCache.get_or_compute`; a Redis failure falls back to `compute()`."""
        key = self.prefix.encode() + cache_digest(version_id, input_key).hex().encode()

        async def lead() -> tuple[bytes, bool]:
            stored = await self._get(key)
            if stored is not None:
                return stored, True
            self.misses += 1
            computed = await compute()
            await self._set(key, computed)
            return computed, False

        value, hit = await self._flights.run(key, lead)
        if hit:
            self.hits += 1
        return value, hit

    def invalidate(self, version_id: str | None = None) -> int:
        """Nothing to drop in this process: Redis entries expire by TTL.

        Deleting a version's keys from Redis would take them from other workers that still
        serve it, and keys carry the version, so no other version can ever read them.
        """
        return 0

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _get(self, key: bytes) -> bytes | None:
        if self._clock() < self._skip_until:
            return None
        try:
            value = await self._client.get(key)
        except self._errors_from as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value if isinstance(value, bytes) else None  # the client does not decode

    async def _set(self, key: bytes, value: bytes) -> None:
        if self._clock() < self._skip_until:
            return
        try:
            if self.ttl_s is None:
                await self._client.set(key, value)
            else:
                await self._client.set(key, value, px=max(1, round(self.ttl_s * 1000)))
        except self._errors_from as exc:
            self._failed(exc)
            return
        self._recovered()

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._skip_until = self._clock() + self.retry_after_s
        if not self._failing:
            self._failing = True
            # The redacted URL only, and the error's type and text (redis-py's texts name host
            # and port, never the password).
            log.warning("Redis result cache at %s failed (%s: %s); computing results without "
                        "it, retrying in %.0f s", self.url, type(exc).__name__, exc,
                        self.retry_after_s)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("Redis result cache at %s answers again", self.url)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How a deployment caches results; `from_dict` parses the deployment file's `cache:`."""

    enabled: bool = True
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    ttl_s: float | None = 300.0
    redis_url: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CacheSettings:
        """Validated settings; unknown keys and wrong types raise `InvalidArgument`."""
        allowed = [f.name for f in fields(cls)]
        for name in d:
            if name not in allowed:
                raise InvalidArgument(f"unknown cache setting {name!r}; allowed: {', '.join(allowed)}")
        kwargs: dict[str, Any] = dict(d)
        if "enabled" in d and not isinstance(d["enabled"], bool):
            raise InvalidArgument(f"cache setting 'enabled' must be true or false, not {d['enabled']!r}")
        for name in ("max_entries", "max_bytes"):
            if name in d:
                _check_positive(name, d[name], integer=True)
        if d.get("ttl_s") is not None:
            _check_positive("ttl_s", d["ttl_s"], integer=False)
            kwargs["ttl_s"] = float(d["ttl_s"])
        if d.get("redis_url") is not None:
            _check_redis_url(d["redis_url"])
        return cls(**kwargs)


def open_cache(
    settings: CacheSettings, *, prefix: str = "threadline:result:"
) -> ResultCache | RedisCache | None:
    """The cache `settings` ask for: None when disabled, Redis when a URL is set, else in-process."""
    if not settings.enabled:
        return None
    if settings.redis_url is not None:
        return RedisCache(settings.redis_url, settings.ttl_s, prefix)
    return ResultCache(settings.max_entries, settings.max_bytes, settings.ttl_s)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_positive(name: str, value: object, *, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        what = "a positive integer" if integer else "a positive number of seconds"
        raise InvalidArgument(f"cache setting {name!r} must be {what}, not {value!r}")


def _check_redis_url(url: object) -> None:
    if not isinstance(url, str) or urlsplit(url).scheme not in _REDIS_SCHEMES:
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise InvalidArgument(f"cache setting 'redis_url' must be a redis://, rediss:// or unix:// "
                              f"URL, not {shown!r}")


def _import_redis() -> tuple[Any, type[BaseException]]:
    # Lazy: redis is the optional extra `threadline[redis]`, and only a Redis cache needs it.
    try:
        import redis.asyncio as redis_asyncio
        from redis.exceptions import RedisError
    except ImportError as exc:
        raise InvalidArgument("a Redis cache needs 'pip install threadline[redis]'") from exc
    return redis_asyncio, RedisError
