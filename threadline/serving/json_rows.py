"""JSON rows into checked `Inputs`: the two body shapes `/predict` and `/invocations` share.

A list of records (`[{"column": value, ...}, ...]`) becomes a table in the signature's column
order; a list of rows (`[[...], ...]`) becomes a tensor. Each builder takes decoded JSON, the
compiled `InputSpec` and `where` (the route and key, named in error messages); a table stays
columns of plain Python values, never a pandas frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from threadline.errors import InvalidArgument
from threadline.serving.inputs import Inputs
from threadline.serving.signature_check import (
    ANY_INPUT,
    check_values,
    float_rows,
    name_mismatch,
    validate,
)
from threadline.serving.wire import no_rows

if TYPE_CHECKING:
    from collections.abc import Iterable

    from threadline.serving.signature_check import InputSpec

__all__ = ["table_from_records", "tensor_from_rows"]


def table_from_records(records: list[Any], spec: InputSpec, where: str) -> Inputs:
    """A table from a list of JSON objects, in the signature's column order."""
    if not records:
        no_rows(where)
    if spec.kind == "columns":
        names: tuple[str, ...] | list[str] = spec.names
    elif isinstance(records[0], dict):
        names = list(records[0])
    else:
        _bad_record(records, (), where)
    width = len(names)
    if spec.floats:  # all-float models: straight to the matrix, or the general path below
        try:
            rows = [[row[name] for name in names] for row in records]
        except (KeyError, TypeError):
            pass
        else:
            fast = float_rows(spec, rows) if all(len(row) == width for row in records) else None
            if fast is not None:
                return fast
    try:
        columns = {name: [row[name] for row in records] for name in names}
    except (KeyError, TypeError):
        _bad_record(records, names, where, spec)
    for row in records:
        if len(row) != width:
            _bad_record(records, names, where, spec)
    inputs = Inputs(columns=columns, rows=len(records))
    if spec.kind == "columns":
        check_values(spec, columns)
        return inputs
    return validate(spec, inputs)


def _bad_record(records: list[Any], names: Iterable[str], where: str,
                spec: InputSpec = ANY_INPUT) -> NoReturn:
    known = list(names)
    for index, row in enumerate(records):
        if not isinstance(row, dict):
            raise InvalidArgument(f"{where}: record {index} is a {type(row).__name__}, not an object; "
                                  'send records as {"column": value, ...}')
        if spec.kind == "columns":
            if row.keys() != set(known):
                name_mismatch(spec, row, f" in record {index}")
            continue
        missing = [n for n in known if n not in row]
        extra = [n for n in row if n not in known]
        if missing or extra:
            problem = (f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}")
            raise InvalidArgument(f"{where}: record {index} {problem} but record 0 does not agree; "
                                  "give every record the same keys")
    raise AssertionError("no record is malformed")  # pragma: no cover


def tensor_from_rows(rows: Any, spec: InputSpec, where: str) -> Inputs:
    """A tensor from nested JSON lists, rows first, checked against the signature."""
    try:
        tensor = np.asarray(rows)
    except ValueError as exc:  # ragged rows
        raise InvalidArgument(f"{where}: the rows do not form a tensor ({exc}); give every row "
                              "the same shape") from exc
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        no_rows(where)
    return validate(spec, Inputs(tensor=tensor, rows=int(tensor.shape[0])))
