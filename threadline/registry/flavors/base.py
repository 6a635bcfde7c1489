"""What every model flavor shares: the `Flavor` base, the model folder's description file,
file hashing and the load policy.

A model folder holds the flavor's files plus `threadline-model.json`:

    {"format": "threadline.model/1", "flavor": "sklearn", "format_id": "skops/0.16+sklearn/1.9",
     "files": {"model.skops": "<blake3>"}, "signature": {...}, "example": "input_example.json",
     "versions": {"python": "3.11.9", "scikit-learn": "1.9.1"}, "options": {...}}

The file itself is untrusted input when a model is loaded: its names are checked to stay
inside the folder and every file's hash is recomputed, so the hash recorded in the registry
(in the database, which is trusted) decides whether the bytes are the registered ones.
"""

from __future__ import annotations

import importlib
import json
import platform
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import blake3

from threadline.errors import IntegrityError, InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

META_FILE = "threadline-model.json"
META_FORMAT = "threadline.model/1"
#: a model file name: one plain segment, so no name in an untrusted meta file can leave the folder
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def require(module: str, extra: str) -> Any:
    """Import an optional heavy library on first use, or say which extra installs it.

    Flavors call this inside `save`/`load` so that importing the registry never imports
    scikit-learn, ONNX Runtime or a boosting library.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidArgument(
            f"this model flavor needs {module!r}: pip install 'threadline[{extra}]'"
        ) from exc


def file_hash(path: Path) -> str:
    """BLAKE3 hex digest of a file's bytes."""
    hasher = blake3.blake3()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def artifact_hash(files: Mapping[str, str]) -> str:
    """The hash of a model artifact: BLAKE3 of the sorted (name, file hash) list.

    This is what the version row records and what a load checks before any opt-in
    deserialization: change one byte of one file, or add or drop a file, and it differs.
    """
    canonical = json.dumps(sorted(files.items()), separators=(",", ":"))
    return blake3.blake3(canonical.encode()).hexdigest()


def check_file_name(name: str) -> str:
    """Return `name` if it is a plain file name inside the model folder, else raise."""
    if not isinstance(name, str) or not _FILE_RE.match(name) or ".." in name:
        raise InvalidArgument(f"invalid model file name {name!r}: use one plain file name")
    return name


@dataclass(frozen=True)
class LoadPolicy:
    """What the caller trusts when loading a model; the default trusts nothing executable.

    Attributes:
        trusted: extra type names skops may build (beyond skops' own safe list).
        allow_pickle: permit plain pickle, and then only if `expected_hash` matches.
        allow_code: permit importing the code files stored with a `pyfunc` model.
        expected_hash: the artifact hash recorded in the registry for this version.
    """

    trusted: tuple[str, ...] = ()
    allow_pickle: bool = False
    allow_code: bool = False
    expected_hash: str | None = None


@dataclass(frozen=True)
class ModelMeta:
    """The contents of `threadline-model.json`."""

    flavor: str
    format_id: str
    files: dict[str, str]
    signature: dict[str, Any] = field(default_factory=dict)
    example: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """The artifact hash of the files this description lists."""
        return artifact_hash(self.files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": META_FORMAT, "flavor": self.flavor, "format_id": self.format_id,
            "files": dict(sorted(self.files.items())), "signature": self.signature,
            "example": self.example, "versions": self.versions, "options": self.options,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ModelMeta:
        """Parse an (untrusted) description; every name and type is checked."""
        if not isinstance(raw, dict) or raw.get("format") != META_FORMAT:
            fmt = raw.get("format") if isinstance(raw, dict) else None
            raise InvalidArgument(
                f"{META_FILE} has format {fmt!r}; this version of threadline reads {META_FORMAT!r}"
            )
        files = raw.get("files")
        if not isinstance(files, dict) or not files:
            raise InvalidArgument(f"{META_FILE} lists no model files")
        for name, digest in files.items():
            check_file_name(name)
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise InvalidArgument(f"{META_FILE}: file {name!r} has no valid BLAKE3 hash")
        example = raw.get("example")
        if example is not None and (not isinstance(example, str) or example not in files):
            raise InvalidArgument(f"{META_FILE}: example {example!r} is not one of its files")
        for key in ("flavor", "format_id"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise InvalidArgument(f"{META_FILE}: {key!r} is missing")
        return cls(
            flavor=raw["flavor"], format_id=raw["format_id"], files=dict(files),
            signature=dict(raw.get("signature") or {}), example=example,
            versions={str(k): str(v) for k, v in (raw.get("versions") or {}).items()},
            options=dict(raw.get("options") or {}),
        )


def read_meta(folder: Path) -> ModelMeta:
    """Read and check the description file of a model folder."""
    path = folder / META_FILE
    if not path.is_file():
        raise InvalidArgument(
            f"{folder} is not a model folder: it has no {META_FILE} (save models with "
            "ModelRegistry.register or autolog, which write it)"
        )
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from exc
    return ModelMeta.from_dict(raw)


def write_meta(folder: Path, meta: ModelMeta) -> None:
    """Write `threadline-model.json` into the folder."""
    (folder / META_FILE).write_text(json.dumps(meta.to_dict(), indent=1, sort_keys=True) + "\n")


def hash_files(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """name -> BLAKE3 of each named file in the folder (names checked first)."""
    out = {}
    for name in names:
        path = folder / check_file_name(name)
        if path.is_symlink() or not path.is_file():
            raise InvalidArgument(f"model file {name!r} is missing from {folder}")
        out[name] = file_hash(path)
    return out


def verify_files(folder: Path, meta: ModelMeta, expected_hash: str | None) -> None:
    """Recompute every listed file's hash; raise IntegrityError unless all match.

    With `expected_hash` (from the registry) the recomputed artifact hash must equal it, so a
    description file rewritten to match tampered bytes is still caught.
    """
    actual = hash_files(folder, list(meta.files))
    for name, digest in sorted(meta.files.items()):
        if actual[name] != digest:
            raise IntegrityError(
                f"model file {name!r} does not match its recorded hash; the artifact was changed "
                "after it was saved - do not load it", key=name,
            )
    if expected_hash is not None and artifact_hash(actual) != expected_hash:
        raise IntegrityError(
            f"the model files hash to {artifact_hash(actual)[:16]}, but the registry recorded "
            f"{expected_hash[:16]}; the artifact is not the registered one - do not load it",
            key=expected_hash,
        )


def python_version() -> str:
    """The running interpreter's version."""
    return platform.python_version()


class Flavor(ABC):
    """How one kind of model is saved to plain files and loaded back, safely.

    A subclass names itself, recognises its models without importing its library, writes the
    model's files and loads them under a `LoadPolicy`. Example (a model that is a dict of
    weights stored as JSON):

        class JsonWeights(Flavor):
            name = "json-weights"

            def detect(self, model: Any) -> bool:
                return isinstance(model, dict) and "weights" in model

            def format_id(self, model: Any) -> str:
                return "json/1"

            def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
                (folder / "weights.json").write_text(json.dumps(model))
                return SavedFiles(["weights.json"])

            def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
                weights = json.loads((folder / "weights.json").read_text())["weights"]
                return LinearModel(weights)     # anything with .predict
    """

    name: str = ""

    @abstractmethod
    def detect(self, model: Any) -> bool:
        """Whether `model` is one this flavor saves (without importing heavy libraries)."""

    @abstractmethod
    def format_id(self, model: Any) -> str:
        """The format written, with the library series, e.g. `skops/0.16+sklearn/1.9`."""

    @abstractmethod
    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        """Write the model's files into the (empty) folder; return what was written."""

    @abstractmethod
    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        """Load the model from verified files; refuse whatever `policy` does not allow."""

    def versions(self) -> dict[str, str]:
        """Library versions to record with a saved model."""
        return {"python": python_version()}


@dataclass(frozen=True)
class SavedFiles:
    """What `Flavor.save` wrote: file names, and flavor options to store in the description."""

    files: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    #: set when the stored form differs from the object given (e.g. converted to ONNX)
    format_id: str | None = None
