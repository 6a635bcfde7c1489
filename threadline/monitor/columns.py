"""Table-like inputs as Arrow, and one column as the flat values the binning needs.

Monitoring accepts what users hold: an Arrow table or record batch, a pandas DataFrame, or a
mapping of column name to numpy array / list. Everything is turned into a `pyarrow.Table`
once, then each column is read as float64 with NaN for nulls (numeric kinds) or as strings
(categorical kinds), without copying where Arrow allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument

Kind = Literal["numeric", "categorical"]


def as_table(data: Any) -> pa.Table:
    """An Arrow table from a table, record batch, pandas DataFrame or mapping of arrays.

    Raises:
        InvalidArgument: anything else (the message names the type received).
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, Mapping):
        try:
            return pa.table({str(k): _as_array(v) for k, v in data.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgument(f"cannot read the columns as a table: {exc}; pass arrays of "
                                  "equal length holding numbers or strings") from exc
    raise InvalidArgument(f"cannot summarise a {type(data).__name__}; pass a pyarrow Table, a "
                          "pandas DataFrame or a dict of column name -> numpy array")


def _as_array(values: Any) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return pa.array(arr, from_pandas=True)  # NaN stays a value; read back as null anyway
    if arr.dtype.kind == "O":
        return pa.array(arr.tolist())
    return pa.array(arr)


def kind_of(t: pa.DataType) -> Kind | None:
    """How a column of Arrow type `t` is binned: "numeric", "categorical", or None (skipped)."""
    if pa.types.is_dictionary(t):
        return kind_of(t.value_type)
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return "categorical"
    if pa.types.is_string_view(t):
        return "categorical"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_temporal(t):
        return "numeric"  # in the type's integer unit, as the data-preparation profile stores it
    return None


def numeric_values(column: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The column as float64, NaN for nulls (zero-copy for a float64 column without nulls)."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = pc.cast(column, t.value_type)
        t = t.value_type
    if pa.types.is_temporal(t):
        column = pc.cast(column, pa.int64())
    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64())
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    values: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(column.to_numpy(), dtype=np.float64)
    return values


def text_values(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as strings: booleans as "true"/"false" (as profiles count them)."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = pc.cast(column, t.value_type)
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        column = pc.cast(column, pa.string())
    return column


__all__ = ["Kind", "as_table", "kind_of", "numeric_values", "text_values"]
