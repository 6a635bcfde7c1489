"""Accuracy in production: realised from late labels, and estimated before they arrive.

Realised: the prediction log joined to the feedback by request id and row (see
serving/feedback.py), scored per version, route and slice over time windows.

Estimated (confidence-based performance estimation): a classifier's predicted probabilities
say how often it expects to be right; the mean of the top-class probability over a window is
the accuracy it would have if those probabilities are calibrated. The probabilities are
recomputed from the logged inputs with the version that answered, off the request path. When
labelled windows exist, the estimate is first calibrated on them (isotonic regression of
"was right" on the top-class probability), which fixes a model that is over- or
under-confident. Its blind spot: it sees only what the inputs are, never how labels relate to
them, so a change in that relation (concept drift) leaves the estimate where it was while the
realised accuracy falls. Only labels reveal that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.registry.registry import ModelRegistry

INPUT_PREFIX = "in."


@dataclass(frozen=True)
class AccuracyPoint:
    """A metric over one group of labelled predictions."""

    window_start: int
    version: int
    route: str
    slice: str | None
    rows: int
    metric: str
    value: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"window_start": self.window_start, "version": self.version, "route": self.route,
                "slice": self.slice, "rows": self.rows, "metric": self.metric, "value": self.value}


def _score(metric: str, predicted: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float | None:
    if predicted.size == 0:
        return None
    if metric == "accuracy":
        return float(np.mean(predicted.astype(str) == actual.astype(str)))
    if metric == "error_rate":
        return float(np.mean(predicted.astype(str) != actual.astype(str)))
    diff = predicted.astype(float) - actual.astype(float)
    if metric == "mae":
        return float(np.mean(np.abs(diff)))
    if metric == "rmse":
        return float(np.sqrt(np.mean(diff * diff)))
    raise InvalidArgument(f"unknown accuracy metric {metric!r}; use accuracy, error_rate, mae or rmse")


def realised(joined: pa.Table, *, metric: str = "accuracy", window_ms: int | None = None,
             slice_by: str | None = None, since_ms: int | None = None) -> list[AccuracyPoint]:
    """Realised `metric` of labelled rows of a joined log (`join_feedback`), per time window
    (all rows when `window_ms` is None), version, route and value of input column `slice_by`."""
    if since_ms is not None and joined.num_rows:
        joined = joined.filter(pc.greater_equal(joined["ts"], since_ms))
    labelled = joined.filter(pc.is_valid(joined["label"])) if joined.num_rows else joined
    if labelled.num_rows == 0:
        return []
    ts = labelled["ts"].to_numpy()
    start = (ts // window_ms) * window_ms if window_ms else np.full(len(ts), int(ts.min()))
    keys: list[np.ndarray[Any, Any]] = [start, labelled["version"].to_numpy(),
                                        np.asarray(labelled["route"].to_pylist(), dtype=object)]
    column = f"{INPUT_PREFIX}{slice_by}" if slice_by else None
    if column is not None:
        if column not in labelled.column_names:
            raise InvalidArgument(f"cannot slice by {slice_by!r}: the log has no input column "
                                  f"{column!r}")
        keys.append(np.asarray([str(v) for v in labelled[column].to_pylist()], dtype=object))
    predicted = np.asarray(labelled["prediction"].to_pylist(), dtype=object)
    actual = np.asarray(labelled["label"].to_pylist(), dtype=object)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(zip(*keys)):
        groups.setdefault(tuple(key), []).append(index)
    points = []
    for key, rows in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        picked = np.asarray(rows)
        points.append(AccuracyPoint(int(key[0]), int(key[1]), str(key[2]),
                                    str(key[3]) if column else None, len(rows), metric,
                                    _score(metric, predicted[picked], actual[picked])))
    return points


def input_matrix(window: pa.Table, features: Sequence[str]) -> np.ndarray[Any, Any]:
    """The logged inputs of a window as a float matrix in `features` order."""
    missing = [f for f in features if f"{INPUT_PREFIX}{f}" not in window.column_names]
    if missing:
        raise InvalidArgument(f"the prediction log has no input column for feature {missing[0]!r}")
    return np.column_stack([np.asarray(window[f"{INPUT_PREFIX}{f}"].to_numpy(zero_copy_only=False),
                                       dtype=float) for f in features]) if features else \
        np.empty((window.num_rows, 0))


def top_probability(registry: ModelRegistry, version_uri: str, window: pa.Table, *,
                    trusted: Sequence[str] = ()) -> np.ndarray[Any, Any]:
    """The top-class probability the version gives each logged row of `window`."""
    version = registry.get_version(version_uri)
    inputs = (version.signature or {}).get("inputs") or {}
    if inputs.get("type") != "columns":
        raise InvalidArgument(f"estimating accuracy needs a model with named input columns; "
                              f"{version_uri} has none in its signature")
    features = [str(c["name"]) for c in inputs["columns"]]
    model = registry.load_version(version, trusted=trusted)
    if not hasattr(model, "predict_proba"):
        raise InvalidArgument(f"{version_uri} gives no probabilities (predict_proba); "
                              "label-free accuracy estimation needs a probabilistic classifier")
    import pandas as pd

    frame = pd.DataFrame(input_matrix(window, features), columns=features)
    probabilities: np.ndarray[Any, Any] = np.asarray(model.predict_proba(frame), dtype=float)
    top: np.ndarray[Any, Any] = probabilities.max(axis=1)
    return top


@dataclass(frozen=True)
class Calibration:
    """Isotonic map from top-class probability to the chance of being right, fitted on
    labelled rows (identity when there were too few)."""

    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, confidence: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Calibrated chance of being right per row."""
        if not self.x:
            return confidence
        mapped: np.ndarray[Any, Any] = np.interp(confidence, self.x, self.y)
        return mapped

    @classmethod
    def fit(cls, confidence: np.ndarray[Any, Any], correct: np.ndarray[Any, Any],
            min_rows: int = 200) -> Calibration:
        """Fit on labelled rows (pool-adjacent-violators over 20 confidence bins)."""
        if len(confidence) < min_rows:
            return cls()
        edges = np.quantile(confidence, np.linspace(0, 1, 21))
        index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, 19)
        sums = np.bincount(index, weights=correct.astype(float), minlength=20)
        counts = np.bincount(index, minlength=20).astype(float)
        centres = np.bincount(index, weights=confidence, minlength=20)
        keep = counts > 0
        means, weights, xs = list(sums[keep] / counts[keep]), list(counts[keep]), list(
            centres[keep] / counts[keep])
        merged: list[list[float]] = []  # [mean, weight, x*weight]
        for m, w, x in zip(means, weights, xs):
            merged.append([m, w, x * w])
            while len(merged) > 1 and merged[-2][0] > merged[-1][0]:
                b = merged.pop()
                a = merged[-1]
                total = a[1] + b[1]
                merged[-1] = [(a[0] * a[1] + b[0] * b[1]) / total, total, a[2] + b[2]]
        return cls(tuple(m[2] / m[1] for m in merged), tuple(m[0] for m in merged))


def estimate_accuracy(confidence: np.ndarray[Any, Any],
                      calibration: Calibration | None = None) -> float | None:
    """The accuracy a classifier expects on rows with these top-class probabilities."""
    if confidence.size == 0:
        return None
    values = (calibration or Calibration()).apply(confidence)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None
