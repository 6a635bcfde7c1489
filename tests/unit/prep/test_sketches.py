"""The sketches' fast paths against the plain algorithms they replace: same bits, not just close."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from threadline.prep.kll import KLLSketch, _round_items, _stable_sorted
from threadline.prep.profile import TableProfile
from threadline.prep.sketches import (
    _HLL_M,
    _HLL_Q,
    HyperLogLog,
    _hll_rank,
    _splitmix64_int,
    _union,
    hash_bytes,
    hash_numbers,
)

# ---------------------------------------------------------------------------------------- references


def _reference_compress(sketch: KLLSketch) -> None:
    """KLL compaction as first written: every compacted level stably sorted from scratch."""
    caps = sketch._capacities()
    while sum(lv.size for lv in sketch._levels) > sum(caps):
        h = next(h for h, lv in enumerate(sketch._levels) if lv.size >= caps[h])
        items = np.sort(sketch._levels[h], kind="stable")
        even = items.size - items.size % 2
        coin = _splitmix64_int((h << 32) ^ sketch._compactions[h]) & 1
        sketch._compactions[h] += 1
        if h + 1 == len(sketch._levels):
            sketch._levels.append(np.empty(0))
            sketch._compactions.append(0)
            caps = sketch._capacities()
        sketch._levels[h] = items[even:]
        sketch._levels[h + 1] = np.concatenate([sketch._levels[h + 1], items[coin:even:2]])


def _reference_update(sketch: KLLSketch, values: np.ndarray[Any, Any]) -> None:
    if values.size == 0:
        return
    v = values.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    v = np.where(np.isfinite(v), _round_items(v, nan=False), v)
    sketch.min = lo if sketch.min is None else min(sketch.min, lo)
    sketch.max = hi if sketch.max is None else max(sketch.max, hi)
    sketch.n += int(v.size)
    sketch._levels[0] = np.concatenate([sketch._levels[0], v])
    _reference_compress(sketch)


def _reference_registers(hashes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """HyperLogLog registers by counting leading zeros with bit smearing and a popcount."""
    registers = np.zeros(_HLL_M, dtype=np.uint8)
    idx = (hashes >> np.uint64(_HLL_Q)).astype(np.intp)
    s = hashes << np.uint64(64 - _HLL_Q)
    for shift in (1, 2, 4, 8, 16, 32):
        s |= s >> np.uint64(shift)
    rank = np.minimum(64 - np.bitwise_count(s).astype(np.int64) + 1, _HLL_Q + 1).astype(np.uint8)
    np.maximum.at(registers, idx, rank)
    return registers


def _same_levels(a: KLLSketch, b: KLLSketch) -> None:
    assert a._compactions == b._compactions
    assert [lv.tobytes() for lv in a._levels] == [lv.tobytes() for lv in b._levels]
    assert (a.n, a.min, a.max) == (b.n, b.min, b.max)


def _awkward(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    """Floats with both zeros, infinities and long runs of duplicates."""
    v = rng.normal(size=n)
    v[rng.random(n) < 0.05] = 0.0
    v[rng.random(n) < 0.05] = -0.0
    v[rng.random(n) < 0.01] = np.inf
    v[rng.random(n) < 0.01] = -np.inf
    v[rng.random(n) < 0.2] = 1.5
    return v


# ---------------------------------------------------------------------------------------- KLL


@pytest.mark.parametrize("batch", [1, 7, 100, 1_000, 13_500, 40_000])
@pytest.mark.parametrize("shape", ["random", "sorted", "reversed", "awkward", "few"])
def test_one_sort_cascade_keeps_the_items_of_the_step_by_step_cascade(batch: int, shape: str) -> None:
    rng = np.random.default_rng(batch)
    n = min(200 * batch, 300_000)
    values = {
        "random": rng.random(n),
        "sorted": np.arange(n, dtype=np.float64),
        "reversed": np.arange(n, 0, -1, dtype=np.float64),
        "awkward": _awkward(rng, n),
        "few": rng.integers(0, 5, n).astype(np.float64),
    }[shape]
    fast, slow = KLLSketch(), KLLSketch()
    for start in range(0, n, batch):
        fast.update(values[start : start + batch])
        _reference_update(slow, values[start : start + batch])
        _same_levels(fast, slow)
    assert fast.to_dict() == slow.to_dict()


def test_merge_cascade_matches_the_step_by_step_cascade() -> None:
    rng = np.random.default_rng(5)
    parts = []
    for batch in (3, 500, 20_000):
        sketch = KLLSketch()
        for _ in range(20):
            sketch.update(_awkward(rng, batch))
        parts.append(sketch)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    slow = _reference_merge(_reference_merge(parts[0], parts[1]), parts[2])
    assert merged._compactions == slow._compactions
    assert [lv.tobytes() for lv in merged._levels] == [lv.tobytes() for lv in slow._levels]


def _reference_merge(x: KLLSketch, y: KLLSketch) -> KLLSketch:
    out = KLLSketch()
    out.n, out.min, out.max = x.n + y.n, min(x.min or 0, y.min or 0), max(x.max or 0, y.max or 0)
    depth = max(len(x._levels), len(y._levels))
    out._levels = [np.concatenate([s._levels[h] for s in (x, y) if h < len(s._levels)]) for h in range(depth)]
    out._compactions = [
        sum(s._compactions[h] for s in (x, y) if h < len(s._compactions)) for h in range(depth)
    ]
    _reference_compress(out)
    return out


def test_levels_do_not_keep_a_batch_alive() -> None:
    sketch = KLLSketch()
    for _ in range(5):
        sketch.update(np.random.default_rng(1).random(50_000))
    assert all(level.base is None for level in sketch._levels)
    assert sum(level.nbytes for level in sketch._levels) < 8 * 1_000


@pytest.mark.parametrize("n", [0, 1, 2, 5, 1_000, 20_000])
def test_stable_sorted_is_the_stable_sort_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    cases = [_awkward(rng, n), rng.random(n), np.zeros(n), -np.zeros(n), np.sort(_awkward(rng, n))]
    nan = rng.random(n)
    nan[::3] = np.nan
    cases.append(nan)
    for a in cases:
        assert _stable_sorted(a).tobytes() == np.sort(a, kind="stable").tobytes()


# ---------------------------------------------------------------------------------------- HyperLogLog

_EDGES = np.array(
    [0, 1, 2, 3, (1 << 64) - 1, (1 << 53) - 1, 1 << 53, (1 << 53) + 1, (1 << 54) - 2, (1 << 54) - 1]
    + [1 << i for i in range(64)]
    + [(1 << i) - 1 for i in range(1, 65)],
    dtype=np.uint64,
)


def test_register_ranks_match_the_leading_zero_count_on_edge_hashes() -> None:
    rng = np.random.default_rng(0)
    top = rng.integers(0, _HLL_M, _EDGES.size).astype(np.uint64) << np.uint64(_HLL_Q)
    for hashes in (_EDGES, _EDGES | top, _EDGES & np.uint64((1 << _HLL_Q) - 1)):
        batch = np.concatenate([hashes, rng.integers(0, 1 << 63, 100).astype(np.uint64)])
        sketch = HyperLogLog()
        sketch.add_hashes(batch)
        assert sketch._registers is not None
        assert np.array_equal(sketch._registers, _reference_registers(batch))
    low = _EDGES & np.uint64((1 << _HLL_Q) - 1)
    expected = [_HLL_Q + 1 if u == 0 else _HLL_Q - int(u).bit_length() + 1 for u in low.tolist()]
    assert _hll_rank(_EDGES).tolist() == expected


@pytest.mark.parametrize("batches", [1, 10, 200])
def test_registers_equal_the_reference_over_many_batches(batches: int) -> None:
    """Also once every register is at least 2, when most hashes are skipped unranked."""
    rng = np.random.default_rng(batches)
    sketch = HyperLogLog()
    seen = []
    for i in range(batches):
        hashes = hash_numbers(rng.integers(0, 1 << 62, 5_000))
        if i % 7 == 0:
            hashes = np.concatenate([hashes, _EDGES])
        sketch.add_hashes(hashes)
        seen.append(hashes)
    assert sketch._registers is not None
    assert np.array_equal(sketch._registers, _reference_registers(np.concatenate(seen)))
    if batches == 200:
        assert sketch._registers.min() >= 2  # the skipping path ran


def test_sparse_union_and_edges() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 50, 1_000).astype(np.uint64)
    b = np.concatenate([_EDGES, a[:10]])
    assert np.array_equal(_union(a, b), np.union1d(a, b))
    assert np.array_equal(_union(a[:0], b[:1]), b[:1])
    small = HyperLogLog()
    small.add_hashes(_EDGES[:40])
    small.add_hashes(_EDGES[:40])
    assert small.estimate() == len(set(_EDGES[:40].tolist()))  # exact while sparse


def test_numbers_hash_the_same_in_every_dtype_path() -> None:
    ints = np.array([0, -1, 5, 1 << 62], dtype=np.int64)
    assert np.array_equal(hash_numbers(ints.astype(np.int32)[:3]), hash_numbers(ints[:3]))
    assert np.array_equal(hash_numbers(np.array([0.0, -0.0])), hash_numbers(np.array([0.0, 0.0])))
    values = np.array([1, 2], dtype=np.uint64)
    hash_numbers(values)
    assert values.tolist() == [1, 2]  # inputs are not mixed in place


def test_categorical_distinct_sketch_ignores_the_already_hashed_cache() -> None:
    """Values seen in an earlier batch are not hashed again; the registers are as if they were."""
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    rows = [words[i] for i in rng.integers(0, 300, 20_000)]
    profile = TableProfile.from_batches(pa.table({"c": rows}).to_batches(max_chunksize=999))
    column = profile.columns["c"]
    reference = HyperLogLog()
    reference.add_hashes(hash_bytes([w.encode() for w in sorted(set(rows))]))
    assert column._hll is not None
    assert column._hll.to_dict() == reference.to_dict()
    assert column.distinct == reference.estimate()


def test_only_short_categorical_values_are_remembered_as_hashed() -> None:
    rows = ["x" * 1_000, "y" * 1_000, "short", "short"]
    profile = TableProfile.from_batches(pa.table({"c": rows}).to_batches(max_chunksize=2))
    column = profile.columns["c"]
    assert column._hashed == {"short"}
    assert column.distinct == 3
