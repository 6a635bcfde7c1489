"""What training writes to a run: the model folder, epoch checkpoints and the training spec.

The model folder has the layout the registry's sklearn flavor writes - `model.skops` plus
`threadline-model.json` (format `threadline.model/1`, file hashes in BLAKE3) - so that
`ModelRegistry.register(name, run_id=..., artifact_path="model")` registers it as is. It is
written here rather than through the registry because the registry is a layer above training.

Checkpoints are skops files too: loading one builds only scikit-learn and NumPy types, so a
checkpoint stored with a run never becomes code.

A `TorchModel` (strategy "ddp") is stored as `model.pt` (a `state_dict` saved with `torch.save`,
read back with `weights_only=True`) plus `torch-model.json` (its factory and options), flavor
"torch": the layout the registry's torch flavor writes and loads, built from the same
`TorchModel.save_folder` and description helpers. Its checkpoint holds the optimizer state too;
`state.json` records the format (`torch-state/1`) that `load_checkpoint` dispatches on.
"""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from threadline.errors import InvalidArgument
from threadline.tracking.source import dist_version, major_minor
from threadline.train.libs import sk
from threadline.train.torch_model import (
    FOLDER_FILES,
    STATE_FILE,
    TORCH_FORMAT,
    TorchModel,
    folder_format_id,
    folder_versions,
    load_state,
    save_state,
)

if TYPE_CHECKING:
    from threadline.tracking.store import TrackingStore

__all__ = ["CHECKPOINT", "MODEL_ARTIFACT", "SPEC_FILE", "load_checkpoint", "log_model", "save_checkpoint"]

MODEL_ARTIFACT = "model"
CHECKPOINT = "checkpoint"
SPEC_FILE = "train-spec.json"
MODEL_FILE = "model.skops"
META_FILE = "threadline-model.json"
META_FORMAT = "threadline.model/1"
#: type-name prefixes a checkpoint may build when it is loaded back
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


def _hash(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def write_model_folder(model: Any, folder: Path) -> None:
    """Save a scikit-learn model in the registry's sklearn-flavor layout."""
    sio = sk("skops.io")

    sio.dump(model, folder / MODEL_FILE)
    meta = {
        "format": META_FORMAT, "flavor": "sklearn",
        "format_id": (f"skops/{major_minor(dist_version('skops'))}"
                      f"+sklearn/{major_minor(dist_version('scikit-learn'))}"),
        "files": {MODEL_FILE: _hash(folder / MODEL_FILE)}, "signature": {}, "example": None,
        "versions": {"python": platform.python_version(), "scikit-learn": dist_version("scikit-learn"),
                     "skops": dist_version("skops")},
        "options": {},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def write_torch_folder(model: TorchModel, folder: Path) -> None:
    """Save a trained TorchModel: `model.pt`, `torch-model.json` and the description file.

    The same files, format id, versions and options as the registry's torch flavor writes.
    """
    model.save_folder(folder)
    meta = {
        "format": META_FORMAT, "flavor": "torch", "format_id": folder_format_id(),
        "files": {name: _hash(folder / name) for name in FOLDER_FILES}, "signature": {}, "example": None,
        "versions": folder_versions(), "options": model.folder_options(),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def log_model(store: TrackingStore, run_id: str, model: Any) -> None:
    """Log `model` as the run's artifact folder `model`."""
    with tempfile.TemporaryDirectory(prefix="tl-train-model-") as tmp:
        if isinstance(model, TorchModel):
            write_torch_folder(model, Path(tmp))
        else:
            write_model_folder(model, Path(tmp))
        store.log_artifacts(run_id, tmp, MODEL_ARTIFACT)


def save_checkpoint(store: TrackingStore, run_id: str, model: Any, state: dict[str, Any]) -> None:
    """Log the model and the loop state (epoch, RNG state...) as the run's `checkpoint` folder."""
    with tempfile.TemporaryDirectory(prefix="tl-train-ckpt-") as tmp:
        if isinstance(model, TorchModel):
            assert model.state_ is not None
            save_state(Path(tmp) / STATE_FILE, model.state_, model.optimizer_state_, model.classes_)
            state = {**state, "format": TORCH_FORMAT}
        else:
            sk("skops.io").dump(model, Path(tmp) / MODEL_FILE)
        (Path(tmp) / "state.json").write_text(json.dumps(state, sort_keys=True))
        store.log_artifacts(run_id, tmp, CHECKPOINT)


def load_checkpoint(store: TrackingStore, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The last checkpoint of a run: (model, state).

    A torch checkpoint's "model" is `load_state`'s payload (weights, optimizer state, classes):
    `TorchModel.with_state` turns it back into a model.

    Raises:
        NotFound: the run has no checkpoint.
        InvalidArgument: the checkpoint would build a type outside scikit-learn and NumPy.
    """
    state = json.loads(store.read_artifact(run_id, f"{CHECKPOINT}/state.json"))
    with tempfile.TemporaryDirectory(prefix="tl-train-ckpt-") as tmp:
        if state.get("format") == TORCH_FORMAT:
            path = Path(tmp) / STATE_FILE
            path.write_bytes(store.read_artifact(run_id, f"{CHECKPOINT}/{STATE_FILE}"))
            return load_state(path), state
        sio = sk("skops.io")
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(store.read_artifact(run_id, f"{CHECKPOINT}/{MODEL_FILE}"))
        untrusted = [str(t) for t in sio.get_untrusted_types(file=path)]
        refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
        if refused:
            raise InvalidArgument(f"the checkpoint of run {run_id} holds types outside scikit-learn "
                                  f"and NumPy ({', '.join(refused)}); it is not loaded")
        return sio.load(path, trusted=untrusted or None), state


def save_spec(store: TrackingStore, run_id: str, spec: dict[str, Any]) -> None:
    """Log the JSON training spec `resume` rebuilds the training from."""
    with tempfile.TemporaryDirectory(prefix="tl-train-spec-") as tmp:
        path = Path(tmp) / SPEC_FILE
        path.write_text(json.dumps(spec, sort_keys=True, indent=1))
        store.log_artifacts(run_id, path)


def load_spec(store: TrackingStore, run_id: str) -> dict[str, Any]:
    """The training spec a run logged."""
    spec: dict[str, Any] = json.loads(store.read_artifact(run_id, SPEC_FILE))
    return spec
