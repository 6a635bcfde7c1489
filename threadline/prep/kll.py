"""The KLL quantile sketch behind profiles' quantiles (Karnin, Lang, Liberty 2016).

Mergeable, deterministic (the compactor's coin comes from a hash of the level and its
compaction count) and compact (items kept to 28 mantissa bits, byte planes zlib-compressed in
JSON). `sketches.py` holds the hashing and the other sketches it shares helpers with.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np

from threadline.prep.sketches import (
    _MASK64,
    _NEGATIVE_ZERO,
    SUMMARY_QUANTILES,
    _b64,
    _splitmix64_int,
    _unb64,
    json_num,
    num_json,
)

__all__ = ["KLLSketch"]

_KLL_K = 128
_KLL_C = 2.0 / 3.0

@functools.lru_cache(maxsize=256)
def _capacity(k: int, depth: int) -> int:
    """KLL capacity of a level `depth` levels below the top."""
    return max(2, math.ceil(k * _KLL_C**depth))


@functools.lru_cache(maxsize=256)
def _capacities(k: int, depth: int) -> tuple[int, ...]:
    return tuple(_capacity(k, depth - 1 - h) for h in range(depth))




class KLLSketch:
    """Mergeable quantile sketch (Karnin, Lang, Liberty 2016) over float64 values.

    Level h holds items of weight 2^h; a full level is sorted and every other item (odd or
    even positions, by a coin) is promoted. The coin is a hash of (level, compaction count),
    so the sketch is reproducible, and levels are sorted before storing, so a merge does
    not depend on the order of its arguments. Compacting a whole batch at once is allowed:
    the error a compaction adds is bounded by its weight, not by the buffer's length.

    Args:
        k: capacity of the top level; lower levels shrink by 2/3 each, down to 2.
    """

    def __init__(self, k: int = _KLL_K) -> None:
        self.k = k
        self.n = 0
        self.min: float | None = None
        self.max: float | None = None
        self._levels: list[np.ndarray[Any, np.dtype[np.float64]]] = [np.empty(0)]
        self._compactions: list[int] = [0]

    def update(self, values: np.ndarray[Any, Any]) -> None:
        """Add values (NaN must be removed by the caller)."""
        if values.size == 0:
            return
        v = values.astype(np.float64, copy=False)
        self.update_floats(v, float(v.min()), float(v.max()))

    def update_floats(self, v: np.ndarray[Any, np.dtype[np.float64]], lo: float, hi: float) -> None:
        """`update` for float64 values whose extremes the caller has already computed."""
        if v.size == 0:
            return
        v = _round_items(v, nan=math.isnan(lo) or math.isnan(hi))
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        self.n += int(v.size)
        level0 = self._levels[0]
        self._levels[0] = np.concatenate([level0, v]) if level0.size else v
        self._compress()

    def merge(self, other: KLLSketch) -> KLLSketch:
        """The sketch of both inputs together."""
        out = KLLSketch(max(self.k, other.k))
        out.n = self.n + other.n
        mins = [x for x in (self.min, other.min) if x is not None]
        maxs = [x for x in (self.max, other.max) if x is not None]
        out.min = min(mins) if mins else None
        out.max = max(maxs) if maxs else None
        depth = max(len(self._levels), len(other._levels))
        out._levels = [
            np.concatenate([s._levels[h] for s in (self, other) if h < len(s._levels)]) for h in range(depth)
        ]
        out._compactions = [
            sum(s._compactions[h] for s in (self, other) if h < len(s._compactions)) for h in range(depth)
        ]
        out._compress()
        return out

    def _capacities(self) -> tuple[int, ...]:
        """Each level's capacity, lowest first: the top holds k, each level below 2/3 of the next."""
        return _capacities(self.k, len(self._levels))

    def _compress(self) -> None:
        # Lazy compaction (as in Apache DataSketches): only when the sketch as a whole is over
        # its budget, and then the lowest level that is at capacity; keeps more items, so
        # smaller error for the same space than compacting every full level at once.
        #
        # Each compaction acts on the level's items in stable-sorted order. A batch is sorted
        # once, at level 0; what it promotes is a sorted run (every other item of a sorted
        # array), so a level above is "a few old items + one sorted run": the old items are
        # sorted and merged in, and a level that is only the run needs no work at all. Runs
        # stay strided views of the one sorted batch until the end, so a cascade through ten
        # levels costs one sort and a few small copies, and keeps exactly the items that
        # sorting every level would (the tests check both agree).
        levels, compactions = self._levels, self._compactions
        sizes = [level.size for level in levels]
        caps = self._capacities()
        budget, total = sum(caps), sum(sizes)
        # runs[h]: a sorted run promoted into level h, kept apart from its older items
        # (levels[h]) until the level is compacted or the cascade ends
        runs: list[np.ndarray[Any, np.dtype[np.float64]] | None] = [None] * len(levels)
        while total > budget:
            h = 0
            while sizes[h] < caps[h]:
                h += 1
            head, run = levels[h], runs[h]
            if run is None:
                items = _stable_sorted(head)
            else:
                items = _merge_sorted(head, run) if head.size else run
                runs[h] = None
            even = items.size - items.size % 2
            coin = _splitmix64_int((h << 32) ^ compactions[h]) & 1
            compactions[h] += 1
            if h + 1 == len(levels):
                levels.append(np.empty(0))
                compactions.append(0)
                runs.append(None)
                sizes.append(0)
                caps = self._capacities()
                budget = sum(caps)
            promoted = items[coin:even:2]
            levels[h] = items[even:].copy()  # a copy: a view would keep the whole batch alive
            sizes[h] = items.size - even
            older = runs[h + 1]
            if older is not None:
                levels[h + 1] = np.concatenate([levels[h + 1], older])
            runs[h + 1] = promoted
            sizes[h + 1] += promoted.size
            total -= even - promoted.size
        for h, run in enumerate(runs):
            if run is not None:
                levels[h] = np.concatenate([levels[h], run])

    def quantile(self, q: float) -> float | None:
        """The value at rank q in [0, 1] (None when the sketch is empty)."""
        if self.n == 0 or self.min is None or self.max is None:
            return None
        if q <= 0.0:
            return self.min
        if q >= 1.0:
            return self.max
        values = np.concatenate(self._levels)
        weights = np.concatenate(
            [np.full(lv.size, 1 << h, dtype=np.int64) for h, lv in enumerate(self._levels)]
        )
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        i = int(np.searchsorted(cum, q * cum[-1], side="left"))
        return float(values[order][min(i, values.size - 1)])

    def summary(self) -> list[float | None]:
        """The values at `SUMMARY_QUANTILES` (0, 1%, 5%, 25%, 50%, 75%, 95%, 99%, 100%)."""
        return [self.quantile(q) for q in SUMMARY_QUANTILES]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; each level sorted so equal sketches serialise identically."""
        levels = [np.sort(lv) for lv in self._levels]
        return {
            "k": self.k,
            "n": self.n,
            "min": json_num(self.min),
            "max": json_num(self.max),
            "sizes": [int(lv.size) for lv in levels],
            "compactions": list(self._compactions),
            "items": _pack_items(np.concatenate(levels)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KLLSketch:
        """Rebuild a sketch written by `to_dict`."""
        out = cls(int(d["k"]))
        out.n = int(d["n"])
        out.min = num_json(d["min"])
        out.max = num_json(d["max"])
        items = _unpack_items(d["items"])
        bounds = np.cumsum([0, *d["sizes"]])
        out._levels = [items[a:b].copy() for a, b in itertools.pairwise(bounds)]
        out._compactions = [int(c) for c in d["compactions"]]
        return out


_ITEM_DROP = 24  # low bits of a float64 dropped from sketch items: 28 mantissa bits remain


def _round_items(
    v: np.ndarray[Any, np.dtype[np.float64]], *, nan: bool = True
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Round finite values to 28 mantissa bits (relative precision 4e-9), to nearest.

    Sketch items need far less precision than their ~0.5% rank error, and a 40-bit item packs
    into 5 bytes; rounding on insertion (not on writing) keeps a read-back sketch identical
    to the one written. Carrying into the exponent is correct IEEE rounding. Infinities
    round to themselves (their low bits are zero); only NaN must be kept apart, so a caller
    that knows there is none passes `nan=False` and saves a pass.
    """
    bits = v.view(np.uint64) + np.uint64(1 << (_ITEM_DROP - 1))
    bits &= np.uint64(_MASK64 ^ ((1 << _ITEM_DROP) - 1))
    rounded = bits.view(np.float64)
    return np.where(np.isnan(v), v, rounded) if nan else rounded


def _stable_sorted(a: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """`np.sort(a, kind="stable")`, without paying for a stable sort where it changes nothing.

    Items that compare equal are bit-identical except 0.0 and -0.0 (and NaN, which callers
    remove), so NumPy's default vectorised sort, ~10x faster, gives the same array, unless
    -0.0 is present: that sort is built on min/max instructions, which may turn one zero into
    the other, so then (and on NaN) the stable sort runs. A sorted input is returned as is.
    """
    if a.size < 2 or bool((a[1:] >= a[:-1]).all()):
        return a
    if bool((a.view(np.uint64) == _NEGATIVE_ZERO).any()):
        return np.sort(a, kind="stable")
    s = np.sort(a)
    if math.isnan(s[-1]):
        return np.sort(a, kind="stable")
    return s


def _merge_sorted(
    head: np.ndarray[Any, np.dtype[np.float64]], run: np.ndarray[Any, np.dtype[np.float64]]
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The stable sort of `head` then `run`, where `run` is already sorted: a linear merge."""
    head = _stable_sorted(head)
    # side="left": an item of head goes before the equal items of run, as it came first
    if head.size == 1:  # the usual case (a compaction's odd item left behind), without np.insert
        i = int(run.searchsorted(head[0], side="left"))
        return np.concatenate([run[:i], head, run[i:]])
    return np.insert(run, np.searchsorted(run, head, side="left"), head)


def _pack_items(items: np.ndarray[Any, np.dtype[np.float64]]) -> str:
    """The top 5 bytes of each float64, byte planes apart (sorted items share their top bytes)."""
    planes = items.astype("<f8").view(np.uint8).reshape(-1, 8)[:, _ITEM_DROP // 8 :]
    return _b64(np.ascontiguousarray(planes.T).tobytes())


def _unpack_items(text: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    kept = 8 - _ITEM_DROP // 8
    planes = np.frombuffer(_unb64(text), dtype=np.uint8).reshape(kept, -1).T
    full = np.zeros((planes.shape[0], 8), dtype=np.uint8)
    full[:, 8 - kept :] = planes
    return full.view("<f8").reshape(-1).astype(np.float64)
