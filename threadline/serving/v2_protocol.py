"""The Open Inference Protocol V2 (KServe v2, Triton's HTTP JSON): requests, responses, metadata.

`POST /v2/models/{name}/infer` bodies decode to a `V2Request` of checked `Inputs`, predictions
encode as one output tensor, and `v2_metadata` derives a model's tensors from its signature. Only
JSON tensors are spoken: Triton's binary tensor extension is refused with a message that says
what to send instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from threadline.errors import InvalidArgument, ThreadlineError
from threadline.registry.signature import SignatureError, compatible
from threadline.serving.inputs import Inputs
from threadline.serving.signature_check import InputSpec, validate
from threadline.serving.wire import JSON, UnsupportedMediaType, dump_json, load_json, media_type, no_rows

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from threadline.serving.signature_check import SignatureLike

__all__ = ["V2Request", "decode_v2", "encode_v2", "v2_metadata"]

_OCTET_STREAM = "application/octet-stream"
_BINARY_EXTENSION = ("the binary tensor data extension (Inference-Header-Content-Length) is not "
                     "supported; send every tensor as JSON \"data\" (tritonclient: "
                     "InferInput.set_data_from_numpy(array, binary_data=False))")

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
    media_type(content_type, (JSON,), _V2, default=JSON)
    data = load_json(body, _V2, f"{_V2_SHAPE} ({_BINARY_EXTENSION})")
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
        no_rows(_V2)
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
        no_rows(_V2)
    return validate(spec, Inputs(columns={t.name: t.values for t in tensors}, rows=rows))


# --- encoding -------------------------------------------------------------------------------

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
    return dump_json({"model_name": model, "model_version": str(version), "id": request_id,
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
