"""Arrow arrays as NumPy arrays, without pyarrow's own conversion.

pyarrow's `Array.to_numpy`, and turning any Python value into an Arrow scalar (as
`pc.fill_null(array, 0)` does), import pandas on first use: about 0.3 s of every `prep`
command that profiles, hashes or splits, spent with the GIL held. Booleans and numbers are
read from the array's buffers instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["arrow_mask", "arrow_of", "arrow_scalar", "numpy_filled", "numpy_of"]


def numpy_of(array: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A boolean or numeric Arrow array as a NumPy array: a read-only view of its numbers, or
    its unpacked booleans; arrays with nulls (and other types) go through pyarrow."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count == 0 and _plain(array.type):
        return _values(array)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def numpy_filled(array: pa.Array, fill: Any) -> np.ndarray[Any, Any]:
    """A boolean or numeric Arrow array as a NumPy array with its nulls replaced by `fill`
    (what `pc.fill_null(array, fill)` gives, read the same way as `numpy_of`)."""
    if array.null_count == 0 or not _plain(array.type):
        return numpy_of(array if array.null_count == 0 else pc.fill_null(array, fill))
    values = _values(array).copy()
    valid = _bits(array.buffers()[0], array.offset, len(array))
    values[~valid] = fill
    return values


def arrow_mask(mask: np.ndarray[Any, Any]) -> pa.BooleanArray:
    """A NumPy boolean mask as an Arrow boolean array (for `filter`), built from packed bits:
    `pa.array(mask)` imports pandas."""
    flags = np.asarray(mask, dtype=np.bool_)
    bits = np.packbits(flags, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, pa.py_buffer(bits)])


def arrow_of(values: np.ndarray[Any, Any]) -> pa.Array:
    """A 1-D NumPy array of numbers as an Arrow array sharing its memory (`pa.array` imports pandas)."""
    data = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(data.dtype), len(data), [None, pa.py_buffer(data)])


def arrow_scalar(value: Any, type: pa.DataType | None = None) -> pa.Scalar:
    """`pa.scalar(value, type)` for None, bool, int and float, built without importing pandas;
    other values (text, dates...) go through `pa.scalar`."""
    if value is None:
        return pa.nulls(1, type if type is not None else pa.null())[0]
    if isinstance(value, bool):
        scalar = arrow_mask(np.array([value]))[0]
    elif isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        scalar = arrow_of(np.array([value], np.int64))[0]
    elif isinstance(value, float):
        scalar = arrow_of(np.array([value], np.float64))[0]
    else:
        return pa.scalar(value, type)
    return scalar if type is None else scalar.cast(type)


def _plain(t: pa.DataType) -> bool:
    return bool(pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t))


def _values(array: pa.Array) -> np.ndarray[Any, Any]:
    """The data buffer as NumPy (what sits in null slots is unspecified)."""
    data = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        return _bits(data, array.offset, len(array))
    dtype = np.dtype(array.type.to_pandas_dtype())
    if data is None:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype=dtype, count=array.offset + len(array))[array.offset:]


def _bits(buffer: pa.Buffer | None, offset: int, length: int) -> np.ndarray[Any, Any]:
    """`length` bits of an Arrow bitmap from `offset`, as booleans."""
    if buffer is None:
        return np.zeros(length, np.bool_)
    packed = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(packed, count=offset + length, bitorder="little")[offset:].view(np.bool_)

