"""Decoded request rows checked against a model's signature: `InputSpec` and `validate`.

Every protocol decodes its body into `Inputs` and hands them here, so one set of rules (column
names, value families, a tensor's dtype and shape) decides what every route accepts. It runs on
every request: a server compiles a signature once with `InputSpec.from_signature`, and the common
case then costs one type lookup per value; only an unusual value gets the exact, slower look.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeAlias

import numpy as np

from threadline.errors import InvalidArgument
from threadline.registry.signature import SignatureError, compatible
from threadline.serving.inputs import Inputs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["ANY_INPUT", "InputSpec", "SignatureLike", "check_values", "float_rows", "name_mismatch",
           "validate"]

# --- signatures, compiled -------------------------------------------------------------------

_NONE = type(None)
#: the Python types a JSON value of each declared family may have without a closer look;
#: datetime and binary columns arrive as strings and get the closer look (ISO 8601, base64)
_FAST_TYPES: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool, _NONE}),
    "integer": frozenset({int, _NONE}),
    "float": frozenset({int, float, _NONE}),
    "string": frozenset({str, _NONE}),
    "datetime": frozenset({_NONE}),
    "binary": frozenset({_NONE}),
}
_VALUE_FAMILY: dict[type, str] = {bool: "boolean", int: "integer", float: "float", str: "string",
                                  bytes: "binary", list: "array", dict: "object", _NONE: "any"}
_KIND_FAMILY = {"b": "boolean", "i": "integer", "u": "integer", "f": "float", "U": "string",
                "S": "binary", "M": "datetime", "m": "any", "O": "any", "c": "any", "V": "any"}

#: a model version's signature JSON (see `threadline.registry.signature`), compiled or not
SignatureLike: TypeAlias = "Mapping[str, Any] | InputSpec | None"


class _Column(NamedTuple):
    name: str
    family: str
    fast: frozenset[type] | None  # None: any value goes


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A signature's inputs, parsed once into what the per-request check needs.

    Attributes:
        kind: "columns", "tensor", or "any" (no signature: everything is accepted).
        columns: the declared columns, in the order the model takes them.
        dtype: a tensor's type family.
        shape: a tensor's declared shape (-1 for any size), or None when not declared.
    """

    kind: str = "any"
    columns: tuple[_Column, ...] = ()
    dtype: str = "any"
    shape: tuple[int, ...] | None = None
    names: tuple[str, ...] = field(default=(), repr=False)
    #: every column is a float column (`float_rows` applies)
    floats: bool = field(default=False, repr=False)

    @classmethod
    def from_signature(cls, signature: SignatureLike) -> InputSpec:
        """The spec of `signature` (a model version's signature JSON, an InputSpec, or None)."""
        if isinstance(signature, InputSpec):
            return signature
        inputs = signature.get("inputs") if signature else None
        if not inputs:
            return ANY_INPUT
        if not isinstance(inputs, dict):
            raise InvalidArgument(f"the model's signature has malformed inputs {inputs!r:.60}; "
                                  "register the version again with an input example")
        kind = inputs.get("type")
        if kind == "columns":
            try:
                columns = tuple(_Column(str(c["name"]), str(c["dtype"]),
                                        _FAST_TYPES.get(str(c["dtype"])))
                                for c in inputs["columns"])
            except (KeyError, TypeError) as exc:
                raise InvalidArgument(f"the model's signature has a malformed column list ({exc!r}); "
                                      "register the version again with an input example") from exc
            return cls("columns", columns, names=tuple(c.name for c in columns),
                       floats=bool(columns) and all(c.family == "float" for c in columns))
        if kind == "tensor":
            shape = inputs.get("shape")
            return cls("tensor", dtype=str(inputs.get("dtype", "any")),
                       shape=None if shape is None else tuple(int(d) for d in shape))
        raise InvalidArgument(f"the model's signature has unknown input type {kind!r} (expected "
                              "'columns' or 'tensor'); register the version again with an input example")

    def describe(self) -> str:
        """What the model takes, in words, for error messages."""
        if self.kind == "columns":
            return "a table with columns " + ", ".join(self.names)
        if self.kind == "tensor":
            return f"a {self.dtype} tensor of shape {list(self.shape or [])}"
        return "any input"


#: the spec of a model without a signature: every input is accepted as it came
ANY_INPUT = InputSpec()

# --- validation -----------------------------------------------------------------------------


def validate(signature: SignatureLike, inputs: Inputs) -> Inputs:
    """Check decoded `inputs` against the signature; return them with columns in the model's order.

    Column names must match exactly; every value must belong to a family its column accepts
    (`threadline.registry.signature.compatible`), and null is accepted everywhere. A tensor must
    have a compatible type and the declared trailing shape; integers given to a float tensor are
    converted to float64. No signature accepts anything.

    Raises:
        SignatureError: (HTTP 422) naming the column, or `dtype`/`shape` of a tensor.
    """
    spec = InputSpec.from_signature(signature)
    if spec.kind == "columns":
        return _validate_table(spec, inputs)
    if spec.kind == "tensor":
        return _validate_tensor(spec, inputs)
    return inputs


def _validate_table(spec: InputSpec, inputs: Inputs) -> Inputs:
    given = inputs.columns
    if given is None:
        raise SignatureError(f"the model takes {spec.describe()}; got a tensor. Send records "
                             '[{"column": value, ...}] instead', field="columns")
    try:
        ordered = {name: given[name] for name in spec.names}
    except KeyError:
        name_mismatch(spec, given, "")
    if len(given) != len(ordered):
        name_mismatch(spec, given, "")
    for name, values in ordered.items():
        if len(values) != inputs.rows:
            raise InvalidArgument(f"column {name!r} has {len(values)} values but the request has "
                                  f"{inputs.rows} rows; give every column one value per row")
    check_values(spec, ordered)
    return Inputs(columns=ordered, rows=inputs.rows)


def name_mismatch(spec: InputSpec, given: Iterable[str], where: str) -> NoReturn:
    """Raise the SignatureError naming the first column missing from `given`, or else extra in it.

    Call it only once the names are known to differ; `where` ends the message (" in record 3").
    """
    have = set(given)
    for name in spec.names:
        if name not in have:
            raise SignatureError(f"missing column {name!r}{where}; the model takes "
                                 f"{', '.join(spec.names)}", field=name)
    for name in given:
        if name not in spec.names:
            raise SignatureError(f"unexpected column {name!r}{where}; the model takes "
                                 f"{', '.join(spec.names)}", field=name)
    raise AssertionError("names differ but no name is missing or extra")  # pragma: no cover


def check_values(spec: InputSpec, columns: Mapping[str, list[Any]]) -> None:
    """Check every value of `columns` (already named and ordered as `spec` declares) against its
    column's type family; raises SignatureError naming the column and row of the first misfit."""
    # the hot path: one set lookup per value; anything unusual gets the slow, exact look
    for column in spec.columns:
        fast = column.fast
        if fast is None:
            continue
        values = columns[column.name]
        for value in values:
            if type(value) not in fast:
                _check_column(column, values)
                break


def float_rows(spec: InputSpec, rows: list[list[Any]]) -> Inputs | None:
    """Rows of values in `spec`'s column order as checked `Inputs` carrying their float64
    `matrix`, when every column takes floats and every value is a JSON number; None otherwise
    (nulls, booleans, text...), and the general check (`check_values`) then decides, naming any
    misfit. The caller has checked that every row is a list of one value per column.

    The common numeric request costs one type-set check per row and one NumPy conversion here,
    instead of a list per column, a check per value and a second conversion for the model.
    """
    if not spec.floats:
        return None
    numbers = _NUMBERS.issuperset
    for row in rows:
        if not numbers(map(type, row)):
            return None
    try:
        matrix = np.array(rows, dtype=np.float64)
    except (OverflowError, TypeError, ValueError):  # an integer too large for a float
        return None
    return Inputs(columns=dict(zip(spec.names, map(list, zip(*rows)))), rows=len(rows),
                  matrix=matrix)


_NUMBERS = frozenset({int, float})


def _value_family(value: Any) -> str:
    family = _VALUE_FAMILY.get(type(value))
    if family is not None:
        return family
    kind = getattr(getattr(value, "dtype", None), "kind", None)  # NumPy scalars
    if isinstance(kind, str):
        return _KIND_FAMILY.get(kind, "any")
    if isinstance(value, (datetime, date)):
        return "datetime"
    for cls, name in _VALUE_FAMILY.items():
        if isinstance(value, cls):
            return name
    return "any"


def _check_column(column: _Column, values: list[Any]) -> None:
    name, family = column.name, column.family
    for row, value in enumerate(values):
        actual = _value_family(value)
        if actual == "string" and family in ("datetime", "binary"):
            _check_text(name, family, row, value)
        elif not compatible(family, actual):
            raise SignatureError(f"column {name!r} takes {family} values but row {row} has {actual} "
                                 f"({value!r:.40}); send {family} values or null", field=name)


def _check_text(name: str, family: str, row: int, value: str) -> None:
    # JSON has no datetime or bytes: datetimes come as ISO 8601 text, bytes as base64 (MLflow's
    # convention). The text is checked here and handed on as it came, so a request stays JSON.
    try:
        if family == "datetime":
            datetime.fromisoformat(value)
        else:
            base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        what = "an ISO 8601 datetime" if family == "datetime" else "base64 text"
        raise SignatureError(f"column {name!r} takes {family} values but row {row} has "
                             f"{value!r:.40}, which is not {what}", field=name) from None


def _validate_tensor(spec: InputSpec, inputs: Inputs) -> Inputs:
    tensor = inputs.tensor
    if tensor is None:
        columns = ", ".join(inputs.columns or {})
        raise SignatureError(f"the model takes {spec.describe()}; got a table with columns "
                             f"{columns}. Send a list of rows [[...], ...] instead", field="shape")
    actual = _KIND_FAMILY.get(tensor.dtype.kind, "any")
    if not compatible(spec.dtype, actual):
        raise SignatureError(f"the model takes {spec.dtype} values; got {actual} values",
                             field="dtype")
    want = spec.shape
    if want is not None and (len(want) != tensor.ndim or any(
            w not in (-1, h) for w, h in zip(want[1:], tensor.shape[1:]))):
        got = [-1, *tensor.shape[1:]]
        raise SignatureError(f"the model takes shape {list(want)} (-1: any size); got {got}",
                             field="shape")
    if spec.dtype == "float" and tensor.dtype.kind in "iuO":
        try:  # integers are floats written without a point; nulls become NaN
            tensor = tensor.astype(np.float64)
        except (TypeError, ValueError):
            raise SignatureError("the model takes float values; the tensor holds values that are "
                                 "not numbers", field="dtype") from None
        return Inputs(tensor=tensor, rows=inputs.rows)
    return inputs
