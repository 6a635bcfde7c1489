"""Seeded bootstrap over rows: confidence intervals, shared by every model on the same rows.

A replicate draws n row indices with replacement and is held as a weight row (how often each
row was drawn), so its metrics are the weighted metrics of `metrics.py`. Replicates are made
in chunks of at most `CHUNK_CELLS` weights, bounding memory at ~32 MB whatever n is. Every
model evaluated in one call sees the very same replicates: that pairing is what lets
`compare.py` tell a real difference from the noise of which rows happened to be drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.evaluate.metrics import compute

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from threadline.evaluate.metrics import Predictions

REPLICATES = 1000
LEVEL = 0.95
CHUNK_CELLS = 4_000_000
#: up to this many rows, counts are float32: every sum the AUC forms (a count times a running
#: count, at most ~16 n) stays an integer below 2**24, so float32 holds it exactly
FLOAT32_ROWS = 1_000_000


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval; None bounds when the metric was undefined throughout."""

    low: float | None
    high: float | None
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        """Whether `value` lies inside (an undefined interval contains everything)."""
        if self.low is None or self.high is None:
            return True
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"low": self.low, "high": self.high, "level": self.level}


def weight_chunks(n: int, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """Resampling counts, (chunk, n) at a time; the same for the same (n, replicates, seed).

    Float32 up to `FLOAT32_ROWS` rows (exact integers, half the memory traffic), else float64.
    """
    if replicates < 1:
        raise InvalidArgument(f"replicates must be at least 1, not {replicates}")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(replicates, CHUNK_CELLS // max(n, 1)))
    dtype = np.float32 if n <= FLOAT32_ROWS else np.float64
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        drawn = rng.integers(0, n, size=(size, n), dtype=np.int64)
        weights = np.empty((size, n), dtype=dtype)
        for row in range(size):  # a bincount per row is faster than one over offset indices
            weights[row] = np.bincount(drawn[row], minlength=n)
        yield weights


def replicate(models: Sequence[Predictions], replicates: int = REPLICATES,
              seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Each model's metrics on the same bootstrap replicates: per model, metric -> (replicates,).

    The models must have been evaluated on the same rows, in the same order.
    """
    if not models:
        return []
    n = models[0].rows
    if any(m.rows != n for m in models):
        raise InvalidArgument("paired bootstrap needs every model evaluated on the same rows")
    if n == 0:
        raise InvalidArgument("no rows to evaluate")
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in models]
    for weights in weight_chunks(n, replicates, seed):
        for store, model in zip(parts, models, strict=True):
            for key, values in compute(model, weights).items():
                store.setdefault(key, []).append(values)
    return [{k: np.concatenate(v) for k, v in store.items()} for store in parts]


def interval(samples: np.ndarray, level: float = LEVEL) -> Interval:
    """The percentile interval of replicate values (NaN replicates are left out)."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return Interval(None, None, level)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high), level)


def intervals(p: Predictions, replicates: int = REPLICATES, seed: int = 0,
              level: float = LEVEL) -> dict[str, Interval]:
    """Confidence intervals of one model's metrics."""
    return {k: interval(v, level) for k, v in replicate([p], replicates, seed)[0].items()}
