"""`TorchModel`: a PyTorch module described by plain values, trained by the "ddp" strategy.

    from threadline.train import TorchModel, fit

    model = TorchModel("threadline.train.torch_nets:mlp", params={"features": 20, "classes": 2},
                       optimizer="sgd", lr=0.05, momentum=0.9, batch_size=256)
    result = fit(model, data="churn-splits@main:train.parquet", target="label", workers=2, epochs=5)
    result.model.predict(X)

The network is built wherever it is needed - on each worker, on the driver to score it - by
calling a factory named `"module:function"` with `params`, so no module object crosses a
process boundary and the run's spec can rebuild it for `resume`. The factory is the
operator's code, importable where the workers run (as a pipeline's module is); a picklable
module-level function is accepted too. The weights are kept as a `state_dict` of CPU tensors
and stored with `torch.save`, read back with `weights_only=True`, so a stored model or
checkpoint never unpickles code.

Torch is imported on first use (`libs.tch`): `import threadline.train` does not import it.
"""

from __future__ import annotations

import importlib
import json
import platform
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.tracking.source import dist_version, major_minor
from threadline.train.libs import sk, tch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = ["FOLDER_FILES", "TORCH_FORMAT", "TorchModel", "folder_format_id", "folder_versions", "load_state",
           "save_state"]

#: the format id of a TorchModel state file (model.pt) and of its model folder
TORCH_FORMAT = "torch-state/1"
STATE_FILE = "model.pt"
SPEC_FILE = "torch-model.json"
#: the files of a TorchModel's model folder (`TorchModel.save_folder`), besides the description
FOLDER_FILES = (STATE_FILE, SPEC_FILE)
TASKS = ("classification", "regression")
LOSSES = {"cross_entropy": "CrossEntropyLoss", "mse": "MSELoss", "l1": "L1Loss", "huber": "HuberLoss"}
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _factory_name(factory: Any) -> str | None:
    """`module:qualname` of a module-level function (None for a lambda, closure or method)."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def import_factory(name: str) -> Callable[..., Any]:
    """The function a `module:function` string names."""
    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(f"TorchModel factory {name!r} does not import here ({exc}); it must be "
                              "installed (or on PYTHONPATH) wherever the workers run") from exc
    if not callable(obj):
        raise InvalidArgument(f"TorchModel factory {name!r} is not callable")
    return obj  # type: ignore[no-any-return]


class TorchModel:
    """A PyTorch network with its training options, usable as an estimator by `fit` ("ddp").

    Args:
        factory: `"module:function"` (or a module-level function) returning a `torch.nn.Module`.
        params: keyword arguments of the factory (plain JSON values).
        task: "classification" (the module outputs one logit per class) or "regression"
            (one output per row).
        loss: "cross_entropy", "mse", "l1" or "huber"; default: cross_entropy for
            classification, mse for regression.
        optimizer: "sgd", "adam" or "adamw"; lr, momentum (sgd), weight_decay its options.
        batch_size: rows per step on each worker (as in torch DDP: the global batch is
            `batch_size * workers`).
        device: "auto" (CUDA when every rank can have a GPU of its own), "cpu" or "cuda" (one
            GPU per worker, claimed from the executor as `Resources(gpus=1)`).
        backend: the process group backend; default nccl on CUDA, gloo on CPU.
        timeout_s: how long a rank waits for its peers before failing (a dead peer).
        threads: torch intra-op threads per worker (1 keeps workers from oversubscribing cores).

    Attributes (after training):
        state_: the module's `state_dict` (CPU tensors). optimizer_state_: the optimizer's.
        classes_: the labels, in the order of the module's outputs (classification).
    """

    def __init__(self, factory: str | Callable[..., Any], params: dict[str, Any] | None = None, *,
                 task: str = "classification", loss: str | None = None, optimizer: str = "sgd",
                 lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 batch_size: int = 256, device: str = "auto", backend: str | None = None,
                 timeout_s: float = 120.0, threads: int = 1) -> None:
        if isinstance(factory, str):
            if not _FACTORY_RE.match(factory):
                raise InvalidArgument(f"TorchModel factory {factory!r}: write it as 'module:function'")
        elif not callable(factory):
            raise InvalidArgument(f"TorchModel factory {factory!r}: a 'module:function' string or a function")
        if task not in TASKS:
            raise InvalidArgument(f"TorchModel task={task!r}: choose one of {', '.join(TASKS)}")
        loss = loss or ("cross_entropy" if task == "classification" else "mse")
        if loss not in LOSSES or (loss == "cross_entropy") != (task == "classification"):
            fits = [k for k in LOSSES if (k == "cross_entropy") == (task == "classification")]
            raise InvalidArgument(f"TorchModel loss={loss!r} for {task}: choose one of {', '.join(fits)}")
        if optimizer not in OPTIMIZERS:
            raise InvalidArgument(f"TorchModel optimizer={optimizer!r}: choose one of "
                                  f"{', '.join(OPTIMIZERS)}")
        if device not in ("auto", "cpu", "cuda"):
            raise InvalidArgument(f"TorchModel device={device!r}: choose auto, cpu or cuda")
        for key, value in (("batch_size", batch_size), ("threads", threads)):
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"TorchModel {key}={value!r}: must be an int >= 1")
        if not lr > 0 or not timeout_s > 0:
            raise InvalidArgument(f"TorchModel lr={lr!r}, timeout_s={timeout_s!r}: both must be > 0")
        self.factory, self.params = factory, dict(params or {})
        self.task, self.loss, self.optimizer = task, loss, optimizer
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.batch_size, self.device, self.backend = batch_size, device, backend
        self.timeout_s, self.threads = float(timeout_s), threads
        self.state_: dict[str, Any] | None = None
        self.optimizer_state_: dict[str, Any] | None = None
        self.classes_: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"TorchModel({self.get_params()['factory']!r}, params={self.params!r}, task={self.task!r})"

    # -- the estimator-like surface fit, spec and record use ------------------------------

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor arguments (the factory as `module:function` where it has a name)."""
        factory = self.factory
        if not isinstance(factory, str):
            factory = _factory_name(factory) or factory
        return {"factory": factory, "params": dict(self.params), "task": self.task, "loss": self.loss,
                "optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "device": self.device,
                "backend": self.backend, "timeout_s": self.timeout_s, "threads": self.threads}

    @property
    def _estimator_type(self) -> str:  # scikit-learn < 1.6 reads this in is_classifier
        return "classifier" if self.task == "classification" else "regressor"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags, so `sklearn.base.is_classifier` answers for this wrapper."""
        utils = sk("sklearn.utils")
        classifier = self.task == "classification"
        return utils.Tags(estimator_type=self._estimator_type, target_tags=utils.TargetTags(required=True),
                          classifier_tags=utils.ClassifierTags() if classifier else None,
                          regressor_tags=None if classifier else utils.RegressorTags())

    def unfitted(self) -> TorchModel:
        """A copy with the same options and no weights (what is shipped to workers)."""
        return TorchModel(self.factory, self.params, **{k: v for k, v in self.get_params().items()
                                                        if k not in ("factory", "params")})

    def with_state(self, payload: dict[str, Any]) -> TorchModel:
        """A copy holding a saved state (`load_state`'s payload): weights, optimizer, classes."""
        model = self.unfitted()
        model.state_, model.optimizer_state_ = payload["model"], payload.get("optimizer")
        classes = payload.get("classes")
        model.classes_ = None if classes is None else np.asarray(classes)
        return model

    # -- building the network and its training parts --------------------------------------

    def build(self) -> Any:
        """A new `torch.nn.Module` from the factory (weights loaded when the model is trained)."""
        torch = tch()
        fn = import_factory(self.factory) if isinstance(self.factory, str) else self.factory
        module = fn(**self.params)
        if not isinstance(module, torch.nn.Module):
            raise InvalidArgument(f"TorchModel factory {self.get_params()['factory']!r} returned "
                                  f"{type(module).__name__}, not a torch.nn.Module")
        if self.state_ is not None:
            module.load_state_dict(self.state_)
        return module

    def make_loss(self) -> Any:
        """The loss module."""
        return getattr(tch().nn, LOSSES[self.loss])()

    def make_optimizer(self, parameters: Iterable[Any]) -> Any:
        """The optimizer over `parameters`, with this model's options."""
        options: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            options["momentum"] = self.momentum
        return getattr(tch().optim, OPTIMIZERS[self.optimizer])(parameters, **options)

    def targets(self, y: np.ndarray) -> Any:
        """Labels as the loss wants them: class indices (int64) or float32 values."""
        torch = tch()
        if self.task == "classification":
            assert self.classes_ is not None
            return torch.from_numpy(np.searchsorted(self.classes_, y).astype(np.int64))
        return torch.from_numpy(np.asarray(y, dtype=np.float32))

    # -- prediction on the driver ------------------------------------------------------------

    def _outputs(self, X: Any, rows: int = 65_536) -> np.ndarray:
        if self.state_ is None:
            raise InvalidArgument("this TorchModel is not trained yet: train it with threadline.train.fit")
        torch = tch()
        module = self.build().eval()
        data = np.asarray(X, dtype=np.float32)
        parts = []
        with torch.no_grad():
            for begin in range(0, len(data), rows):
                out = module(torch.from_numpy(np.ascontiguousarray(data[begin:begin + rows])))
                parts.append(out.detach().cpu().numpy())
        out = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)
        return out.reshape(len(out)) if self.task == "regression" else out

    def predict(self, X: Any) -> np.ndarray:
        """Labels (classification) or values (regression) for the rows of `X`."""
        out = self._outputs(X)
        if self.task == "regression":
            return out
        assert self.classes_ is not None
        labels: np.ndarray = self.classes_[out.argmax(axis=1)]
        return labels

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the module's outputs), columns in `classes_` order."""
        if self.task != "classification":
            raise InvalidArgument("predict_proba is for classification; this TorchModel is a regressor")
        out = self._outputs(X).astype(np.float64)
        out = np.exp(out - out.max(axis=1, keepdims=True))
        probabilities: np.ndarray = out / out.sum(axis=1, keepdims=True)
        return probabilities

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification) or R^2 (regression), as scikit-learn's `score`."""
        y = np.asarray(y)
        predicted = self.predict(X)
        if self.task == "classification":
            return float(np.mean(predicted == y))
        residual = float(np.sum((y - predicted) ** 2))
        total = float(np.sum((y - y.mean()) ** 2))
        return 1.0 - residual / total if total > 0 else 0.0

    # -- storing -----------------------------------------------------------------------------
    # A model folder is `FOLDER_FILES` plus the description file (`threadline-model.json`) that
    # training (`train.record.write_torch_folder`) or the registry's torch flavor writes around
    # them, both with `folder_format_id`, `folder_versions` and `folder_options`: one format.

    def save_folder(self, folder: Path) -> dict[str, Any]:
        """Write `model.pt` and `torch-model.json` (how to rebuild it) into `folder`; its description."""
        assert self.state_ is not None
        save_state(folder / STATE_FILE, self.state_, None, self.classes_)
        spec = {"format": TORCH_FORMAT, "estimator": self.get_params(),
                "classes": None if self.classes_ is None else self.classes_.tolist()}
        (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True, default=str) + "\n")
        return spec

    def folder_options(self) -> dict[str, Any]:
        """What the description file's `options` record about the model (informational only:
        loading reads the hashed `torch-model.json`, never these)."""
        factory = self.get_params()["factory"]
        return {"factory": factory if isinstance(factory, str) else str(factory), "task": self.task}

    @classmethod
    def from_folder(cls, folder: Path) -> TorchModel:
        """The model a `save_folder` folder holds, with its weights; imports no factory.

        The constructor only checks the factory's name, and `load_state` reads tensors and plain
        values (`weights_only`), so nothing in the folder runs until `build` (or `predict`)
        imports the factory: a caller decides first whether it trusts that code.

        Raises:
            InvalidArgument: the folder is not a TorchModel folder of a format read here.
        """
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"{SPEC_FILE} cannot be read: {exc}") from exc
        if not isinstance(spec, dict) or spec.get("format") != TORCH_FORMAT:
            found = spec.get("format") if isinstance(spec, dict) else None
            raise InvalidArgument(f"{SPEC_FILE} has format {found!r}; this version of threadline "
                                  f"reads {TORCH_FORMAT!r}")
        options = spec.get("estimator")
        if not isinstance(options, dict) or not isinstance(options.get("factory"), str):
            raise InvalidArgument(f"{SPEC_FILE} names no factory 'module:function' to rebuild the "
                                  "network from")
        payload = load_state(folder / STATE_FILE)
        try:
            return cls(**options).with_state(payload)
        except (TypeError, ValueError, KeyError) as exc:  # an unknown, missing or mistyped value
            raise InvalidArgument(f"{SPEC_FILE} and {STATE_FILE} do not describe a TorchModel: "
                                  f"{exc!r}") from exc


def folder_format_id() -> str:
    """The format id of a TorchModel folder written here, e.g. `torch-state/1+torch/2.13`."""
    return f"{TORCH_FORMAT}+torch/{major_minor(dist_version('torch'))}"


def folder_versions() -> dict[str, str]:
    """The library versions a TorchModel folder's description records."""
    return {"python": platform.python_version(), "torch": dist_version("torch")}


def save_state(path: Path, model: dict[str, Any], optimizer: dict[str, Any] | None,
               classes: np.ndarray | None = None) -> None:
    """Write weights (and optimizer state, classes) with `torch.save`, atomically (temp + rename)."""
    torch = tch()
    payload = {"format": TORCH_FORMAT, "model": model, "optimizer": optimizer,
               "classes": None if classes is None else classes.tolist()}
    temp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(payload, temp)
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)


def load_state(path: Path) -> dict[str, Any]:
    """Read a `save_state` file onto the CPU; `weights_only`: tensors and plain values, never code."""
    torch = tch()
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError... for bad or foreign files
        raise InvalidArgument(f"{path.name} is not a TorchModel state file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != TORCH_FORMAT:
        raise InvalidArgument(f"{path.name}: not a {TORCH_FORMAT} state file")
    return payload
