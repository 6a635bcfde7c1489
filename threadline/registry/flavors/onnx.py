"""ONNX graphs, run with ONNX Runtime; `to_onnx` converts scikit-learn models with skl2onnx.

An ONNX file is a data-only graph of standard operators: loading it runs no Python code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    SavedFiles,
    python_version,
    require,
)
from threadline.registry.flavors.sklearn import is_sklearn
from threadline.tracking.source import dist_version, major_minor

if TYPE_CHECKING:
    from pathlib import Path

MODEL_FILE = "model.onnx"


def to_onnx(model: Any, example: Any) -> Any:
    """Convert a fitted scikit-learn model to an ONNX graph, typed from an example input.

    Raises:
        InvalidArgument: skl2onnx cannot convert this model (the message says why).
    """
    skl2onnx = require("skl2onnx", "onnx")
    np = require("numpy", "onnx")
    sample = example[:1] if hasattr(example, "__getitem__") else example
    if hasattr(sample, "dtype") and sample.dtype.kind in "iuf":
        sample = np.asarray(sample, dtype=np.float32)
    try:
        return skl2onnx.to_onnx(model, sample, target_opset=None)
    except Exception as exc:
        raise InvalidArgument(f"cannot convert {type(model).__name__} to ONNX: {exc}") from exc


class OnnxModel:
    """An ONNX Runtime session with `predict` returning the graph's first output."""

    def __init__(self, session: Any) -> None:
        self.session = session
        first = session.get_inputs()[0]
        self.input_name: str = first.name
        self.input_type: str = first.type

    def predict(self, data: Any) -> Any:
        """Run the graph on `data` (cast to float32 when the graph takes floats)."""
        np = require("numpy", "onnx")
        array = np.asarray(data)
        if "float" in self.input_type and array.dtype != np.float32:
            array = array.astype(np.float32)
        return self.session.run(None, {self.input_name: array})[0]


class OnnxFlavor(Flavor):
    """`onnx.ModelProto` graphs, and scikit-learn models converted on save."""

    name = "onnx"

    def detect(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "onnx" and type(model).__name__ == "ModelProto"

    def format_id(self, model: Any) -> str:
        opset = max((o.version for o in getattr(model, "opset_import", ())), default=0)
        return f"onnx/{opset}+onnxruntime/{major_minor(dist_version('onnxruntime'))}"

    def versions(self) -> dict[str, str]:
        return {"python": python_version(), "onnx": dist_version("onnx"),
                "onnxruntime": dist_version("onnxruntime")}

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        if is_sklearn(model):
            if options.get("example") is None:
                raise InvalidArgument("converting a scikit-learn model to ONNX needs example=...")
            model = to_onnx(model, options["example"])
        if isinstance(model, bytes):
            (folder / MODEL_FILE).write_bytes(model)
        elif self.detect(model):
            (folder / MODEL_FILE).write_bytes(model.SerializeToString())
        else:
            raise InvalidArgument(f"the onnx flavor saves ONNX graphs, not {type(model).__name__}")
        return SavedFiles([MODEL_FILE], format_id=None if isinstance(model, bytes) else self.format_id(model))

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        ort = require("onnxruntime", "onnx")
        session = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
        return OnnxModel(session)
