"""Single-flight: concurrent identical cache misses in one event loop run one computation.

Both result caches (`cache.ResultCache`, `redis_cache.RedisCache`) coalesce their misses through
it, so a burst of identical requests costs the model one prediction, not one per request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["SingleFlight"]


class SingleFlight:
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

    def __contains__(self, key: bytes) -> bool:
        """Whether a computation of `key` is in flight."""
        return key in self._flights

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
