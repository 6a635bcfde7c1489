"""Wire protocols of model serving: request bodies in, checked `Inputs` out; predictions in, bytes out.

One server speaks three protocols:

- Threadline's own `POST /predict`: JSON records (or rows, for tensor models);
- MLflow's scoring protocol `POST /invocations`, as `mlflow models serve` accepts it
  (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, or a CSV body), so MLflow
  clients and deployment scripts work unchanged;
- the Open Inference Protocol V2 (KServe v2, Triton's HTTP JSON) `POST /v2/models/{name}/infer`.

Everything here is a pure function of the body's bytes, its content type and the model's
signature, so the routers stay thin and the protocol rules are tested without a server. It runs on
every request: JSON is parsed by orjson, a table stays columns of plain Python values (never a
pandas frame), and the signature check costs one type lookup per value. A server that answers
many requests for one model compiles its signature once with `InputSpec.from_signature` and passes
the `InputSpec` wherever a signature is taken.

Security: a body is only ever parsed as JSON or CSV. Pickled bodies are refused by their content
type before a byte is read, and this module does not import pickle at all: unpickling runs code
chosen by whoever sent the request.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeAlias

import numpy as np
import orjson

from threadline.errors import InvalidArgument, ThreadlineError
from threadline.registry.signature import SignatureError, compatible
from threadline.serving.inputs import Inputs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

JSON = "application/json"
CSV = "text/csv"
#: refused on every route, with a message that says why: unpickling a body runs its sender's code
PICKLE_TYPES = frozenset({"application/python-pickle", "application/x-python-pickle",
                          "application/x-pickle", "application/pickle"})
_OCTET_STREAM = "application/octet-stream"
_BINARY_EXTENSION = ("the binary tensor data extension (Inference-Header-Content-Length) is not "
                     "supported; send every tensor as JSON \"data\" (tritonclient: "
                     "InferInput.set_data_from_numpy(array, binary_data=False))")
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class UnsupportedMediaType(ThreadlineError):
    """A request body has a content type the route does not accept (HTTP 415).

    Attributes:
        content_type: the media type that was refused ("" when the request named none).
    """

    exit_code = 2

    def __init__(self, message: str, *, content_type: str) -> None:
        super().__init__(message)
        self.content_type = content_type


#: statuses of the errors this module adds to `threadline.errors.HTTP_STATUS`
STATUS: dict[type[ThreadlineError], int] = {UnsupportedMediaType: 415}

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

    @classmethod
    def from_signature(cls, signature: SignatureLike) -> InputSpec:
        """The spec of `signature` (a model version's signature JSON, an InputSpec, or None)."""
        if isinstance(signature, InputSpec):
            return signature
        inputs = signature.get("inputs") if signature else None
        if not inputs:
            return _ANY
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
            return cls("columns", columns, names=tuple(c.name for c in columns))
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


_ANY = InputSpec()

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
        _name_mismatch(spec, given, "")
    if len(given) != len(ordered):
        _name_mismatch(spec, given, "")
    for name, values in ordered.items():
        if len(values) != inputs.rows:
            raise InvalidArgument(f"column {name!r} has {len(values)} values but the request has "
                                  f"{inputs.rows} rows; give every column one value per row")
    _check_values(spec, ordered)
    return Inputs(columns=ordered, rows=inputs.rows)


def _name_mismatch(spec: InputSpec, given: Iterable[str], where: str) -> NoReturn:
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


def _check_values(spec: InputSpec, columns: Mapping[str, list[Any]]) -> None:
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


# --- shared decoding --------------------------------------------------------------------------


def _media_type(content_type: str, accepted: tuple[str, ...], route: str,
                *, default: str | None = None) -> str:
    """The lower-case media type of `content_type`, or UnsupportedMediaType naming what to send."""
    if content_type == accepted[0]:  # the common case, exactly as clients send it
        return content_type
    mime, _, parameters = content_type.partition(";")
    mime = mime.strip().lower()
    send = " or ".join(accepted)
    if mime in PICKLE_TYPES or "pickle" in mime:
        raise UnsupportedMediaType(f"{route} never accepts pickled bodies ({mime}): unpickling runs "
                                   f"code chosen by the sender. Send {send} instead",
                                   content_type=mime)
    if not mime and default is not None:
        mime = default
    if mime not in accepted:
        raise UnsupportedMediaType(f"{route} does not accept Content-Type {mime or '(none)'!r}; "
                                   f"send {send}", content_type=mime)
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key != "charset":
            raise UnsupportedMediaType(f"unrecognized content type parameter {key!r} in "
                                       f"{content_type!r}; only charset=utf-8 is accepted",
                                       content_type=mime)
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"{route} only reads UTF-8; got charset {value.strip()!r}. "
                                       "Encode the body as UTF-8", content_type=mime)
    return mime


def _load_json(body: bytes, route: str, expected: str) -> Any:
    if not body.strip():
        raise InvalidArgument(f"{route}: the request body is empty; {expected}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{route}: the body is not valid JSON ({exc}); {expected}") from exc


def _no_rows(where: str) -> NoReturn:
    raise InvalidArgument(f"{where} has no rows; send at least one")


def _records(records: list[Any], spec: InputSpec, where: str) -> Inputs:
    """A table from a list of JSON objects, in the signature's column order."""
    if not records:
        _no_rows(where)
    if spec.kind == "columns":
        names: tuple[str, ...] | list[str] = spec.names
    elif isinstance(records[0], dict):
        names = list(records[0])
    else:
        _bad_record(records, (), where)
    width = len(names)
    try:
        columns = {name: [row[name] for row in records] for name in names}
    except (KeyError, TypeError):
        _bad_record(records, names, where, spec)
    for row in records:
        if len(row) != width:
            _bad_record(records, names, where, spec)
    inputs = Inputs(columns=columns, rows=len(records))
    if spec.kind == "columns":
        _check_values(spec, columns)
        return inputs
    return validate(spec, inputs)


def _bad_record(records: list[Any], names: Iterable[str], where: str,
                spec: InputSpec = _ANY) -> NoReturn:
    known = list(names)
    for index, row in enumerate(records):
        if not isinstance(row, dict):
            raise InvalidArgument(f"{where}: record {index} is a {type(row).__name__}, not an object; "
                                  'send records as {"column": value, ...}')
        if spec.kind == "columns":
            if row.keys() != set(known):
                _name_mismatch(spec, row, f" in record {index}")
            continue
        missing = [n for n in known if n not in row]
        extra = [n for n in row if n not in known]
        if missing or extra:
            problem = (f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}")
            raise InvalidArgument(f"{where}: record {index} {problem} but record 0 does not agree; "
                                  "give every record the same keys")
    raise AssertionError("no record is malformed")  # pragma: no cover


def _tensor(rows: Any, spec: InputSpec, where: str) -> Inputs:
    """A tensor from nested JSON lists, rows first, checked against the signature."""
    try:
        tensor = np.asarray(rows)
    except ValueError as exc:  # ragged rows
        raise InvalidArgument(f"{where}: the rows do not form a tensor ({exc}); give every row "
                              "the same shape") from exc
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        _no_rows(where)
    return validate(spec, Inputs(tensor=tensor, rows=int(tensor.shape[0])))


def _positional(rows: list[Any], spec: InputSpec, where: str) -> Inputs:
    """A table from rows of values in the signature's column order."""
    width = len(spec.names)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise SignatureError(f"{where}: row {index} has {got} but the model takes {width} "
                                 f"columns ({', '.join(spec.names)})", field="columns")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(spec.names)}
    return validate(spec, Inputs(columns=columns, rows=len(rows)))


def _dict_of_lists(payload: dict[str, Any], spec: InputSpec, where: str) -> Inputs:
    """A table from {"column": [values...]} (or {"column": value} for one row)."""
    if not payload:
        raise InvalidArgument(f"{where} has no columns; send {{\"column\": [values, ...]}}")
    lists = [isinstance(v, list) for v in payload.values()]
    if not any(lists):
        return validate(spec, Inputs(columns={k: [v] for k, v in payload.items()}, rows=1))
    if not all(lists):
        raise InvalidArgument(f"{where} mixes lists and single values; give every column a list "
                              "of values, one per row")
    columns: dict[str, list[Any]] = payload
    rows = len(next(iter(columns.values())))
    for name, values in columns.items():
        if len(values) != rows:
            first = next(iter(columns))
            raise InvalidArgument(f"{where}: column {name!r} has {len(values)} values but "
                                  f"{first!r} has {rows}; give every column one value per row")
    if rows == 0:
        _no_rows(where)
    return validate(spec, Inputs(columns=columns, rows=rows))


# --- POST /predict ---------------------------------------------------------------------------

_PREDICT = "POST /predict"
_PREDICT_SHAPES = ('send a list of records [{"column": value, ...}], one record {...}, '
                   '{"records": [...]}, or for tensor models {"instances": [[...], ...]} '
                   "or a list of rows [[...], ...]")


def decode_predict(body: bytes, content_type: str, signature: SignatureLike) -> Inputs:
    """Decode and check a Threadline `POST /predict` body.

    Accepted JSON: a list of records `[{"age": 3, ...}, ...]`, one record `{"age": 3, ...}`,
    `{"records": [...]}`, and for tensor models `{"instances": [[...], ...]}` or a bare list of
    rows. A record object whose only key is `records` or `instances` is a wrapper, unless the
    model has a column of that name.

    Raises:
        UnsupportedMediaType: (415) the body is not `application/json`.
        InvalidArgument: (400) the body is not JSON or not one of the accepted shapes.
        SignatureError: (422) the rows do not match the signature.
    """
    spec = InputSpec.from_signature(signature)
    _media_type(content_type, (JSON,), _PREDICT)
    data = _load_json(body, _PREDICT, _PREDICT_SHAPES)
    if isinstance(data, dict):
        if len(data) == 1 and not (spec.kind == "columns" and next(iter(data)) in spec.names):
            if isinstance(records := data.get("records"), list):
                return _records(records, spec, _PREDICT + " records")
            if "instances" in data:
                return _rows(data["instances"], spec, _PREDICT + " instances")
            if "records" in data:
                raise InvalidArgument(f'{_PREDICT}: "records" must be a list of objects; '
                                      f"{_PREDICT_SHAPES}")
        return _records([data], spec, _PREDICT)
    if isinstance(data, list):
        return _rows(data, spec, _PREDICT)
    raise InvalidArgument(f"{_PREDICT}: the body is a JSON {type(data).__name__}; {_PREDICT_SHAPES}")


def _rows(rows: Any, spec: InputSpec, where: str) -> Inputs:
    if not isinstance(rows, list):
        raise InvalidArgument(f"{where} must be a list of rows; {_PREDICT_SHAPES}")
    if not rows:
        _no_rows(where)
    if isinstance(rows[0], dict):
        return _records(rows, spec, where)
    return _tensor(rows, spec, where)


# --- POST /invocations (MLflow) -----------------------------------------------------------------

_INVOCATIONS = "POST /invocations"
_MLFLOW_SHAPES = ("send a JSON object with exactly one of the keys " + ", ".join(MLFLOW_KEYS)
                  + " (and optionally params), or a text/csv body with a header row")


def decode_invocations(body: bytes, content_type: str, signature: SignatureLike) -> Inputs:
    """Decode and check an MLflow scoring-server `POST /invocations` body.

    As `mlflow models serve` (MLflow 2 and 3) accepts it: a JSON object with exactly one of
    `dataframe_split` ({"columns", "data", optional "index"}), `dataframe_records` (a list of
    records), `instances` or `inputs` (a list of rows, a list of records, a list of values for a
    one-column model, or an object of column -> values); `params` is allowed and ignored, and
    other keys are ignored as MLflow ignores them. Or `text/csv` with a header row, each cell
    converted to its column's declared family (an empty cell is null). A `dataframe_split`
    without `columns` is positional: the signature's columns, or a tensor when there is none.

    Raises:
        UnsupportedMediaType: (415) not JSON or CSV, or a charset other than UTF-8.
        InvalidArgument: (400) malformed JSON or CSV, or none (or several) of the keys.
        SignatureError: (422) the rows do not match the signature.
    """
    spec = InputSpec.from_signature(signature)
    if _media_type(content_type, (JSON, CSV), _INVOCATIONS) == CSV:
        return _decode_csv(body, spec)
    data = _load_json(body, _INVOCATIONS, _MLFLOW_SHAPES)
    if not isinstance(data, dict):
        raise InvalidArgument(f"{_INVOCATIONS}: got a JSON {type(data).__name__}; {_MLFLOW_SHAPES}")
    keys = [key for key in MLFLOW_KEYS if key in data]
    if len(keys) != 1:
        got = ", ".join(map(str, data)) or "none"
        hint = (" (MLflow 1's {\"columns\", \"data\"} is now {\"dataframe_split\": {...}})"
                if "data" in data else "")
        raise InvalidArgument(f"{_INVOCATIONS}: got keys {got}; {_MLFLOW_SHAPES}{hint}")
    if not isinstance(data.get("params") or {}, dict):
        raise InvalidArgument(f'{_INVOCATIONS}: "params" must be an object of name -> value')
    key = keys[0]
    payload = data[key]
    where = f"{_INVOCATIONS} {key}"
    if key == "dataframe_split":
        return _split(payload, spec, where)
    if key == "dataframe_records":
        if not isinstance(payload, list):
            raise InvalidArgument(f"{where} must be a list of records [{{\"column\": value}}, ...]; "
                                  f"got a {type(payload).__name__}")
        return _records(payload, spec, where)
    return _tf_serving(payload, spec, where)


def _tf_serving(payload: Any, spec: InputSpec, where: str) -> Inputs:
    if isinstance(payload, dict):
        return _dict_of_lists(payload, spec, where)
    if not isinstance(payload, list):
        raise InvalidArgument(f"{where} must be a list of rows, a list of records, or an object "
                              f"of column -> values; got a {type(payload).__name__}")
    if not payload:
        _no_rows(where)
    first = payload[0]
    if isinstance(first, dict):
        return _records(payload, spec, where)
    if spec.kind == "columns":
        if len(spec.names) == 1 and not isinstance(first, list):
            return validate(spec, Inputs(columns={spec.names[0]: payload}, rows=len(payload)))
        return _positional(payload, spec, where)
    return _tensor(payload, spec, where)


def _split(payload: Any, spec: InputSpec, where: str) -> Inputs:
    shape = '{"columns": [...], "data": [[...], ...]}'
    if not isinstance(payload, dict):
        raise InvalidArgument(f"{where} must be an object {shape}; got a {type(payload).__name__}")
    extra = set(payload) - {"columns", "data", "index"}
    if "data" not in payload or extra:
        raise InvalidArgument(f"{where} must have a 'data' field and optionally 'columns' and "
                              f"'index'; got {', '.join(map(str, payload))}")
    data, names = payload["data"], payload.get("columns")
    if not isinstance(data, list):
        raise InvalidArgument(f"{where} 'data' must be a list of rows {shape}")
    if not data:
        _no_rows(where)
    index = payload.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidArgument(f"{where} 'index' must be a list with one entry per row of 'data'")
    if spec.kind == "tensor" or (names is None and spec.kind == "any"):
        return _tensor(data, spec, where)
    if names is None:
        return _positional(data, spec, where)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidArgument(f"{where} 'columns' must be a list of column names {shape}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where} 'columns' names a column twice; name each column once")
    width = len(names)
    if width == 1:
        data = [row if isinstance(row, list) else [row] for row in data]
    for number, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise InvalidArgument(f"{where}: row {number} of 'data' has {got} but 'columns' names "
                                  f"{width}; give every row one value per column")
    columns = {name: [row[i] for row in data] for i, name in enumerate(names)}
    return validate(spec, Inputs(columns=columns, rows=len(data)))


def _decode_csv(body: bytes, spec: InputSpec) -> Inputs:
    where = f"{_INVOCATIONS} CSV"
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{where} is not UTF-8 ({exc}); encode the body as UTF-8") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise InvalidArgument(f"{where} is malformed at line {reader.line_num} ({exc}); send one "
                              "header row, then one row per record") from exc
    if not lines:
        raise InvalidArgument(f"{where} is empty; send one header row, then one row per record")
    header = lines[0][1]
    rows = [row for _, row in lines[1:]]
    if not rows:
        _no_rows(where)
    if len(set(header)) != len(header):
        raise InvalidArgument(f"{where}: the header names a column twice; name each column once")
    for line, row in lines[1:]:
        if len(row) != len(header):
            raise InvalidArgument(f"{where}: line {line} has {len(row)} cells but the header has "
                                  f"{len(header)}; give every row one cell per column")
    if spec.kind == "tensor":
        cells = [cell for row in rows for cell in row]
        values = _convert("the tensor", spec.dtype, cells, field_name="dtype", width=len(header))
        tensor = np.asarray(values).reshape(len(rows), len(header))
        return validate(spec, Inputs(tensor=tensor, rows=len(rows)))
    families = {c.name: c.family for c in spec.columns}
    columns = {name: _convert(repr(name), families.get(name, "any"), [row[i] for row in rows],
                              field_name=name)
               for i, name in enumerate(header)}
    return validate(spec, Inputs(columns=columns, rows=len(rows)))


def _parse_bool(cell: str) -> bool:
    lowered = cell.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(cell)


_PARSERS: dict[str, Any] = {"integer": int, "float": float, "boolean": _parse_bool}


def _convert(what: str, family: str, cells: list[str], *, field_name: str,
             width: int = 1) -> list[Any]:
    """CSV cells as values of `family` (an empty cell is null); "any" infers the column's type."""
    if family == "any":
        for parser in _PARSERS.values():
            try:
                return [None if cell == "" else parser(cell) for cell in cells]
            except ValueError:
                continue
        family = "string"
    parse = _PARSERS.get(family)
    if parse is None:  # string, datetime, binary: kept as text, checked by `validate`
        return [None if cell == "" else cell for cell in cells]
    values: list[Any] = []
    for index, cell in enumerate(cells):
        try:
            values.append(None if cell == "" else parse(cell))
        except ValueError:
            raise SignatureError(f"{what} takes {family} values but row {index // width} has "
                                 f"{cell!r:.40}", field=field_name) from None
    return values


# --- POST /v2/models/{name}/infer (Open Inference Protocol) ---------------------------------

_V2 = "POST /v2/models/{name}/infer"
_V2_SHAPE = ('send {"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}], '
             '"outputs": [{"name": ...}]}')
#: V2 datatype -> (NumPy dtype, type family, the Python types its JSON values may have)
_V2_TYPES: dict[str, tuple[np.dtype[Any], str, frozenset[type]]] = {
    "BOOL": (np.dtype(np.bool_), "boolean", frozenset({bool})),
    **{f"UINT{b}": (np.dtype(f"uint{b}"), "integer", frozenset({int})) for b in (8, 16, 32, 64)},
    **{f"INT{b}": (np.dtype(f"int{b}"), "integer", frozenset({int})) for b in (8, 16, 32, 64)},
    **{f"FP{b}": (np.dtype(f"float{b}"), "float", frozenset({int, float})) for b in (16, 32, 64)},
    "BYTES": (np.dtype(object), "string", frozenset({str})),
}


@dataclass(frozen=True, slots=True)
class V2Request:
    """One decoded V2 inference request.

    Attributes:
        inputs: the checked rows.
        id: the request id the client chose, echoed in the response.
        outputs: the output names the client asked for (empty: all).
        parameters: the request's parameters object, as sent.
    """

    inputs: Inputs
    id: str | None = None
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


class _V2Input(NamedTuple):
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]  # flat, row-major, type-checked


def decode_v2(body: bytes, content_type: str, signature: SignatureLike,
              *, header_length: str | None = None) -> V2Request:
    """Decode and check an Open Inference Protocol V2 inference request (JSON tensors).

    For a table model each input is one column (shape `[n]` or `[n, 1]`); for a tensor model the
    one input (any name) is reshaped to its `shape`, rows first. Without a signature one input is
    a tensor and several are columns. `data` may be flat (row-major) or nested.

    Args:
        body: the request body.
        content_type: its Content-Type; none at all is read as JSON, as Triton's client sends it.
        signature: the model's signature.
        header_length: the Inference-Header-Content-Length header, if any: it marks Triton's
            binary tensor extension, which is refused with a message saying what to send instead.

    Raises:
        UnsupportedMediaType: (415) not JSON, or binary tensor data.
        InvalidArgument: (400) malformed request, unknown datatype, or data that does not fill
            its shape.
        SignatureError: (422) inputs that do not match the signature.
    """
    if header_length is not None:
        raise UnsupportedMediaType(f"{_V2}: {_BINARY_EXTENSION}", content_type=content_type)
    if content_type.partition(";")[0].strip().lower() == _OCTET_STREAM:
        raise UnsupportedMediaType(f"{_V2}: {_BINARY_EXTENSION}", content_type=_OCTET_STREAM)
    spec = InputSpec.from_signature(signature)
    _media_type(content_type, (JSON,), _V2, default=JSON)
    data = _load_json(body, _V2, f"{_V2_SHAPE} ({_BINARY_EXTENSION})")
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list) or not data["inputs"]:
        raise InvalidArgument(f'{_V2}: the request needs a non-empty "inputs" list; {_V2_SHAPE}')
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument(f'{_V2}: "id" must be a string')
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument(f'{_V2}: "parameters" must be an object')
    outputs = _v2_outputs(data.get("outputs") or [])
    tensors = [_v2_input(item) for item in data["inputs"]]
    if len({t.name for t in tensors}) != len(tensors):
        raise InvalidArgument(f"{_V2}: two inputs have the same name; name each input once")
    if spec.kind == "tensor" or (spec.kind == "any" and len(tensors) == 1):
        inputs = _v2_tensor(tensors, spec)
    else:
        inputs = _v2_columns(tensors, spec)
    return V2Request(inputs=inputs, id=request_id, outputs=outputs, parameters=parameters)


def _v2_outputs(outputs: Any) -> list[str]:
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise InvalidArgument(f'{_V2}: "outputs" must be a list of {{"name": ...}} objects')
    return [o["name"] for o in outputs]


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _v2_input(item: Any) -> _V2Input:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidArgument(f'{_V2}: every input needs a "name"; {_V2_SHAPE}')
    name = item["name"]
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument(f'{_V2}: input {name!r} has "parameters" that are not an object')
    if parameters.get("binary_data_size") is not None:
        raise UnsupportedMediaType(f"{_V2}: input {name!r} uses {_BINARY_EXTENSION}",
                                   content_type=_OCTET_STREAM)
    datatype, shape, data = item.get("datatype"), item.get("shape"), item.get("data")
    if datatype not in _V2_TYPES:
        raise InvalidArgument(f"{_V2}: input {name!r} has datatype {datatype!r}; use one of "
                              f"{', '.join(_V2_TYPES)}")
    if not isinstance(shape, list) or not shape or not all(
            type(d) is int and d >= 0 for d in shape):
        raise InvalidArgument(f"{_V2}: input {name!r} needs a \"shape\": a list of sizes, rows "
                              "first, such as [2, 3]")
    if not isinstance(data, list):
        raise InvalidArgument(f'{_V2}: input {name!r} needs "data": a list of values, flat '
                              f"(row-major) or nested ({_BINARY_EXTENSION})")
    values = _flatten(data)
    if len(values) != math.prod(shape):
        raise InvalidArgument(f"{_V2}: input {name!r} has {len(values)} values but shape {shape} "
                              f"needs {math.prod(shape)}")
    dtype, _, allowed = _V2_TYPES[datatype]
    for index, value in enumerate(values):
        if type(value) not in allowed:
            raise InvalidArgument(f"{_V2}: input {name!r} is {datatype} but value {index} is "
                                  f"{value!r:.40}; send {datatype} values")
    if dtype.kind in "iu":
        try:
            np.asarray(values, dtype=dtype)
        except OverflowError as exc:
            raise InvalidArgument(f"{_V2}: input {name!r} has a value out of range for "
                                  f"{datatype} ({exc})") from exc
    return _V2Input(name, datatype, shape, values)


def _v2_family_check(expected: str, tensor: _V2Input, field_name: str) -> None:
    actual = _V2_TYPES[tensor.datatype][1]
    text_ok = actual == "string" and expected in ("string", "binary", "datetime")
    if not (text_ok or compatible(expected, actual)):
        raise SignatureError(f"input {tensor.name!r} is {tensor.datatype} but the model takes "
                             f"{expected} values there", field=field_name)


def _v2_tensor(tensors: list[_V2Input], spec: InputSpec) -> Inputs:
    if len(tensors) != 1:
        names = ", ".join(t.name for t in tensors)
        raise SignatureError(f"the model takes one tensor input; got {len(tensors)} ({names})",
                             field="inputs")
    tensor = tensors[0]
    _v2_family_check(spec.dtype, tensor, "dtype")
    array = np.asarray(tensor.values, dtype=_V2_TYPES[tensor.datatype][0]).reshape(tensor.shape)
    if array.shape[0] == 0:
        _no_rows(_V2)
    return validate(spec, Inputs(tensor=array, rows=int(array.shape[0])))


def _v2_columns(tensors: list[_V2Input], spec: InputSpec) -> Inputs:
    families = {c.name: c.family for c in spec.columns}
    rows = tensors[0].shape[0]
    for tensor in tensors:
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            message = (f"input {tensor.name!r} has shape {tensor.shape}; each input is one "
                       "column, of shape [n] or [n, 1]")
            if spec.kind == "columns":
                raise SignatureError(message, field=tensor.name)
            raise InvalidArgument(f"{_V2}: {message}")
        if tensor.shape[0] != rows:
            raise InvalidArgument(f"{_V2}: input {tensor.name!r} has {tensor.shape[0]} rows but "
                                  f"{tensors[0].name!r} has {rows}; give every column one value "
                                  "per row")
        if tensor.name in families:
            _v2_family_check(families[tensor.name], tensor, tensor.name)
    if rows == 0:
        _no_rows(_V2)
    return validate(spec, Inputs(columns={t.name: t.values for t in tensors}, rows=rows))


# --- encoders -------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    """What orjson cannot write itself: odd NumPy arrays and scalars, bytes, dates."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, np.datetime64):
        return str(value)
    tolist = getattr(value, "tolist", None)  # arrays orjson skips (strings, objects), scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _dumps(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise ThreadlineError(f"the model returned predictions that cannot be written as JSON "
                              f"({exc}); return numbers, strings, or arrays of them") from exc


def encode_predict(predictions: Any, *, model: str, version: int, request_id: str) -> bytes:
    """The `POST /predict` response: predictions (one per row) with the model that made them."""
    return _dumps({"predictions": predictions, "model": model, "version": version,
                   "request_id": request_id})


def encode_invocations(predictions: Any) -> bytes:
    """The `POST /invocations` response, as MLflow's scoring server writes it."""
    return _dumps({"predictions": predictions})


_NUMPY_V2 = {np.dtype(np.bool_): "BOOL", **{np.dtype(f"uint{b}"): f"UINT{b}" for b in (8, 16, 32, 64)},
             **{np.dtype(f"int{b}"): f"INT{b}" for b in (8, 16, 32, 64)},
             **{np.dtype(f"float{b}"): f"FP{b}" for b in (16, 32, 64)}}


def encode_v2(predictions: Any, *, model: str, version: int, request_id: str | None,
              output_name: str = "predict") -> bytes:
    """The V2 inference response: one output tensor, its data flat and row-major.

    The datatype follows the NumPy dtype; text, bytes and anything without a V2 number type is
    BYTES.
    """
    try:
        array = np.asarray(predictions)
    except ValueError as exc:
        raise ThreadlineError(f"the model's predictions are ragged ({exc}); return one "
                              "prediction of the same shape per row") from exc
    datatype = _NUMPY_V2.get(array.dtype, "BYTES")
    data = np.ascontiguousarray(array).reshape(-1)
    return _dumps({"model_name": model, "model_version": str(version), "id": request_id,
                   "outputs": [{"name": output_name, "datatype": datatype,
                                "shape": list(array.shape),
                                "data": data if datatype != "BYTES" else data.tolist()}]})


_FAMILY_V2 = {"boolean": "BOOL", "integer": "INT64", "float": "FP64"}  # everything else: BYTES


def _v2_tensors(schema: Mapping[str, Any] | None, tensor_name: str) -> list[dict[str, Any]]:
    if not schema:
        return []
    if schema.get("type") == "columns":
        return [{"name": str(c["name"]), "datatype": _FAMILY_V2.get(str(c["dtype"]), "BYTES"),
                 "shape": [-1]} for c in schema["columns"]]
    return [{"name": tensor_name, "datatype": _FAMILY_V2.get(str(schema.get("dtype")), "BYTES"),
             "shape": list(schema.get("shape") or [-1])}]


def v2_metadata(name: str, versions: Iterable[int | str],
                signature: Mapping[str, Any] | None) -> dict[str, Any]:
    """The V2 model metadata (`GET /v2/models/{name}`), its tensors derived from the signature.

    A table's columns are one input each, shape [-1]; a tensor model's input is named `input`
    and its output `predict` (the default of `encode_v2`).
    """
    signature = signature or {}
    return {"name": name, "versions": [str(v) for v in versions], "platform": "threadline",
            "inputs": _v2_tensors(signature.get("inputs"), "input"),
            "outputs": _v2_tensors(signature.get("outputs"), "predict")}
