"""Plain pickle, for models nothing else can store: loaded only on an explicit opt-in.

Unpickling runs arbitrary code, so a load needs `allow_pickle=True` AND the file's bytes must
hash to what the registry recorded when the version was registered. Both checks happen
before a single byte is unpickled; a tampered or swapped file is refused.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import blake3

from threadline.errors import IntegrityError
from threadline.registry.errors import UntrustedModel
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    SavedFiles,
    python_version,
    verify_files,
)

if TYPE_CHECKING:
    from pathlib import Path

MODEL_FILE = "model.pkl"


class PickleFlavor(Flavor):
    """Any picklable object; never chosen automatically, never loaded by default."""

    name = "pickle"

    def detect(self, model: Any) -> bool:
        return False  # only on request: `flavor="pickle"`

    def format_id(self, model: Any) -> str:
        return f"pickle/{pickle.DEFAULT_PROTOCOL}+python/{'.'.join(python_version().split('.')[:2])}"

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        with (folder / MODEL_FILE).open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.DEFAULT_PROTOCOL)
        return SavedFiles([MODEL_FILE])

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        if not policy.allow_pickle:
            raise UntrustedModel(
                "this model is a plain pickle, which runs code when loaded; load it only if you "
                "trust whoever registered it, with allow_pickle=True (--allow-pickle)",
                ["pickle"],
            )
        if policy.expected_hash is None:
            raise IntegrityError("a pickle is loaded only against the hash the registry recorded; "
                                 "load it through ModelRegistry.load_model")
        # Security: the recomputed hash of the bytes on disk must equal the registry's record
        # before anything is unpickled; the description file in the folder is not trusted.
        verify_files(folder, meta, policy.expected_hash)
        # the bytes unpickled are the bytes hashed: read once, check, then load from memory
        data = (folder / MODEL_FILE).read_bytes()
        if blake3.blake3(data).hexdigest() != meta.files.get(MODEL_FILE):
            raise IntegrityError(f"{MODEL_FILE} changed while it was being loaded; not unpickled",
                                 key=MODEL_FILE)
        return pickle.loads(data)  # noqa: S301 - opt-in, and the bytes match the registry's hash
