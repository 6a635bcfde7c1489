"""MLflow's scoring protocol, `POST /invocations`, as `mlflow models serve` (MLflow 2 and 3) speaks it.

A JSON body with one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`, or a CSV
body with a header row, decodes to checked `Inputs`; predictions go back as
`{"predictions": ...}`. MLflow clients and deployment scripts work against Threadline unchanged.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.registry.signature import SignatureError
from threadline.serving.inputs import Inputs
from threadline.serving.json_rows import table_from_records, tensor_from_rows
from threadline.serving.signature_check import InputSpec, float_rows, validate
from threadline.serving.wire import CSV, JSON, dump_json, load_json, media_type, no_rows

if TYPE_CHECKING:
    from threadline.serving.signature_check import SignatureLike

__all__ = ["MLFLOW_KEYS", "decode_invocations", "encode_invocations"]

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

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
    if media_type(content_type, (JSON, CSV), _INVOCATIONS) == CSV:
        return _decode_csv(body, spec)
    data = load_json(body, _INVOCATIONS, _MLFLOW_SHAPES)
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
        return table_from_records(payload, spec, where)
    return _tf_serving(payload, spec, where)


def _tf_serving(payload: Any, spec: InputSpec, where: str) -> Inputs:
    if isinstance(payload, dict):
        return _dict_of_lists(payload, spec, where)
    if not isinstance(payload, list):
        raise InvalidArgument(f"{where} must be a list of rows, a list of records, or an object "
                              f"of column -> values; got a {type(payload).__name__}")
    if not payload:
        no_rows(where)
    first = payload[0]
    if isinstance(first, dict):
        return table_from_records(payload, spec, where)
    if spec.kind == "columns":
        if len(spec.names) == 1 and not isinstance(first, list):
            return validate(spec, Inputs(columns={spec.names[0]: payload}, rows=len(payload)))
        return _positional(payload, spec, where)
    return tensor_from_rows(payload, spec, where)


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
        no_rows(where)
    index = payload.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidArgument(f"{where} 'index' must be a list with one entry per row of 'data'")
    if spec.kind == "tensor" or (names is None and spec.kind == "any"):
        return tensor_from_rows(data, spec, where)
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
    fast = float_rows(spec, data) if tuple(names) == spec.names else None
    if fast is not None:
        return fast
    columns = {name: [row[i] for row in data] for i, name in enumerate(names)}
    return validate(spec, Inputs(columns=columns, rows=len(data)))


def _positional(rows: list[Any], spec: InputSpec, where: str) -> Inputs:
    """A table from rows of values in the signature's column order."""
    width = len(spec.names)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise SignatureError(f"{where}: row {index} has {got} but the model takes {width} "
                                 f"columns ({', '.join(spec.names)})", field="columns")
    fast = float_rows(spec, rows)
    if fast is not None:
        return fast
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
        no_rows(where)
    return validate(spec, Inputs(columns=columns, rows=rows))


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
        no_rows(where)
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


# --- encoding -------------------------------------------------------------------------------


def encode_invocations(predictions: Any) -> bytes:
    """The `POST /invocations` response, as MLflow's scoring server writes it."""
    return dump_json({"predictions": predictions})
