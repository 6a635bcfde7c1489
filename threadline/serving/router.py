"""Which route answers a request: weighted A/B and canary shares, sticky by a request key,
and which shadow routes get a copy.

A request with the sticky header is placed by a hash of the header's value, so the same caller
lands on the same route for as long as the weights stay; without it the draw is random. The
table is immutable: a change of routes builds a new one and swaps it in whole.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

if TYPE_CHECKING:
    from threadline.serving.batching import MicroBatcher
    from threadline.serving.predictor import Predictor
    from threadline.serving.spec import Route

_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Target:
    """A route with the model version it resolved to."""

    route: Route
    predictor: Predictor
    batcher: MicroBatcher


def sticky_point(key: str) -> float:
    """A point in [0, 1) that depends only on `key`."""
    digest = blake3.blake3(key.encode("utf-8", "surrogatepass")).digest(8)
    return int.from_bytes(digest, "big") / _SCALE


class RouteTable:
    """The serving and shadow targets of one deployment revision.

    Args:
        serving: primary and canary targets, their weights in `route.weight`.
        shadows: shadow targets, `route.weight` the percent of requests copied to each.
        revision: the deployment revision this table was built from.
    """

    def __init__(self, serving: list[Target], shadows: list[Target], revision: int) -> None:
        self.serving = serving
        self.shadows = shadows
        self.revision = revision
        weights = [max(t.route.weight, 0.0) for t in serving]
        total = sum(weights) or 1.0
        running = 0.0
        self._bounds: list[float] = []
        for weight in weights:
            running += weight / total
            self._bounds.append(running)
        self._bounds[-1] = 1.0
        self._rng = random.Random()  # noqa: S311 - traffic shares, not secrets

    def choose(self, key: str | None = None) -> Target:
        """The target for a request with sticky key `key` (random when None)."""
        if len(self.serving) == 1:
            return self.serving[0]
        point = sticky_point(key) if key else self._rng.random()
        return self.serving[min(bisect.bisect_right(self._bounds, point), len(self.serving) - 1)]

    def copies(self) -> list[Target]:
        """The shadow targets this request is copied to."""
        return [t for t in self.shadows if t.route.weight >= 100 or self._rng.random() * 100 < t.route.weight]

    def targets(self) -> list[Target]:
        """Every target, serving first."""
        return [*self.serving, *self.shadows]
