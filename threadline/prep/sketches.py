"""The sketches behind table profiles: HyperLogLog (distinct counts) and top values, and the
hashing and JSON helpers they share with the KLL quantile sketch (`kll.py`).

Each is mergeable (the sketch of a union from the sketches of its parts), deterministic (no
global RNG: coins come from hashes, serialised state is sorted) and compact (zlib + base64 in
JSON). `profile.py` combines them into column and table profiles.
"""

from __future__ import annotations

import base64
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
_TOP_K = 64
# NumPy scalars made once: building one costs about as much as a ufunc call on a small array
_U = np.uint64
_SPLITMIX = (_U(0x9E3779B97F4A7C15), _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB))
_SHIFTS = (_U(1), _U(27), _U(30), _U(31), _U(_HLL_Q))
_LOW_Q = _U((1 << _HLL_Q) - 1)
_NEGATIVE_ZERO = _U(1 << 63)  # the bits of -0.0
#: per register floor f >= 2: the bits of a hash's low Q that must be 0 for its rank to exceed f
_ABOVE_FLOOR = tuple(_U(((1 << _HLL_Q) - 1) ^ ((1 << max(_HLL_Q - f, 0)) - 1)) for f in range(_HLL_Q + 1))


# ---------------------------------------------------------------------------------------- hashing


def _splitmix64(x: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Vectorised splitmix64 finaliser; uint64 arithmetic wraps, which is what the mix wants.

    In place on one fresh array and one scratch array: no temporary per operation.
    """
    add, mul1, mul2 = _SPLITMIX
    _, s27, s30, s31, _ = _SHIFTS
    z = x + add
    t = z >> s30
    z ^= t
    z *= mul1
    np.right_shift(z, s27, out=t)
    z ^= t
    z *= mul2
    np.right_shift(z, s31, out=t)
    z ^= t
    return z


def _splitmix64_int(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def hash_numbers(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """64-bit hashes of numbers: the value's 64-bit pattern mixed by splitmix64."""
    if values.dtype.kind == "f":
        # + 0.0 folds -0.0 into 0.0 so that equal numbers hash equally.
        bits = (values.astype(np.float64, copy=False) + 0.0).view(np.uint64)
    elif values.dtype.kind == "u":
        bits = values.astype(np.uint64, copy=False)
    else:
        bits = values.astype(np.int64, copy=False).view(np.uint64)
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
            merged = _union(self._sparse, hashes)
            if merged.size <= _HLL_SPARSE_MAX:
                self._sparse = merged
                return
            self._sparse = None
            self._registers = np.zeros(_HLL_M, dtype=np.uint8)
            hashes = merged
        assert self._registers is not None
        floor = int(self._registers.min())
        if floor > _HLL_Q:
            return
        if floor >= 2:
            # A hash raises a register only if its rank exceeds `floor`, every register's
            # value: only if its low Q bits are below 2^(Q - floor). Once the registers fill,
            # that is a small fraction of the batch, and the rest need no rank at all.
            hashes = hashes[(hashes & _ABOVE_FLOOR[floor]) == 0]
            if hashes.size == 0:
                return
        idx = (hashes >> _SHIFTS[4]).view(np.int64)  # < 2^10, so the view is exact
        np.maximum.at(self._registers, idx, _hll_rank(hashes))

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The sketch of the union of both inputs."""
        out = HyperLogLog()
        if self._sparse is not None and other._sparse is not None:
            out.add_hashes(_union(self._sparse, other._sparse))
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


def _union(
    a: np.ndarray[Any, np.dtype[np.uint64]], b: np.ndarray[Any, np.dtype[np.uint64]]
) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """`np.union1d(a, b)`, the sorted distinct values, by one vectorised sort.

    Several times faster than NumPy's hash-based unique on a batch of mostly repeated hashes.
    """
    s = np.sort(np.concatenate([a, b]))
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _hll_rank(hashes: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Each hash's register value: 1 + leading zeros of its low Q = 54 bits, at most Q + 1.

    With u the low 54 bits, that is 54 - floor(log2 u) for u >= 1 and 55 for u = 0. floor(log2)
    is read off the float64 exponent of u >> 1, which has at most 53 bits and so converts
    exactly (u itself could round up to the next power of two); the shift costs u = 1 its
    exponent, which the fix-up at the end restores.
    """
    u = hashes & _LOW_Q
    u >>= _SHIFTS[0]
    exponent = u.astype(np.float64).view(np.int64)
    exponent >>= 52  # biased: floor(log2 u) + 1022 for u >= 2, 0 for u < 2
    np.subtract(_HLL_Q + 1022, exponent, out=exponent)  # the rank, but 1076 for u < 2
    if int(exponent.max()) <= _HLL_Q:
        return exponent.astype(np.uint8)
    tiny = np.flatnonzero(exponent > _HLL_Q)
    low = hashes[tiny] & _LOW_Q
    exponent[tiny] = np.where(low == 1, _HLL_Q, _HLL_Q + 1)
    return exponent.astype(np.uint8)


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
