"""The sketches behind table profiles: HyperLogLog (distinct counts), KLL (quantiles), top values.

Each is mergeable (the sketch of a union from the sketches of its parts), deterministic (no
global RNG: coins come from hashes, serialised state is sorted) and compact (zlib + base64 in
JSON). `profile.py` combines them into column and table profiles.
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import zlib
from typing import TYPE_CHECKING, Any

import blake3
import numpy as np

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

Scalar = int | float
#: the quantiles a summary reports
SUMMARY_QUANTILES: tuple[float, ...] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)

_MASK64 = (1 << 64) - 1
_HLL_P = 10  # 2^10 registers: standard error 1.04 / sqrt(1024) = 3.25%
_HLL_M = 1 << _HLL_P
_HLL_Q = 64 - _HLL_P
_HLL_SPARSE_MAX = 64  # below this many distinct hashes the set is kept exactly
_KLL_K = 128
_KLL_C = 2.0 / 3.0
_TOP_K = 64


@functools.lru_cache(maxsize=256)
def _capacity(k: int, depth: int) -> int:
    """KLL capacity of a level `depth` levels below the top."""
    return max(2, math.ceil(k * _KLL_C**depth))


# ---------------------------------------------------------------------------------------- hashing


def _splitmix64(x: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Vectorised splitmix64 finaliser; uint64 arithmetic wraps, which is what the mix wants."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _splitmix64_int(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def hash_numbers(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """64-bit hashes of numbers: the value's 64-bit pattern mixed by splitmix64."""
    if values.dtype.kind == "f":
        # + 0.0 folds -0.0 into 0.0 so that equal numbers hash equally.
        bits = (values.astype(np.float64) + 0.0).view(np.uint64)
    elif values.dtype.kind == "u":
        bits = values.astype(np.uint64)
    else:
        bits = values.astype(np.int64).view(np.uint64)
    return _splitmix64(bits)


def hash_bytes(values: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """64-bit BLAKE3 hashes of byte strings (called once per distinct value per batch)."""
    digests = b"".join(blake3.blake3(v).digest(8) for v in values)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _b64(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _unb64(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


# ---------------------------------------------------------------------------------------- HyperLogLog


class HyperLogLog:
    """Distinct-count sketch: 1024 registers, exact below 64 distinct values.

    Small sets are kept as their sorted 64-bit hashes (a sparse mode, as in HyperLogLog++), so
    small cardinalities are exact; past 64 the registers take over and the estimate uses
    Ertl's improved estimator (arXiv:1702.01284), which needs no bias tables and degrades to
    linear counting for small register fill. Registers are stored zlib-compressed (~500 bytes).
    """

    def __init__(self) -> None:
        self._sparse: np.ndarray[Any, np.dtype[np.uint64]] | None = np.empty(0, dtype=np.uint64)
        self._registers: np.ndarray[Any, np.dtype[np.uint8]] | None = None

    def add_hashes(self, hashes: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
        """Add 64-bit hashes of values (duplicates are harmless)."""
        if hashes.size == 0:
            return
        if self._sparse is not None:
            merged = np.union1d(self._sparse, hashes)
            if merged.size <= _HLL_SPARSE_MAX:
                self._sparse = merged
                return
            self._sparse = None
            self._registers = np.zeros(_HLL_M, dtype=np.uint8)
            hashes = merged
        assert self._registers is not None
        idx = (hashes >> np.uint64(_HLL_Q)).astype(np.intp)
        w = hashes << np.uint64(_HLL_P)
        # Leading zeros without a clz ufunc: smear the top bit down, then count the ones.
        s = w.copy()
        for shift in (1, 2, 4, 8, 16, 32):
            s |= s >> np.uint64(shift)
        rank = np.minimum(64 - np.bitwise_count(s).astype(np.int64) + 1, _HLL_Q + 1).astype(np.uint8)
        np.maximum.at(self._registers, idx, rank)

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The sketch of the union of both inputs."""
        out = HyperLogLog()
        if self._sparse is not None and other._sparse is not None:
            out.add_hashes(np.union1d(self._sparse, other._sparse))
            return out
        out._sparse = None
        out._registers = np.zeros(_HLL_M, dtype=np.uint8)
        for part in (self, other):
            if part._registers is not None:
                np.maximum(out._registers, part._registers, out=out._registers)
            else:
                assert part._sparse is not None
                out.add_hashes(part._sparse)
        return out

    def estimate(self) -> int:
        """The estimated number of distinct values."""
        if self._sparse is not None:
            return int(self._sparse.size)
        assert self._registers is not None
        m = _HLL_M
        c = np.bincount(self._registers, minlength=_HLL_Q + 2).astype(np.float64)
        z = m * _tau(1.0 - c[_HLL_Q + 1] / m)
        for k in range(_HLL_Q, 0, -1):
            z = 0.5 * (z + c[k])
        z += m * _sigma(c[0] / m)
        return round(m * m / (2.0 * math.log(2.0)) / z)

    def to_dict(self) -> dict[str, str]:
        """A JSON-able form: the sparse hashes or the compressed registers."""
        if self._sparse is not None:
            return {"sparse": _b64(self._sparse.astype("<u8").tobytes())}
        assert self._registers is not None
        return {"registers": _b64(self._registers.tobytes())}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> HyperLogLog:
        """Rebuild a sketch written by `to_dict`."""
        out = cls()
        if "sparse" in d:
            out._sparse = np.frombuffer(_unb64(d["sparse"]), dtype="<u8").astype(np.uint64)
        else:
            out._sparse = None
            regs = np.frombuffer(_unb64(d["registers"]), dtype=np.uint8).copy()
            if regs.size != _HLL_M:
                raise InvalidArgument(f"profile HyperLogLog has {regs.size} registers, expected {_HLL_M}")
            out._registers = regs
        return out


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


# ---------------------------------------------------------------------------------------- KLL


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
        v = values.astype(np.float64)
        lo, hi = float(v.min()), float(v.max())
        v = _round_items(v)
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        self.n += int(v.size)
        self._levels[0] = np.concatenate([self._levels[0], v])
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

    def _capacities(self) -> list[int]:
        """Each level's capacity, lowest first: the top holds k, each level below 2/3 of the next."""
        depth = len(self._levels)
        return [_capacity(self.k, depth - 1 - h) for h in range(depth)]

    def _compress(self) -> None:
        # Lazy compaction (as in Apache DataSketches): only when the sketch as a whole is over
        # its budget, and then the lowest level that is at capacity; keeps more items, so
        # smaller error for the same space than compacting every full level at once.
        caps = self._capacities()
        while sum(lv.size for lv in self._levels) > sum(caps):
            h = next(h for h, lv in enumerate(self._levels) if lv.size >= caps[h])
            # stable (timsort) sort: above level 0 a level is a sorted run plus a few leftovers,
            # which it merges in linear time
            items = np.sort(self._levels[h], kind="stable")
            even = items.size - items.size % 2
            coin = _splitmix64_int((h << 32) ^ self._compactions[h]) & 1
            self._compactions[h] += 1
            if h + 1 == len(self._levels):
                self._levels.append(np.empty(0))
                self._compactions.append(0)
                caps = self._capacities()
            self._levels[h] = items[even:]
            self._levels[h + 1] = np.concatenate([self._levels[h + 1], items[coin:even:2]])

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


def _round_items(v: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Round finite values to 28 mantissa bits (relative precision 4e-9), to nearest.

    Sketch items need far less precision than their ~0.5% rank error, and a 40-bit item packs
    into 5 bytes; rounding on insertion (not on writing) keeps a read-back sketch identical
    to the one written. Carrying into the exponent is correct IEEE rounding.
    """
    bits = v.view(np.uint64)
    half = np.uint64(1 << (_ITEM_DROP - 1))
    mask = np.uint64(_MASK64 ^ ((1 << _ITEM_DROP) - 1))
    rounded = ((bits + half) & mask).view(np.float64)
    return np.where(np.isfinite(v), rounded, v)


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


def json_num(x: Scalar | None) -> Scalar | str | None:
    """JSON has no NaN or infinity: write those as strings ("inf", "-inf", "nan")."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def num_json(x: Scalar | str | None) -> Any:
    return float(x) if isinstance(x, str) else x


# ---------------------------------------------------------------------------------------- top values


class TopK:
    """Mergeable heavy hitters (Misra-Gries with the merge of Agarwal et al. 2012), k = 64.

    Counts are lower bounds, short of the truth by at most `error`; with at most k distinct
    values they are exact (`error == 0`).
    """

    def __init__(self, k: int = _TOP_K) -> None:
        self.k = k
        self.counts: dict[str, int] = {}
        self.error = 0

    def add_counts(self, counts: dict[str, int]) -> None:
        """Fold in exact counts of some values (one batch's, or another summary's)."""
        merged = dict(self.counts)
        for key, c in counts.items():
            merged[key] = merged.get(key, 0) + c
        if len(merged) > self.k:
            threshold = sorted(merged.values(), reverse=True)[self.k]
            merged = {key: c - threshold for key, c in merged.items() if c > threshold}
            self.error += threshold
        self.counts = merged

    def merge(self, other: TopK) -> TopK:
        """The summary of both inputs together."""
        out = TopK(max(self.k, other.k))
        out.counts = dict(self.counts)
        out.error = self.error + other.error
        out.add_counts(other.counts)
        return out

    def top(self) -> list[tuple[str, int]]:
        """(value, count) pairs, most frequent first, ties by value."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
