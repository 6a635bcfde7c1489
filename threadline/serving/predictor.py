"""`Predictor`: one loaded model version, ready for the hot path.

Loading picks the cheapest call that gives the model's own answers: rows of numeric columns
become one float matrix (no DataFrame), and a scikit-learn model that skl2onnx converts is run
by ONNX Runtime when the converted graph gives the same answers on the version's stored
example (checked at load; otherwise the model itself answers). Tables with text columns go
through pandas, as the model was trained on them.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.serving.inputs import Inputs
from threadline.serving.protocols import InputSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.registry.records import ModelVersion

log = logging.getLogger(__name__)
_NUMERIC = ("integer", "float", "boolean")
#: the warning scikit-learn gives when a model fitted on a frame gets a matrix in the same order
_FEATURE_NAMES = "X does not have valid feature names"


def quiet_feature_name_warning() -> None:
    """Silence scikit-learn's warning for matrices given to frame-fitted models: the server
    orders the columns by the signature, which is what the warning guards."""
    warnings.filterwarnings("ignore", message=_FEATURE_NAMES, category=UserWarning)


def _same_answers(expected: Any, got: Any) -> bool:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        got = got.reshape(expected.shape) if got.size == expected.size else got
    if expected.shape != got.shape:
        return False
    if expected.dtype.kind in "fc":
        return bool(np.allclose(expected, got.astype(expected.dtype), rtol=1e-4, atol=1e-5))
    return bool(np.array_equal(expected, got.astype(expected.dtype)))


class _OnnxCall:
    """A scikit-learn model converted to ONNX, returning its `predict` output."""

    def __init__(self, model: Any, features: int) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from skl2onnx import to_onnx  # type: ignore[import-untyped]

        sample = np.zeros((1, features), dtype=np.float32)
        options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
        graph = to_onnx(model, sample, options=options, target_opset=None)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = [self.session.get_outputs()[0].name]

    def __call__(self, matrix: np.ndarray[Any, Any]) -> Any:
        out = self.session.run(self.output, {self.input: matrix.astype(np.float32, copy=False)})[0]
        return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out


class Predictor:
    """A model version loaded for serving.

    Attributes:
        version: the registry's record of the version.
        id: `name/N`, the key of its cache entries and metrics.
        engine: what answers: `onnxruntime`, or the model's own flavor.
        names: the signature's column names in the model's order (() for tensors).
        inflight: requests routed to it and not answered yet (drained before unloading).
        seconds_per_call: moving average of a model call, for the batcher's choices.
    """

    def __init__(self, version: ModelVersion, model: Any, *, onnx: str = "auto",
                 example: Any = None) -> None:
        self.version = version
        self.model = model
        self.id = f"{version.name}/{version.version}"
        self.engine = version.flavor
        self.inflight = 0
        self.seconds_per_call = 0.0
        #: the signature's inputs compiled once, for the protocol decoders
        self.spec = InputSpec.from_signature(version.signature or None)
        inputs = (version.signature or {}).get("inputs") or {}
        self.columns: list[str] | None = (
            [str(c["name"]) for c in inputs["columns"]] if inputs.get("type") == "columns" else None)
        self.names = tuple(self.columns or ())
        self.numeric = self.columns is not None and all(
            c["dtype"] in _NUMERIC for c in inputs["columns"])
        self._call: Callable[[Inputs], Any] = self._choose(onnx, example)

    # ------------------------------------------------------------------ calls
    def _matrix(self, inputs: Inputs) -> np.ndarray[Any, Any]:
        assert inputs.columns is not None
        assert self.columns is not None
        columns = inputs.columns
        # the decoder's matrix, when its columns are this model's in this order (a shadow
        # version may take other columns, or the same in another order)
        if inputs.matrix is not None and tuple(columns) == self.names:
            return inputs.matrix
        try:
            return np.array([columns[name] for name in self.columns], dtype=np.float64).T
        except (TypeError, ValueError) as exc:  # a None among numbers: let the model see NaN
            rows = [[np.nan if v is None else v for v in columns[name]] for name in self.columns]
            try:
                return np.array(rows, dtype=np.float64).T
            except (TypeError, ValueError):
                raise InvalidArgument(f"cannot read the inputs as numbers: {exc}") from exc

    def _frame(self, inputs: Inputs) -> Any:
        import pandas as pd

        assert inputs.columns is not None
        order = self.columns or list(inputs.columns)
        return pd.DataFrame({name: inputs.columns[name] for name in order})

    def _native(self, inputs: Inputs) -> Any:
        if inputs.tensor is not None:
            return self.model.predict(inputs.tensor)
        if self.numeric:
            return self.model.predict(self._matrix(inputs))
        return self.model.predict(self._frame(inputs))

    def _choose(self, onnx: str, example: Any) -> Callable[[Inputs], Any]:
        """The fastest call that answers like the model does on its stored example."""
        if onnx != "auto" or not self.numeric or self.columns is None or example is None:
            return self._native
        if type(self.model).__module__.split(".")[0] != "sklearn":
            return self._native
        try:
            probe = example_inputs(example, self.columns)
            converted = _OnnxCall(self.model, len(self.columns))
            if _same_answers(self._native(probe), converted(self._matrix(probe))):
                self.engine = "onnxruntime"
                return lambda inputs: converted(self._matrix(inputs)) if inputs.tensor is None \
                    else converted(np.asarray(inputs.tensor))
            log.info("serving %s without ONNX Runtime: the converted graph answers differently",
                     self.id)
        except Exception as exc:  # noqa: BLE001 - any conversion failure means "use the model"
            log.info("serving %s without ONNX Runtime: %s", self.id, str(exc).splitlines()[0][:200])
        return self._native

    def predict(self, inputs: Inputs) -> np.ndarray[Any, Any]:
        """Answers for the rows of `inputs`, one per row (or one row of outputs per row)."""
        start = time.perf_counter()
        out = np.asarray(self._call(inputs))
        elapsed = time.perf_counter() - start
        self.seconds_per_call = elapsed if not self.seconds_per_call else (
            0.9 * self.seconds_per_call + 0.1 * elapsed)
        if out.ndim == 0 or out.shape[0] != inputs.rows:
            raise InvalidArgument(f"model {self.id} returned {out.shape} for {inputs.rows} rows; a "
                                  "served model must give one answer per row")
        return out


def example_inputs(example: Any, columns: list[str] | None) -> Inputs:
    """A stored example (frame, Arrow table, records, array) as `Inputs`."""
    if hasattr(example, "to_dict") and hasattr(example, "columns"):  # pandas
        return Inputs.table({str(k): list(v) for k, v in example.to_dict(orient="list").items()})
    if hasattr(example, "to_pydict"):  # Arrow
        return Inputs.table({str(k): v for k, v in example.to_pydict().items()})
    if isinstance(example, list) and example and isinstance(example[0], dict):
        names = columns or list(example[0])
        return Inputs.table({n: [row.get(n) for row in example] for n in names})
    array = np.asarray(example)
    if columns is not None and array.ndim == 2 and array.shape[1] == len(columns):
        return Inputs.table({n: array[:, i].tolist() for i, n in enumerate(columns)})
    return Inputs.array(array)
