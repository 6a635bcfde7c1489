"""`Inputs`: one request's rows after decoding, whatever protocol they came in.

Every protocol decoder produces one, the signature check reads one, the micro-batcher joins
several into one model call, and the result cache keys on its canonical bytes. A table is kept
as columns of plain Python values (cheap to decode from JSON, cheap to join, and turned into
one NumPy matrix for the model without a DataFrame when every column is numeric); a tensor is
kept as a NumPy array with rows first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(slots=True)
class Inputs:
    """Decoded request rows: `columns` for a table, `tensor` for an array, never both.

    Attributes:
        columns: column name -> one value per row, in the request's column order.
        tensor: a NumPy array whose first axis is the rows.
        rows: how many rows.
        matrix: a table's values as one float64 matrix, rows first, its columns in the order
            of `columns`, when the decoder built it on the way (every column a float column);
            a model taking those columns in that order is given it as is. It never differs
            from `columns`.
    """

    columns: dict[str, list[Any]] | None = None
    tensor: np.ndarray[Any, Any] | None = None
    rows: int = 0
    matrix: np.ndarray[Any, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def table(cls, columns: dict[str, list[Any]]) -> Inputs:
        """A table from columns of equal length (the caller checked the lengths)."""
        rows = len(next(iter(columns.values()))) if columns else 0
        return cls(columns=columns, rows=rows)

    @classmethod
    def array(cls, tensor: np.ndarray[Any, Any]) -> Inputs:
        """A tensor; a 0-d or 1-d array is one row."""
        if tensor.ndim < 2:
            tensor = tensor.reshape(1, -1)
        return cls(tensor=tensor, rows=int(tensor.shape[0]))

    def cache_key(self) -> bytes:
        """Bytes that are equal exactly when two inputs are the same rows in the same order
        (column order does not matter; a column's values and types do)."""
        if self.columns is not None:
            return b"c" + orjson.dumps(self.columns, option=orjson.OPT_SORT_KEYS
                                       | orjson.OPT_SERIALIZE_NUMPY)
        assert self.tensor is not None
        tensor = np.ascontiguousarray(self.tensor)
        head = f"t{tensor.dtype.str}{tensor.shape}".encode()
        if tensor.dtype.kind == "O":
            return head + orjson.dumps(tensor.tolist())
        return head + tensor.tobytes()

    @classmethod
    def concat(cls, parts: Sequence[Inputs]) -> Inputs:
        """The rows of `parts`, in order, as one input (all tables with the same columns, or
        all tensors with the same trailing shape)."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        if first.columns is not None:
            names = list(first.columns)
            joined: dict[str, list[Any]] = {name: [] for name in names}
            for part in parts:
                assert part.columns is not None
                for name in names:
                    joined[name].extend(part.columns[name])
            matrices = [p.matrix for p in parts if p.matrix is not None]
            matrix = np.concatenate(matrices, axis=0) if len(matrices) == len(parts) else None
            return cls(columns=joined, rows=sum(p.rows for p in parts), matrix=matrix)
        tensors = [p.tensor for p in parts if p.tensor is not None]
        return cls.array(np.concatenate(tensors, axis=0))
