"""Stable 64-bit hashes of Arrow values and rows, shared by the split and de-duplication steps.

A value's hash does not depend on the batch it sits in or on the integer width that stores it,
so a row keeps its hash as a table grows, is re-batched or re-read: what makes hash splits
stable across data versions and duplicate detection exact across batches. Numbers are mixed
with splitmix64 (vectorised in numpy); strings and binaries hash their bytes with BLAKE3 once
per distinct value in a batch. Nulls share one fixed hash, so null keys equal each other.
"""

from __future__ import annotations

from typing import cast

import blake3
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument
from threadline.prep.arrays import numpy_filled, numpy_of

U64 = npt.NDArray[np.uint64]
MASK64 = (1 << 64) - 1
#: the hash of every null ("nullnull")
NULL_HASH = np.uint64(0x6E756C6C6E756C6C)


def mix(x: U64) -> U64:
    """The splitmix64 finalizer: a bijection of uint64 with good avalanche (wraps on purpose)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return cast("U64", z ^ (z >> np.uint64(31)))


def seed_key(seed: int) -> np.uint64:
    """The starting hash for a seed."""
    return np.uint64(mix(np.array([seed & MASK64], dtype=np.uint64))[0])


def text_type(dtype: pa.DataType) -> bool:
    """Whether `dtype` is a (large) string."""
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def binary_type(dtype: pa.DataType) -> bool:
    """Whether `dtype` is a (large or fixed-size) binary."""
    return bool(pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)
                or pa.types.is_fixed_size_binary(dtype))


def hashable_type(dtype: pa.DataType) -> bool:
    """Whether `column_hash` supports values of `dtype`."""
    if pa.types.is_dictionary(dtype):
        return hashable_type(dtype.value_type)
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_temporal(dtype)
        or text_type(dtype)
        or binary_type(dtype)
    )


def null_mask(arr: pa.Array) -> npt.NDArray[np.bool_]:
    """True where `arr` is null."""
    return cast("npt.NDArray[np.bool_]", numpy_of(pc.is_null(arr)))


def take_hashes(unique_hashes: U64, indices: pa.Array) -> U64:
    """Hashes of dictionary-encoded values: the unique values' hashes taken by index."""
    if len(unique_hashes) == 0:  # an all-null array has an empty dictionary
        return np.full(len(indices), NULL_HASH, dtype=np.uint64)
    out = unique_hashes[numpy_filled(indices, 0).astype(np.intp)]
    if indices.null_count:
        out[null_mask(indices)] = NULL_HASH
    return cast("U64", out)


def column_hash(arr: pa.Array) -> U64:
    """A 64-bit hash per value that does not depend on the batch it sits in.

    Integers of any width hash their value (int32 5 == int64 5), floats their float64 bits
    (-0.0 as 0.0, every NaN alike), temporals their stored integer, strings and binaries the
    BLAKE3 of their bytes.
    """
    dtype = arr.type
    if pa.types.is_dictionary(dtype):
        return take_hashes(column_hash(arr.dictionary), arr.indices)
    if text_type(dtype) or binary_type(dtype):
        encoded = pc.dictionary_encode(arr)
        uniques = [
            int.from_bytes(blake3.blake3(v if isinstance(v, bytes) else v.encode()).digest(8), "little")
            for v in encoded.dictionary.to_pylist()
        ]
        return take_hashes(np.array(uniques, dtype=np.uint64), encoded.indices)
    if pa.types.is_floating(dtype):
        values = numpy_filled(arr.cast(pa.float64()), 0.0) + 0.0
        bits = np.where(np.isnan(values), np.nan, values).view(np.uint64)
    elif pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        ints = arr.cast(pa.uint8()) if pa.types.is_boolean(dtype) else arr
        bits = numpy_filled(ints, 0).astype(np.uint64)
    elif pa.types.is_temporal(dtype):
        width = pa.int32() if dtype.bit_width == 32 else pa.int64()
        bits = numpy_filled(arr.view(width), 0).astype(np.uint64)
    else:
        raise InvalidArgument(f"cannot hash values of type {dtype}")
    hashed = mix(bits)
    if arr.null_count:
        hashed[null_mask(arr)] = NULL_HASH
    return hashed


def key_hashes(batch: pa.RecordBatch, columns: list[str] | tuple[str, ...], seed: int) -> U64:
    """Each row's hash over `columns`, mixed in order into a seeded starting hash."""
    h = np.full(batch.num_rows, seed_key(seed), dtype=np.uint64)
    for name in columns:
        h = mix(h ^ column_hash(batch.column(name)))
    return h


class HashSet:
    """A set of uint64 hashes as sorted, disjoint arrays whose sizes at least double down the
    list (merged like a binary counter): membership costs O(log^2 n) per value, memory 8 bytes
    per value. Used to find repeated keys (de-duplication, uniqueness) across a whole table."""

    def __init__(self) -> None:
        self._runs: list[U64] = []
        self.size = 0

    def contains(self, values: U64) -> npt.NDArray[np.bool_]:
        """For each value, whether the set holds it."""
        found = np.zeros(len(values), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[at] == values
        return found

    def add(self, new: U64) -> None:
        """Add sorted, distinct values none of which are in the set yet."""
        if len(new) == 0:
            return
        self.size += len(new)
        self._runs.append(new)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            top = self._runs.pop()
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], top]))
