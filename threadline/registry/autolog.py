"""Autologging for scikit-learn: every outer `fit` logs params, training metrics and the model.

`autolog()` wraps `fit` on each scikit-learn class that defines one (found with
`sklearn.utils.all_estimators`, so subclasses are covered through their base). The wrapper
counts nesting per thread: a Pipeline fitting its steps or a search fitting candidates logs
once, for the outer call. The fit runs inside the active tracking run, or a run of its own
when none is active. A logging failure never fails the user's fit: it is logged as a warning.
`disable()` puts the original methods back.
"""

from __future__ import annotations

import functools
import inspect
import logging
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.registry.flavors.base import require
from threadline.registry.flavors.catalog import save_folder
from threadline.tracking.active import active_run, start_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.tracking.active import ActiveRun

log = logging.getLogger(__name__)
#: (class, original fit) for every class patched by `autolog()`
_patched: list[tuple[type, Callable[..., Any]]] = []
_local = threading.local()
_lock = threading.Lock()
_settings: dict[str, Any] = {"log_models": True}
MAX_PARAM_CHARS = 500
EXAMPLE_ROWS = 5


def autolog(*, log_models: bool = True, disable: bool = False) -> None:
    """Log every scikit-learn fit (params, training metrics, the model as `model/`).

    Args:
        log_models: also log the fitted model as a sklearn-flavor model folder under
            `model` (registrable with `ModelRegistry.register(name, run_id=...)`).
        disable: undo an earlier `autolog()` (same as `disable()`).
    """
    if disable:
        _restore()
        return
    discovery = require("sklearn.utils", "sklearn")
    with _lock:
        _settings["log_models"] = log_models
        if _patched:
            return
        owners: dict[type, None] = {}
        for _name, cls in discovery.all_estimators():
            owner = next((c for c in cls.__mro__ if "fit" in c.__dict__), None)
            # only plain functions: wrapping a descriptor would change how `fit` binds
            if (owner is not None and owner.__module__.split(".")[0] == "sklearn"
                    and inspect.isfunction(owner.__dict__["fit"])):
                owners[owner] = None
        for owner in owners:
            original = owner.__dict__["fit"]
            owner.fit = _wrap(original)  # type: ignore[attr-defined]
            _patched.append((owner, original))


def disable() -> None:
    """Restore the original `fit` methods."""
    _restore()


def _restore() -> None:
    with _lock:
        while _patched:
            owner, original = _patched.pop()
            owner.fit = original  # type: ignore[attr-defined]


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return original(self, *args, **kwargs)  # nested in an outer fit: not logged
        _local.depth = 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _local.depth = 0
        features = args[0] if args else kwargs.get("X")
        target = args[1] if len(args) > 1 else kwargs.get("y")
        _local.depth = 1  # predictions made while logging must not log again
        try:
            _log_fit(self, features, target)
        except Exception:
            log.warning("autolog: could not log the fit of %s", type(self).__name__, exc_info=True)
        finally:
            _local.depth = 0
        return result

    fit.__threadline_autolog__ = True  # type: ignore[attr-defined]
    return fit


def _params(estimator: Any) -> dict[str, str]:
    out = {}
    for key, value in estimator.get_params(deep=True).items():
        text = str(value)
        out[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return out


def training_metrics(estimator: Any, features: Any, target: Any) -> dict[str, float]:
    """Training-set metrics: classification or regression scores, by the estimator's kind."""
    if target is None or features is None or not hasattr(estimator, "predict"):
        return {}
    base = require("sklearn.base", "sklearn")
    metrics = require("sklearn.metrics", "sklearn")
    np = require("numpy", "sklearn")
    predicted = estimator.predict(features)
    out: dict[str, float] = {}
    if base.is_classifier(estimator):
        out["training_accuracy"] = metrics.accuracy_score(target, predicted)
        for name, fn in (("precision", metrics.precision_score), ("recall", metrics.recall_score),
                         ("f1", metrics.f1_score)):
            out[f"training_{name}"] = fn(target, predicted, average="weighted", zero_division=0)
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(features)
            classes = list(getattr(estimator, "classes_", []))
            out["training_log_loss"] = metrics.log_loss(target, proba, labels=classes)
            if len(classes) == 2:
                out["training_roc_auc"] = metrics.roc_auc_score(target, proba[:, 1])
            elif len(classes) > 2 and len(set(np.asarray(target).tolist())) == len(classes):
                out["training_roc_auc"] = metrics.roc_auc_score(
                    target, proba, multi_class="ovr", average="weighted", labels=classes)
    elif base.is_regressor(estimator):
        out["training_rmse"] = float(np.sqrt(metrics.mean_squared_error(target, predicted)))
        out["training_mae"] = metrics.mean_absolute_error(target, predicted)
        out["training_r2"] = metrics.r2_score(target, predicted)
    return {k: float(v) for k, v in out.items()}


def _head(features: Any) -> Any:
    if hasattr(features, "iloc"):
        return features.iloc[:EXAMPLE_ROWS]
    if hasattr(features, "slice") and hasattr(features, "schema"):
        return features.slice(0, EXAMPLE_ROWS)
    return features[:EXAMPLE_ROWS]


def _log_fit(estimator: Any, features: Any, target: Any) -> None:
    run = active_run()
    own: ActiveRun | None = None
    if run is None:
        own = run = start_run(f"autolog {type(estimator).__name__}")
    try:
        _log_to(run, estimator, features, target)
    finally:
        if own is not None:
            own.end()


def _log_to(run: ActiveRun, estimator: Any, features: Any, target: Any) -> None:
    run.log_params(_params(estimator))
    run.set_tag("estimator_class", f"{type(estimator).__module__}.{type(estimator).__qualname__}")
    run.log_metrics(training_metrics(estimator, features, target))
    if _settings["log_models"]:
        with tempfile.TemporaryDirectory(prefix="tl-autolog-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            example = _head(features) if features is not None else None
            save_folder(estimator, folder, flavor="sklearn", example=example)
            run.log_artifact(folder, "model")
    run.flush()
