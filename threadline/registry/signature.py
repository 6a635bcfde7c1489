"""Input/output signatures: what a model takes and returns, inferred from an example.

A signature is plain JSON, stored with each model version:

    {"inputs": {"type": "columns", "columns": [{"name": "age", "dtype": "integer"}, ...]},
     "outputs": {"type": "tensor", "dtype": "integer", "shape": [-1]}}

Types are families (`boolean`, `integer`, `float`, `string`, `datetime`, `binary`, `any`),
so an int32 request matches an int64 training column and an integer is accepted where a float
is expected. Tables are recognised by shape (numpy arrays, pandas frames and series, Arrow
tables, lists of dicts, dicts of lists) without importing pandas or pyarrow; the serving layer
validates every request with `validate`, so it stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

FAMILIES = ("boolean", "integer", "float", "string", "datetime", "binary", "any")
_NUMPY_KIND = {"b": "boolean", "i": "integer", "u": "integer", "f": "float", "U": "string",
               "S": "binary", "M": "datetime", "m": "any", "O": "any", "c": "any", "V": "any"}


class SignatureError(InvalidArgument):
    """Data does not match a model's signature.

    Attributes:
        field: the column (or `shape`/`dtype` of a tensor) that does not match.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _python_family(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    kind = getattr(getattr(value, "dtype", None), "kind", None)  # numpy scalars
    if isinstance(kind, str):
        return _NUMPY_KIND.get(kind, "any")
    if type(value).__name__ in ("datetime", "date", "Timestamp", "datetime64"):
        return "datetime"
    return "any"


def _arrow_family(arrow_type: Any) -> str:
    name = str(arrow_type)
    if name.startswith(("int", "uint")):
        return "integer"
    if name in ("float", "double", "halffloat") or name.startswith(("float", "decimal")):
        return "float"
    if name == "bool":
        return "boolean"
    if name in ("string", "large_string", "utf8", "large_utf8", "string_view"):
        return "string"
    if name.startswith(("timestamp", "date")):
        return "datetime"
    if "binary" in name:
        return "binary"
    return "any"


def _series_family(series: Any) -> str:
    dtype = series.dtype
    kind = getattr(dtype, "kind", "O")
    if "string" in str(dtype) or str(dtype) == "str":
        return "string"
    if kind == "O":  # object columns: the first value that is not missing decides
        for value in series:
            if value is not None and value == value:
                return _python_family(value)
        return "any"
    return _NUMPY_KIND.get(kind, "any")


def _is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "iloc")


def _is_arrow(data: Any) -> bool:
    return hasattr(data, "schema") and hasattr(data, "column_names")


def _is_array(data: Any) -> bool:
    return hasattr(data, "dtype") and hasattr(data, "shape") and not hasattr(data, "columns")


def _columns(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "columns", "columns": [{"name": n, "dtype": d} for n, d in pairs]}


def infer_schema(data: Any) -> dict[str, Any]:
    """The schema of one value: a table's columns and types, or a tensor's type and shape."""
    if _is_frame(data):
        return _columns([(str(c), _series_family(data[c])) for c in data.columns])
    if hasattr(data, "dtype") and hasattr(data, "name") and hasattr(data, "iloc"):  # Series
        return _columns([(str(data.name), _series_family(data))])
    if _is_arrow(data):
        return _columns([(f.name, _arrow_family(f.type)) for f in data.schema])
    if _is_array(data):
        kind = data.dtype.kind
        family = _NUMPY_KIND.get(kind, "any")
        if kind == "O" and data.size:
            family = _python_family(data.flat[0])
        return {"type": "tensor", "dtype": family, "shape": [-1, *list(data.shape[1:])]}
    if isinstance(data, dict):
        return _columns([(str(k), _first_family(v if isinstance(v, list) else [v]))
                         for k, v in data.items()])
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, dict) for r in data):
        names: dict[str, None] = {}
        for row in data:
            names.update(dict.fromkeys(row))
        return _columns([(str(n), _first_family([r.get(n) for r in data])) for n in names])
    if isinstance(data, (list, tuple)):
        shape = [-1]
        inner: Any = data[0] if data else None
        while isinstance(inner, (list, tuple)):
            shape.append(len(inner))
            inner = inner[0] if inner else None
        return {"type": "tensor", "dtype": _python_family(inner), "shape": shape}
    raise InvalidArgument(f"cannot infer a signature from {type(data).__name__}; give an array, "
                          "a data frame, an Arrow table or a list of dicts")


def _first_family(values: list[Any]) -> str:
    for value in values:
        if value is not None and value == value:
            return _python_family(value)
    return "any"


def infer(example: Any, output: Any = None) -> dict[str, Any]:
    """The signature of a model from an example input and (optionally) its output on it."""
    signature: dict[str, Any] = {"inputs": infer_schema(example)}
    if output is not None:
        signature["outputs"] = infer_schema(output)
    return signature


def compatible(expected: str, actual: str) -> bool:
    """Whether a value of family `actual` may be given where `expected` is declared."""
    return (expected == actual or "any" in (expected, actual)
            or (expected == "float" and actual == "integer"))


def _check_columns(declared: list[Mapping[str, Any]], data: Any) -> None:
    want = {str(c["name"]): str(c["dtype"]) for c in declared}
    if isinstance(data, (list, tuple)) and all(isinstance(r, dict) for r in data):
        # requests arrive as records: check every value, so the error names the first bad one
        for index, row in enumerate(data):
            _check_names(want, list(row), f" in row {index}")
            for name, value in row.items():
                family = _python_family(value)
                if not compatible(want[name], family):
                    raise SignatureError(
                        f"column {name!r} should be {want[name]} but row {index} has {family} "
                        f"({value!r:.40})", field=name)
        return
    got = infer_schema(data)
    if got["type"] != "columns":
        raise SignatureError(
            f"the model takes a table with columns {', '.join(want)}; got a tensor",
            field="columns")
    have = {c["name"]: c["dtype"] for c in got["columns"]}
    _check_names(want, list(have), "")
    for name, family in have.items():
        if not compatible(want[name], family):
            raise SignatureError(f"column {name!r} should be {want[name]} but is {family}", field=name)


def _check_names(want: Mapping[str, str], have: list[str], where: str) -> None:
    missing = [n for n in want if n not in have]
    if missing:
        raise SignatureError(f"missing column {missing[0]!r}{where}", field=missing[0])
    extra = [n for n in have if n not in want]
    if extra:
        raise SignatureError(f"unexpected column {extra[0]!r}{where}; the model takes "
                             f"{', '.join(want)}", field=extra[0])


def _check_tensor(declared: Mapping[str, Any], data: Any) -> None:
    got = infer_schema(data)
    if got["type"] != "tensor":
        raise SignatureError(f"the model takes a {declared['dtype']} tensor of shape "
                             f"{declared['shape']}; got a table", field="shape")
    if not compatible(str(declared["dtype"]), got["dtype"]):
        raise SignatureError(f"the model takes {declared['dtype']} values, got {got['dtype']}",
                             field="dtype")
    want_shape = list(declared.get("shape") or [])
    have_shape = got["shape"]
    ok = len(want_shape) == len(have_shape) and all(
        w in (-1, h) for w, h in zip(want_shape[1:], have_shape[1:]))
    if not ok:
        raise SignatureError(f"the model takes shape {want_shape}, got {have_shape}", field="shape")


def validate(signature: Mapping[str, Any], data: Any) -> None:
    """Check `data` against the signature's inputs; raise SignatureError naming what differs.

    An empty signature accepts anything (a model registered without an example).
    """
    inputs = signature.get("inputs") if signature else None
    if not inputs:
        return
    if inputs.get("type") == "columns":
        _check_columns(inputs["columns"], data)
    elif inputs.get("type") == "tensor":
        _check_tensor(inputs, data)
    else:
        raise InvalidArgument(f"unknown signature input type {inputs.get('type')!r}")
