"""PyTorch models trained as a `TorchModel` (strategy "ddp"): weights as data, the network as code.

The folder is the one training logs (`train.record.write_torch_folder`), written by the same
`TorchModel.save_folder`: `model.pt` (a `state_dict`, classes and format, saved with
`torch.save` and read with `weights_only=True`, so reading it never unpickles code) and
`torch-model.json` (the factory `"module:function"`, its parameters and the training options).

Loading rebuilds the network by importing the factory and calling it with the stored
parameters, and that runs code named by the stored files. So, as for `pyfunc`:

* a factory shipped with threadline (`threadline.train.torch_nets`, the names in its
  `__all__`) loads by default: installed code that only builds layers from plain values;
* any other factory (the operator's own module) needs `allow_code=True` (`--allow-code`, or
  `allow_code: true` in a deployment's settings). Not every `threadline.*` function is
  allowed: a stored name and keyword arguments could otherwise call any function of the
  package.

The factory module must be importable where the model is loaded (installed, or on
PYTHONPATH), as it is where the workers train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry.errors import UntrustedModel
from threadline.registry.flavors.base import Flavor, LoadPolicy, ModelMeta, SavedFiles, require
from threadline.train import torch_nets
from threadline.train.torch_model import (
    FOLDER_FILES,
    TORCH_FORMAT,
    TorchModel,
    folder_format_id,
    folder_versions,
)

if TYPE_CHECKING:
    from pathlib import Path


def shipped_factory(factory: str) -> bool:
    """Whether `factory` is one of threadline's reference networks (loaded without opt-in)."""
    module, _, name = factory.partition(":")
    return module == torch_nets.__name__ and name in torch_nets.__all__


class TorchFlavor(Flavor):
    """Trained `threadline.train.TorchModel`s: `model.pt` weights plus `torch-model.json`."""

    name = "torch"

    def detect(self, model: Any) -> bool:
        return isinstance(model, TorchModel)

    def format_id(self, model: Any) -> str:
        return folder_format_id()

    def versions(self) -> dict[str, str]:
        return folder_versions()

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        if not isinstance(model, TorchModel):
            raise InvalidArgument(f"the torch flavor saves a threadline TorchModel, not "
                                  f"{type(model).__name__}")
        if model.state_ is None:
            raise InvalidArgument("this TorchModel is not trained: train it with threadline.train.fit, "
                                  "then register it")
        factory = model.get_params()["factory"]
        if not isinstance(factory, str):
            raise InvalidArgument(f"TorchModel factory {factory!r} has no importable name, so a load could "
                                  "not rebuild the network: use a module-level function or 'module:function'")
        require("torch", "torch")
        model.save_folder(folder)
        return SavedFiles(list(FOLDER_FILES), model.folder_options())

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        require("torch", "torch")
        if meta.format_id.partition("+")[0] != TORCH_FORMAT:
            raise InvalidArgument(f"torch model format {meta.format_id!r} is not one this version of "
                                  f"threadline reads ({TORCH_FORMAT}); upgrade threadline")
        # only hashed files are read: the description's own `options` are not covered by the hash
        unlisted = [name for name in FOLDER_FILES if name not in meta.files]
        if unlisted:
            raise InvalidArgument(f"the torch model's description does not list {', '.join(unlisted)}")
        model = TorchModel.from_folder(folder)  # reads weights and names; imports nothing
        factory = str(model.factory)
        if not policy.allow_code and not shipped_factory(factory):
            raise UntrustedModel(
                f"this torch model is built by {factory!r}, code that runs when it is loaded; load it "
                "only if you trust that module, with allow_code=True (--allow-code)",
                ["code"],
            )
        try:
            model.build()  # once now: a missing factory or mismatched weights fail the load, not a request
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped tensors
            raise InvalidArgument(f"the weights in model.pt do not fit the network {factory!r} "
                                  f"builds: {str(exc).splitlines()[0]}") from exc
        return model
