"""Admission control: how many requests a worker answers at once, how many may wait, and when
to refuse at once with 503 and `Retry-After` instead of letting latency grow without bound.

Health, readiness and metrics requests never pass through here, so an overloaded or draining
server still reports on itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class Refused(Exception):
    """A request was not admitted: `reason` is `overloaded` or `draining` (HTTP 503)."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Admission:
    """At most `max_concurrency` requests run; up to `max_queue` more wait; the rest get 503.

    Args:
        max_concurrency: requests answered at once.
        max_queue: requests allowed to wait for a slot.
    """

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._slots = asyncio.Semaphore(max_concurrency)
        #: requests admitted and not finished (running and waiting)
        self.admitted = 0
        self.draining = False
        self.refused = 0

    def others(self) -> int:
        """Admitted requests besides the caller (what the batcher waits for)."""
        return max(self.admitted - 1, 0)

    async def enter(self) -> None:
        """Take a slot, waiting in the queue if need be.

        Raises:
            Refused: draining for shutdown, or the queue is full.
        """
        if self.draining:
            self.refused += 1
            raise Refused("draining", retry_after=2)
        if self.admitted >= self.max_concurrency + self.max_queue:
            self.refused += 1
            raise Refused("overloaded")
        self.admitted += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self.admitted -= 1
            raise

    def leave(self) -> None:
        """Give the slot back (call exactly once per successful `enter`)."""
        self.admitted -= 1
        self._slots.release()


class RateLimiter:
    """Per-client token buckets: `rate` requests per second with bursts of `burst`.

    Clients are told apart by the key the app gives (the bearer token's hash, else the
    address); the number of buckets kept is bounded, oldest forgotten first.
    """

    MAX_CLIENTS = 100_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, key: str) -> float | None:
        """None when the client may go ahead (one token taken), else seconds until it may."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.MAX_CLIENTS:
            self._buckets.pop(next(iter(self._buckets)))
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
