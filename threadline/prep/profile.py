"""Table profiles: per-column statistics computed in one streaming pass, mergeable and compact.

A profile is what the monitoring layer later compares production traffic against, so three
properties matter more than anything else:

* **one pass**: `TableProfile.update` sees each Arrow `RecordBatch` once and keeps only
  bounded state (exact moments, a KLL quantile sketch, a HyperLogLog, a Misra-Gries summary);
* **mergeable**: `profile(A + B) == profile(A).merge(profile(B))` exactly for counts, nulls,
  min, max and distinct registers, up to float rounding for mean/std, and within the sketch
  error for quantiles and top values — so shards profiled in parallel combine;
* **deterministic**: no global RNG; the KLL compactor draws its coin from a hash of
  (level, compaction number), and serialisation sorts everything it stores, so the same
  input gives byte-identical JSON.

Serialised with the format id `threadline.profile/1`; a numeric column takes about 2 KiB.

Example:
    >>> import pyarrow as pa
    >>> table = pa.table({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]})
    >>> p = TableProfile.from_batches(table.to_batches())
    >>> p.columns["x"].mean, p.columns["c"].top
    (1.5, [('a', 2), ('b', 1)])
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import re
import zlib
from typing import TYPE_CHECKING, Any, Literal

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

FORMAT_ID = "threadline.profile/1"
SUMMARY_QUANTILES: tuple[float, ...] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)

Kind = Literal["numeric", "categorical", "boolean", "temporal", "other"]
Scalar = int | float

_MASK64 = (1 << 64) - 1
_HLL_P = 10  # 2^10 registers: standard error 1.04 / sqrt(1024) = 3.25%
_HLL_M = 1 << _HLL_P
_HLL_Q = 64 - _HLL_P
_HLL_SPARSE_MAX = 64  # below this many distinct hashes the set is kept exactly
_KLL_K = 128
_KLL_C = 2.0 / 3.0
_TOP_K = 64


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


def _hash_numbers(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """64-bit hashes of numbers: the value's 64-bit pattern mixed by splitmix64."""
    if values.dtype.kind == "f":
        # + 0.0 folds -0.0 into 0.0 so that equal numbers hash equally.
        bits = (values.astype(np.float64) + 0.0).view(np.uint64)
    elif values.dtype.kind == "u":
        bits = values.astype(np.uint64)
    else:
        bits = values.astype(np.int64).view(np.uint64)
    return _splitmix64(bits)


def _hash_bytes(values: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.uint64]]:
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

    def _capacity(self, h: int) -> int:
        depth = len(self._levels) - 1 - h
        return max(2, math.ceil(self.k * _KLL_C**depth))

    def _compress(self) -> None:
        # Lazy compaction (as in Apache DataSketches): only when the sketch as a whole is over
        # its budget, and then the lowest level that is at capacity; keeps more items, so
        # smaller error for the same space than compacting every full level at once.
        while sum(lv.size for lv in self._levels) > sum(self._capacity(h) for h in range(len(self._levels))):
            h = next(h for h, lv in enumerate(self._levels) if lv.size >= self._capacity(h))
            items = np.sort(self._levels[h])
            even = items.size - items.size % 2
            coin = _splitmix64_int((h << 32) ^ self._compactions[h]) & 1
            self._compactions[h] += 1
            if h + 1 == len(self._levels):
                self._levels.append(np.empty(0))
                self._compactions.append(0)
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
            "min": _json_num(self.min),
            "max": _json_num(self.max),
            "sizes": [int(lv.size) for lv in levels],
            "compactions": list(self._compactions),
            "items": _pack_items(np.concatenate(levels)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KLLSketch:
        """Rebuild a sketch written by `to_dict`."""
        out = cls(int(d["k"]))
        out.n = int(d["n"])
        out.min = _num_json(d["min"])
        out.max = _num_json(d["max"])
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


def _json_num(x: Scalar | None) -> Scalar | str | None:
    """JSON has no NaN or infinity: write those as strings ("inf", "-inf", "nan")."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _num_json(x: Scalar | str | None) -> Any:
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


# ---------------------------------------------------------------------------------------- columns


def _kind_of(t: pa.DataType) -> Kind:
    if pa.types.is_dictionary(t):
        return _kind_of(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_temporal(t):
        return "temporal"
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return "categorical"
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return "categorical"
    return "other"


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


class ColumnProfile:
    """Statistics of one column, built incrementally by `update` and combined by `merge`.

    Attributes:
        name: column name.
        type: Arrow type as a string (`"int64"`, `"timestamp[ns]"`, ...).
        kind: "numeric", "categorical", "boolean", "temporal" or "other".
        count: non-null values (NaN counts as null).
        nulls: null values, NaN included.
        nans: NaN values among `nulls` (float columns only).
        min, max: extremes (numeric/temporal; temporal in the type's integer unit).
        length_min, length_max: string/binary lengths (characters for text, bytes for binary).
        quantiles: the KLL sketch (numeric/temporal), with `quantile(q)` and `summary()`.
    """

    def __init__(self, name: str, type: str, kind: Kind) -> None:
        self.name = name
        self.type = type
        self.kind: Kind = kind
        self.count = 0
        self.nulls = 0
        self.nans = 0
        self.min: Scalar | None = None
        self.max: Scalar | None = None
        self._mean = 0.0
        self._m2 = 0.0
        self.length_min: int | None = None
        self.length_max: int | None = None
        self._length_sum = 0
        numeric = kind in ("numeric", "temporal")
        self.quantiles: KLLSketch | None = KLLSketch() if numeric else None
        self._hll: HyperLogLog | None = (
            HyperLogLog() if kind in ("numeric", "temporal", "categorical") else None
        )
        self._top: TopK | None = TopK() if kind in ("categorical", "boolean") else None

    # -- derived values

    @property
    def mean(self) -> float | None:
        """Arithmetic mean of the non-null values (None without any)."""
        return self._mean if self.count and self.kind in ("numeric", "temporal") else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (ddof=0) of the non-null values."""
        if not self.count or self.kind not in ("numeric", "temporal"):
            return None
        return math.sqrt(max(self._m2, 0.0) / self.count)

    @property
    def distinct(self) -> int | None:
        """Estimated distinct non-null values (exact below 64; ~3% error beyond)."""
        if self._hll is not None:
            return self._hll.estimate()
        if self._top is not None:
            return sum(1 for c in self._top.counts.values() if c > 0)
        return None

    @property
    def top(self) -> list[tuple[str, int]] | None:
        """Up to 64 most frequent values with (lower-bound) counts, most frequent first."""
        return self._top.top() if self._top is not None else None

    @property
    def length_mean(self) -> float | None:
        """Mean string/binary length (None for other kinds or without values)."""
        return self._length_sum / self.count if self.length_min is not None and self.count else None

    # -- building

    def update(self, chunk: pa.Array) -> None:
        """Add one batch's column."""
        nulls = chunk.null_count
        if pa.types.is_dictionary(chunk.type) and self.kind != "categorical":
            chunk = chunk.dictionary_decode()
        if self.kind == "numeric" or self.kind == "temporal":
            values = self._numbers(chunk)
            nans = 0
            if values.dtype.kind == "f":
                isnan = np.isnan(values)
                nans = int(isnan.sum())
                values = values[~isnan]
            self.nans += nans
            self.nulls += nulls + nans
            self._add_numbers(values)
        elif self.kind == "categorical":
            self.nulls += nulls
            self._add_categories(chunk)
        elif self.kind == "boolean":
            self.nulls += nulls
            trues = int(pc.sum(chunk).as_py() or 0)
            falses = len(chunk) - nulls - trues
            self.count += trues + falses
            assert self._top is not None
            self._top.add_counts({k: c for k, c in (("true", trues), ("false", falses)) if c})
        else:
            self.nulls += nulls
            self.count += len(chunk) - nulls

    def _numbers(self, chunk: pa.Array) -> np.ndarray[Any, Any]:
        t = chunk.type
        if pa.types.is_temporal(t):
            chunk = chunk.view(pa.int32() if t.bit_width == 32 else pa.int64())
        elif pa.types.is_decimal(t) or pa.types.is_float16(t):
            chunk = pc.cast(chunk, pa.float64())
        if chunk.null_count:
            chunk = pc.drop_null(chunk)
        return np.asarray(chunk.to_numpy(zero_copy_only=False))

    def _add_numbers(self, values: np.ndarray[Any, Any]) -> None:
        if values.size == 0:
            return
        floats = values.astype(np.float64)
        n_b = int(values.size)
        with np.errstate(invalid="ignore", over="ignore"):  # infinities give inf/NaN moments, not warnings
            mean_b = float(floats.mean())
            m2_b = float(((floats - mean_b) ** 2).sum())
        self._combine_moments(n_b, mean_b, m2_b)
        lo, hi = values.min().item(), values.max().item()
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        assert self.quantiles is not None
        assert self._hll is not None
        self.quantiles.update(floats)
        self._hll.add_hashes(_hash_numbers(values))

    def _combine_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        """Chan et al.'s parallel Welford update: exact up to float rounding, order-free."""
        n_a = self.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", over="ignore"):
            delta = mean_b - self._mean
            self._mean += delta * n_b / n
            self._m2 += m2_b + delta * delta * n_a * n_b / n
        self.count = n

    def _add_categories(self, chunk: pa.Array) -> None:
        t = chunk.type
        if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
            chunk = pc.cast(chunk, pa.large_string() if pa.types.is_string_view(t) else pa.large_binary())
        encoded = chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)
        dictionary: pa.Array = encoded.dictionary
        indices = pc.drop_null(encoded.indices).to_numpy(zero_copy_only=False)
        counts = np.bincount(indices.astype(np.intp), minlength=len(dictionary))
        if dictionary.null_count:  # a null inside the dictionary is a null row too
            in_dict_nulls = ~np.asarray(dictionary.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            self.nulls += int(counts[in_dict_nulls].sum())
            counts[in_dict_nulls] = 0
        present = np.flatnonzero(counts)
        if present.size == 0:
            return
        dictionary = dictionary.take(pa.array(present))
        counts = counts[present]
        self.count += int(counts.sum())
        text = _is_text(dictionary.type)
        # Hash and measure each distinct value once per batch, not each row.
        raw: list[bytes] = [v.encode() if text else v for v in dictionary.to_pylist()]
        assert self._hll is not None
        assert self._top is not None
        self._hll.add_hashes(_hash_bytes(raw))
        lengths = (pc.utf8_length(dictionary) if text else pc.binary_length(dictionary)).to_numpy()
        lengths = lengths.astype(np.int64)
        self._length_sum += int(np.dot(lengths, counts))
        lo, hi = int(lengths.min()), int(lengths.max())
        self.length_min = lo if self.length_min is None else min(self.length_min, lo)
        self.length_max = hi if self.length_max is None else max(self.length_max, hi)
        # Only the k+1 largest batch counts and the keys already held can survive the merge.
        keep = np.argsort(-counts, kind="stable")[: self._top.k + 1]
        held = {_key(raw[i], text): i for i in range(len(raw))} if len(self._top.counts) else {}
        batch = {_key(raw[i], text): int(counts[i]) for i in keep.tolist()}
        for key in self._top.counts:
            if key in held:
                batch[key] = int(counts[held[key]])
        self._top.add_counts(batch)

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of both inputs together (same name, type and kind required)."""
        if (self.name, self.type) != (other.name, other.type):
            raise InvalidArgument(
                f"cannot merge profiles: column {self.name!r} is {self.type} in one and "
                f"{other.name!r} is {other.type} in the other; cast both to one schema first"
            )
        out = ColumnProfile(self.name, self.type, self.kind)
        out.count, out._mean, out._m2 = self.count, self._mean, self._m2
        if other.count:
            out._combine_moments(other.count, other._mean, other._m2)
        out.count = self.count + other.count
        out.nulls = self.nulls + other.nulls
        out.nans = self.nans + other.nans
        out.min = _opt(min, self.min, other.min)
        out.max = _opt(max, self.max, other.max)
        out.length_min = _opt(min, self.length_min, other.length_min)
        out.length_max = _opt(max, self.length_max, other.length_max)
        out._length_sum = self._length_sum + other._length_sum
        if self.quantiles is not None and other.quantiles is not None:
            out.quantiles = self.quantiles.merge(other.quantiles)
        if self._hll is not None and other._hll is not None:
            out._hll = self._hll.merge(other._hll)
        if self._top is not None and other._top is not None:
            out._top = self._top.merge(other._top)
        return out

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; `distinct` and `std` are for readers only (rebuilt from the sketches)."""
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "distinct": self.distinct,
        }
        if self.nans:
            d["nans"] = self.nans
        if self.quantiles is not None:
            d.update(
                min=_json_num(self.min),
                max=_json_num(self.max),
                mean=_json_num(self.mean),
                std=_json_num(self.std),
                m2=_json_num(self._m2),
                kll=self.quantiles.to_dict(),
            )
        if self._hll is not None:
            d["hll"] = self._hll.to_dict()
        if self._top is not None:
            d["top"] = [list(kv) for kv in self._top.top()]
            d["top_error"] = self._top.error
        if self.length_min is not None:
            d["length"] = {"min": self.length_min, "max": self.length_max, "sum": self._length_sum}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        """Rebuild a column profile written by `to_dict`."""
        kind = d["kind"]
        if kind not in ("numeric", "categorical", "boolean", "temporal", "other"):
            raise InvalidArgument(f"profile column {d.get('name')!r} has unknown kind {kind!r}")
        out = cls(str(d["name"]), str(d["type"]), kind)
        out.count, out.nulls, out.nans = int(d["count"]), int(d["nulls"]), int(d.get("nans", 0))
        if "kll" in d:
            out.min, out.max = _num_json(d["min"]), _num_json(d["max"])
            out._mean = float(_num_json(d["mean"]) or 0.0)
            out._m2 = float(_num_json(d["m2"]) or 0.0)
            out.quantiles = KLLSketch.from_dict(d["kll"])
        if "hll" in d:
            out._hll = HyperLogLog.from_dict(d["hll"])
        if out._top is not None:
            out._top.counts = {str(k): int(c) for k, c in d.get("top", [])}
            out._top.error = int(d.get("top_error", 0))
        if "length" in d:
            length = d["length"]
            out.length_min, out.length_max = int(length["min"]), int(length["max"])
            out._length_sum = int(length["sum"])
        return out


def _key(raw: bytes | str, text: bool) -> str:
    """Top-value keys are strings: text as is, binary as hex."""
    if isinstance(raw, bytes):
        return raw.decode() if text else raw.hex()
    return raw


def _opt(f: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)


# ---------------------------------------------------------------------------------------- tables


class TableProfile:
    """Profile of a table: row count and one `ColumnProfile` per column, in schema order.

    Example:
        >>> import pyarrow as pa
        >>> a = TableProfile.from_batches(pa.table({"x": [1, 2]}).to_batches())
        >>> b = TableProfile.from_batches(pa.table({"x": [3]}).to_batches())
        >>> merged = a.merge(b)
        >>> merged.rows, merged.columns["x"].max
        (3, 3)
    """

    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, ColumnProfile] = {}
        self._schema_seen = False

    @classmethod
    def of_columns(cls, rows: int, columns: dict[str, ColumnProfile]) -> TableProfile:
        """A table's profile assembled from column profiles of the same `rows` rows."""
        out = cls()
        out.rows = rows
        out.columns = dict(columns)
        out._schema_seen = True
        return out

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch]) -> TableProfile:
        """Profile a stream of record batches in one pass."""
        out = cls()
        for batch in batches:
            out.update(batch)
        return out

    @classmethod
    def from_table(cls, table: pa.Table) -> TableProfile:
        """Profile an in-memory Arrow table (its batches, in order)."""
        out = cls.from_batches(table.to_batches())
        if not out._schema_seen:  # a table with no batches still has columns
            out._init_schema(table.schema)
        return out

    def _init_schema(self, schema: pa.Schema) -> None:
        self.columns = {f.name: ColumnProfile(f.name, str(f.type), _kind_of(f.type)) for f in schema}
        self._schema_seen = True

    def update(self, batch: pa.RecordBatch) -> None:
        """Add one record batch; its schema must match the earlier batches'.

        Raises:
            InvalidArgument: a column is missing, extra, or has another type.
        """
        if not self._schema_seen:
            self._init_schema(batch.schema)
        else:
            self._check_schema({f.name: str(f.type) for f in batch.schema}, "the batch")
        self.rows += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            self.columns[name].update(column)

    def _check_schema(self, other: dict[str, str], what: str) -> None:
        mine = {name: col.type for name, col in self.columns.items()}
        for name in sorted(mine.keys() ^ other.keys()):
            where = "the profile" if name in mine else what
            raise InvalidArgument(
                f"schema mismatch: column {name!r} is only in {where}; "
                "profile tables with the same columns, or select the common columns first"
            )
        for name in mine:
            if mine[name] != other[name]:
                raise InvalidArgument(
                    f"schema mismatch: column {name!r} is {mine[name]} in the profile but {other[name]} "
                    f"in {what}; cast to one type first"
                )

    def merge(self, other: TableProfile) -> TableProfile:
        """The profile of both tables together; neither input changes.

        Raises:
            InvalidArgument: the column names or types differ (the message names the column).
        """
        if not other._schema_seen:
            return TableProfile.from_dict(self.to_dict())
        if not self._schema_seen:
            return TableProfile.from_dict(other.to_dict())
        self._check_schema({name: col.type for name, col in other.columns.items()}, "the other profile")
        out = TableProfile()
        out._schema_seen = True
        out.rows = self.rows + other.rows
        out.columns = {name: col.merge(other.columns[name]) for name, col in self.columns.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form tagged with the format id `threadline.profile/1`."""
        return {
            "format": FORMAT_ID,
            "rows": self.rows,
            "columns": [col.to_dict() for col in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableProfile:
        """Rebuild a profile written by `to_dict`.

        Raises:
            InvalidArgument: the format id is not one this version reads.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt != FORMAT_ID:
            raise InvalidArgument(
                f"unknown profile format {fmt!r}; this version of threadline reads {FORMAT_ID!r} "
                "(upgrade threadline, or recompute the profile)"
            )
        out = cls()
        out.rows = int(d["rows"])
        out.columns = {c["name"]: ColumnProfile.from_dict(c) for c in d["columns"]}
        out._schema_seen = bool(out.columns) or out.rows > 0
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal profiles give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TableProfile:
        """Rebuild a profile from `to_json` output."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return f"TableProfile(rows={self.rows}, columns={list(self.columns)})"

    def _repr_html_(self) -> str:
        head = ["column", "kind", "count", "nulls", "distinct", "min", "max", "mean", "top values"]
        rows = []
        for col in self.columns.values():
            top = ", ".join(f"{k} ({c})" for k, c in (col.top or [])[:3])
            cells = [
                col.name,
                col.kind,
                col.count,
                col.nulls,
                col.distinct,
                _show(col.min, col),
                _show(col.max, col),
                _fmt(col.mean),
                top,
            ]
            rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
        header = "".join(f"<th>{h}</th>" for h in head)
        caption = f"<caption>Profile: {self.rows} rows, {len(self.columns)} columns</caption>"
        return f"<table>{caption}<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_UNIT = re.compile(r"^(timestamp|duration|date64|date32)\[(s|ms|us|ns|day)")


def _show(value: Scalar | None, col: ColumnProfile) -> str:
    """Temporal extremes are stored as integers in the type's unit; show them as dates."""
    if value is None or col.kind != "temporal" or not isinstance(value, int):
        return _fmt(value)
    m = _UNIT.match(col.type)
    if m is None:
        return str(value)
    unit: Any = "D" if m.group(2) == "day" else m.group(2)
    if m.group(1) == "duration":
        return str(np.timedelta64(value, unit))
    return str(np.datetime64(value, unit))


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


__all__ = [
    "FORMAT_ID",
    "SUMMARY_QUANTILES",
    "ColumnProfile",
    "HyperLogLog",
    "KLLSketch",
    "TableProfile",
    "TopK",
]
