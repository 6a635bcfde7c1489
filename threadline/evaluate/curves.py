"""Diagnostics drawn in the report: confusion matrix, ROC curve, reliability bins, residuals.

These are computed once on every row (not bootstrapped), as plain lists ready for JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.evaluate.metrics import CALIBRATION_BINS, calibration_sums, ones

if TYPE_CHECKING:
    from threadline.evaluate.metrics import Predictions

#: the ROC curve is thinned to about this many points (enough to draw, small in JSON)
ROC_POINTS = 200
RESIDUAL_BINS = 20


def confusion_matrix(p: Predictions) -> list[list[int]]:
    """Counts: row = actual class, column = predicted class, in `p.classes` order."""
    k = len(p.classes)
    counts = np.bincount(p.y * k + p.pred, minlength=k * k).reshape(k, k)
    return [[int(c) for c in row] for row in counts]


def roc_curve(score: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    pos = positive[order].astype(np.float64)
    last = np.concatenate([np.flatnonzero(np.diff(s)), [s.shape[0] - 1]]) if s.size else np.array([], int)
    tps = np.cumsum(pos)[last]
    fps = (last + 1) - tps
    tpr = np.concatenate([[0.0], tps / tps[-1] if tps.size and tps[-1] else np.zeros_like(tps)])
    fpr = np.concatenate([[0.0], fps / fps[-1] if fps.size and fps[-1] else np.zeros_like(fps)])
    if fpr.size > ROC_POINTS:
        keep = np.unique(np.linspace(0, fpr.size - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def roc_curves(p: Predictions) -> dict[str, dict[str, list[float]]]:
    """Binary: the positive class's curve. Multiclass: one-vs-rest per class. Label -> curve."""
    if p.proba is None or len(p.classes) < 2:
        return {}
    if p.binary:
        return {str(p.classes[1]): roc_curve(p.proba[:, 1], p.y == 1)}
    return {str(c): roc_curve(p.proba[:, k], p.y == k) for k, c in enumerate(p.classes)}


def calibration(p: Predictions, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Reliability bins: range, rows, mean predicted probability, observed rate (None if empty)."""
    if p.proba is None or len(p.classes) < 2:
        return []
    count, predicted, observed = (a[0] for a in calibration_sums(p, ones(p.rows), bins))
    out = []
    for b in range(bins):
        n = int(count[b])
        out.append({"low": b / bins, "high": (b + 1) / bins, "rows": n,
                    "mean_predicted": float(predicted[b] / n) if n else None,
                    "observed_rate": float(observed[b] / n) if n else None})
    return out


def calibration_target(p: Predictions) -> str:
    """What the reliability bins compare, in words."""
    if p.binary:
        return f"P(class = {p.classes[1]})"
    return "top-label confidence vs accuracy"


def residual_histogram(p: Predictions, bins: int = RESIDUAL_BINS) -> dict[str, list[float]]:
    """Histogram of residuals (prediction - actual): `edges` (bins + 1) and `counts`."""
    residual = p.pred - p.y
    finite = residual[np.isfinite(residual)]
    if finite.size == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(finite, bins=bins)
    return {"edges": [float(e) for e in edges], "counts": [float(c) for c in counts]}


def diagnostics(p: Predictions) -> dict[str, Any]:
    """Every diagnostic that applies to the task, keyed as in `evaluation.json`."""
    if p.task == "regression":
        return {"residuals": residual_histogram(p)}
    out: dict[str, Any] = {"classes": [str(c) for c in p.classes],
                           "confusion_matrix": confusion_matrix(p)}
    if p.proba is not None and len(p.classes) >= 2:
        out["roc"] = roc_curves(p)
        out["calibration"] = calibration(p)
        out["calibration_of"] = calibration_target(p)
    return out
