"""scikit-learn models, saved with skops: loading builds only types the caller trusts.

skops stores an object graph, not pickle bytecode; `skops.io.get_untrusted_types` lists every
type in a file that is not on skops' own safe list. A load refuses when any of those is not
also in the caller's `trusted` list, before building a single object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.registry.errors import UntrustedModel
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    SavedFiles,
    python_version,
    require,
)
from threadline.tracking.source import dist_version, major_minor

if TYPE_CHECKING:
    from pathlib import Path

MODEL_FILE = "model.skops"


def is_sklearn(model: Any) -> bool:
    """Whether any class in the model's type hierarchy comes from scikit-learn."""
    return any(c.__module__.split(".")[0] == "sklearn" for c in type(model).__mro__)


class SklearnFlavor(Flavor):
    """scikit-learn estimators and pipelines in the skops format."""

    name = "sklearn"

    def detect(self, model: Any) -> bool:
        return is_sklearn(model) and hasattr(model, "fit")

    def format_id(self, model: Any) -> str:
        return (f"skops/{major_minor(dist_version('skops'))}"
                f"+sklearn/{major_minor(dist_version('scikit-learn'))}")

    def versions(self) -> dict[str, str]:
        return {"python": python_version(), "scikit-learn": dist_version("scikit-learn"),
                "skops": dist_version("skops")}

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        sio = require("skops.io", "sklearn")
        sio.dump(model, folder / MODEL_FILE)
        return SavedFiles([MODEL_FILE])

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        sio = require("skops.io", "sklearn")
        path = folder / MODEL_FILE
        try:
            untrusted = [str(t) for t in sio.get_untrusted_types(file=path)]
        except Exception as exc:
            raise UntrustedModel(f"cannot read the skops file {MODEL_FILE}: {exc}", []) from exc
        refused = sorted(set(untrusted) - set(policy.trusted))
        if refused:
            raise UntrustedModel(
                f"the model uses types that are not trusted: {', '.join(refused)}; if you trust "
                f"their code, pass trusted=[{', '.join(repr(t) for t in refused)}] to load_model "
                "(or --trust TYPE on the command line)",
                refused,
            )
        return sio.load(path, trusted=untrusted or None)
