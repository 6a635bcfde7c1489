"""Wire protocols of model serving: request bodies in, checked `Inputs` out; predictions in, bytes out.

One server speaks three protocols:

- Threadline's own `POST /predict`: JSON records (or rows, for tensor models), decoded here;
- MLflow's scoring protocol `POST /invocations`, as `mlflow models serve` accepts it
  (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, or a CSV body), so MLflow
  clients and deployment scripts work unchanged (`mlflow_protocol`);
- the Open Inference Protocol V2 (KServe v2, Triton's HTTP JSON) `POST /v2/models/{name}/infer`
  (`v2_protocol`).

This module is the one the routers import: it holds the Threadline protocol and re-exports the
other two with the pieces they share (`wire`: media types, the 415 refusal, JSON; `json_rows`:
record and row shapes; `signature_check`: `InputSpec` and `validate`), so a router names
`protocols.decode_v2` without knowing which module holds it. The shared pieces sit in the lower
modules and this one only imports them, so there is no import cycle.

Everything is a pure function of the body's bytes, its content type and the model's signature, so
the routers stay thin and the protocol rules are tested without a server. It runs on every
request: JSON is parsed by orjson, a table stays columns of plain Python values (never a pandas
frame), and the signature check costs one type lookup per value. A server that answers many
requests for one model compiles its signature once with `InputSpec.from_signature` and passes the
`InputSpec` wherever a signature is taken.

Security: a body is only ever parsed as JSON or CSV. Pickled bodies are refused by their content
type before a byte is read, and no serving module imports pickle at all: unpickling runs code
chosen by whoever sent the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.serving.json_rows import table_from_records, tensor_from_rows
from threadline.serving.mlflow_protocol import MLFLOW_KEYS, decode_invocations, encode_invocations
from threadline.serving.signature_check import InputSpec, SignatureLike, validate
from threadline.serving.v2_protocol import V2Request, decode_v2, encode_v2, v2_metadata
from threadline.serving.wire import (
    CSV,
    JSON,
    PICKLE_TYPES,
    STATUS,
    UnsupportedMediaType,
    dump_json,
    load_json,
    media_type,
    no_rows,
)

if TYPE_CHECKING:
    from threadline.serving.inputs import Inputs

__all__ = [
    "CSV",
    "JSON",
    "MLFLOW_KEYS",
    "PICKLE_TYPES",
    "STATUS",
    "InputSpec",
    "SignatureLike",
    "UnsupportedMediaType",
    "V2Request",
    "decode_invocations",
    "decode_predict",
    "decode_v2",
    "encode_invocations",
    "encode_predict",
    "encode_v2",
    "v2_metadata",
    "validate",
]

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
    media_type(content_type, (JSON,), _PREDICT)
    data = load_json(body, _PREDICT, _PREDICT_SHAPES)
    if isinstance(data, dict):
        if len(data) == 1 and not (spec.kind == "columns" and next(iter(data)) in spec.names):
            if isinstance(records := data.get("records"), list):
                return table_from_records(records, spec, _PREDICT + " records")
            if "instances" in data:
                return _rows(data["instances"], spec, _PREDICT + " instances")
            if "records" in data:
                raise InvalidArgument(f'{_PREDICT}: "records" must be a list of objects; '
                                      f"{_PREDICT_SHAPES}")
        return table_from_records([data], spec, _PREDICT)
    if isinstance(data, list):
        return _rows(data, spec, _PREDICT)
    raise InvalidArgument(f"{_PREDICT}: the body is a JSON {type(data).__name__}; {_PREDICT_SHAPES}")


def _rows(rows: Any, spec: InputSpec, where: str) -> Inputs:
    if not isinstance(rows, list):
        raise InvalidArgument(f"{where} must be a list of rows; {_PREDICT_SHAPES}")
    if not rows:
        no_rows(where)
    if isinstance(rows[0], dict):
        return table_from_records(rows, spec, where)
    return tensor_from_rows(rows, spec, where)


# --- encoding -------------------------------------------------------------------------------


def encode_predict(predictions: Any, *, model: str, version: int, request_id: str) -> bytes:
    """The `POST /predict` response: predictions (one per row) with the model that made them."""
    return dump_json({"predictions": predictions, "model": model, "version": version,
                      "request_id": request_id})
