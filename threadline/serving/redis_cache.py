"""`RedisCache`: prediction results shared by every worker process through Redis.

Split from `cache` (which re-exports it) because it is the one backend with an optional
dependency and failure handling of its own: redis-py is imported only when a Redis cache is
opened (the extra `threadline[redis]`), and an outage falls back to computing results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.serving.cache_keys import cache_digest
from threadline.serving.cache_settings import check_positive, check_redis_url, redact_url
from threadline.serving.singleflight import SingleFlight

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import redis.asyncio

__all__ = ["RedisCache"]

# The logger the cache has always logged to (before this module was split from it), so logging
# configuration that names "threadline.serving.cache" keeps covering Redis outages.
log = logging.getLogger("threadline.serving.cache")


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
        check_redis_url(url)
        if ttl_s is not None:
            check_positive("ttl_s", ttl_s, integer=False)
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
        self._flights = SingleFlight()
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


def _import_redis() -> tuple[Any, type[BaseException]]:
    # Lazy: redis is the optional extra `threadline[redis]`, and only a Redis cache needs it.
    try:
        import redis.asyncio as redis_asyncio
        from redis.exceptions import RedisError
    except ImportError as exc:
        raise InvalidArgument("a Redis cache needs 'pip install threadline[redis]'") from exc
    return redis_asyncio, RedisError
