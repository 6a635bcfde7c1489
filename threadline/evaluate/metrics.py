"""Metrics of predictions against actuals, computed for many row weightings at once.

Every metric here takes a weight matrix `w` of shape (R, n): one row of per-row weights per
evaluation. A plain evaluation is one row of ones; a slice is one row of 0/1; a bootstrap
replicate is one row of resampling counts (how often each row was drawn). Written this way,
the point estimate, the per-slice values and 1000 bootstrap replicates all run through the
same vectorised code, and each function equals scikit-learn's metric with
`sample_weight=w[r]` (the tests check exactly that), without importing scikit-learn.

Undefined values (ROC AUC on a sample with one class, R² of a constant target) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
#: an integer target with at most this many distinct values is taken for class labels
MAX_CLASSES = 20
#: equal-width bins of predicted probability for calibration and ECE
CALIBRATION_BINS = 10
#: metrics where a smaller value is better (the rest: larger is better)
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "rmse", "mae", "mape"})


@dataclass(frozen=True)
class Predictions:
    """One model's predictions on the evaluation rows, encoded for the metric functions.

    For classification `y` and `pred` are class codes (indexes into `classes`) and `proba`,
    when the model gives probabilities, has one column per class in that order. For
    regression `y` and `pred` are floats and `classes` is empty.
    """

    task: Task
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: tuple[Any, ...] = ()
    #: per-row arrays derived once and reused by every weighting (see `_cached`)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def rows(self) -> int:
        """How many rows were predicted."""
        return int(self.y.shape[0])

    @property
    def binary(self) -> bool:
        """Two classes: metrics are those of the positive class (the second, e.g. 1 or True)."""
        return self.task == "classification" and len(self.classes) == 2


def check_task(task: str) -> Task:
    """`task` if it is a known task, else InvalidArgument."""
    if task == "classification":
        return "classification"
    if task == "regression":
        return "regression"
    raise InvalidArgument(f"unknown task {task!r}: use classification or regression")


def infer_task(model: Any, target: np.ndarray) -> Task:
    """Classification if the model gives probabilities or the target looks like labels.

    A target of booleans, strings or other objects, or of integers with at most
    `MAX_CLASSES` distinct values, is a label; a float target is a regression target.
    """
    if callable(getattr(model, "predict_proba", None)):
        return "classification"
    kind = target.dtype.kind
    if kind in "bUSO":
        return "classification"
    if kind in "iu" and np.unique(target).size <= MAX_CLASSES:
        return "classification"
    return "regression"


def _codes(values: np.ndarray, index: dict[Any, int]) -> np.ndarray:
    return np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=values.shape[0])


def encode(task: Task, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None,
           classes: Any = None) -> Predictions:
    """Predictions ready for the metrics: labels become codes, probabilities align with them.

    Args:
        task: classification or regression.
        y: the actual values.
        pred: the model's predictions, one per row.
        proba: class probabilities (one column per entry of `classes`), or None.
        classes: the model's class labels in its probability column order (`classes_`);
            default: the sorted labels seen in `y` and `pred`. Labels seen but not in it are
            appended with probability 0.
    """
    y = np.asarray(y)
    pred = np.asarray(pred)
    if y.shape[0] != pred.shape[0]:
        raise InvalidArgument(f"{pred.shape[0]} predictions for {y.shape[0]} rows")
    if task == "regression":
        try:
            return Predictions(task, y.astype(np.float64), pred.astype(np.float64).reshape(-1))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"regression needs numeric targets and predictions: {exc}; "
                                  "pass task='classification' for labels") from exc
    known = [] if classes is None else list(np.asarray(classes).tolist())
    known_set = set(known)
    extra = [c for c in set(y.tolist()) | set(pred.tolist()) if c not in known_set]
    try:
        extra.sort()
    except TypeError:
        extra.sort(key=repr)
    labels = known + extra
    index = {label: i for i, label in enumerate(labels)}
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] != y.shape[0] or proba.shape[1] != len(known):
            raise InvalidArgument(f"probabilities of shape {proba.shape} do not match "
                                  f"{y.shape[0]} rows and {len(known) or 'unknown'} classes")
        if extra:
            proba = np.hstack([proba, np.zeros((proba.shape[0], len(extra)))])
    return Predictions(task, _codes(y, index), _codes(pred, index), proba, tuple(labels))


def ones(n: int) -> np.ndarray:
    """The weight matrix of a plain evaluation: one row of ones."""
    return np.ones((1, n))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ---------------------------------------------------------------- classification
def accuracy(p: Predictions, w: np.ndarray) -> np.ndarray:
    """Weighted share of rows predicted right."""
    correct = _cached(p, "correct", lambda: (p.y == p.pred).astype(np.float64))
    return _ratio(w @ correct, w.sum(axis=1), np.nan)


def _cached(p: Predictions, key: str, make: Callable[[], Any]) -> Any:
    """A per-row array of `p` computed on first use: bootstrap chunks reuse it."""
    if key not in p.cache:
        p.cache[key] = make()
    return p.cache[key]


def _indicators(p: Predictions) -> np.ndarray:
    """(n, 3K) 0/1 columns: actual == k, predicted == k, both; one matmul sums all three."""
    k = len(p.classes)
    out = np.zeros((p.rows, 3 * k))
    rows = np.arange(p.rows)
    out[rows, p.y] = 1.0
    out[rows, k + p.pred] = 1.0
    out[:, 2 * k:] = out[:, :k] * out[:, k:2 * k]
    return out


def _class_counts(p: Predictions, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, predicted counts and actual counts, each (R, K)."""
    k = len(p.classes)
    sums = w @ _cached(p, "indicators", lambda: _indicators(p))
    return sums[:, 2 * k:], sums[:, k:2 * k], sums[:, :k]


def precision_recall_f1(p: Predictions, w: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1: of the positive class when binary, else macro and weighted.

    A class never predicted (or never present) scores 0, as scikit-learn's default does.
    Macro averages run over every known class.
    """
    tp, predicted, actual = _class_counts(p, w)
    precision = _ratio(tp, predicted, 0.0)
    recall = _ratio(tp, actual, 0.0)
    f1 = _ratio(2 * tp, predicted + actual, 0.0)
    if p.binary:
        return {"precision": precision[:, 1], "recall": recall[:, 1], "f1": f1[:, 1]}
    support = _ratio(actual, actual.sum(axis=1, keepdims=True), 0.0)
    out = {}
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = per_class.mean(axis=1)
        out[f"{name}_weighted"] = (per_class * support).sum(axis=1)
    return out


def _ranking(score: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1]) if s.size else np.array([], int)
    return {"order": order, "positive": positive[order].astype(np.float64),
            "positive32": positive[order].astype(np.float32), "starts": starts,
            "ends": np.concatenate([starts[1:], [s.size]]) - 1, "ties": starts.size < s.size}


def auc(score: np.ndarray, positive: np.ndarray, w: np.ndarray,
        ranking: dict[str, Any] | None = None) -> np.ndarray:
    """ROC AUC: the weighted chance a positive row scores above a negative one (ties: 1/2).

    The rows are sorted by score once (`ranking`, reusable across weightings); negatives
    below each row come from a cumulative sum, so R weightings cost O(R n) after the sort.
    """
    r = ranking or _ranking(score, positive)
    if r["order"].size == 0:
        return np.full(w.shape[0], np.nan)
    wo = np.take(w, r["order"], axis=1)
    pos = r["positive"] if wo.dtype == np.float64 else r["positive32"]
    positives = np.einsum("ij,j->i", wo, pos, dtype=np.float64)
    negatives = wo.sum(axis=1, dtype=np.float64) - positives
    if r["ties"]:
        wo = wo.astype(np.float64, copy=False)
        wp = wo * pos
        wn = wo - wp
        cum_neg = np.cumsum(wn, axis=1)
        starts, ends = r["starts"], r["ends"]
        below = cum_neg[:, starts] - wn[:, starts]
        tied = cum_neg[:, ends] - below
        wins = (np.add.reduceat(wp, starts, axis=1) * (below + 0.5 * tied)).sum(axis=1)
    else:
        # distinct scores (the usual case with probabilities): each positive wins against the
        # negatives before it; a row is never both, so no tie term and few temporaries.
        # Bootstrap counts come as float32 (exact for these integers, see bootstrap.py):
        # half the memory traffic; the sum is accumulated in float64.
        cum_neg = np.cumsum(wo * (1 - pos), axis=1)
        cum_neg *= wo
        wins = np.einsum("ij,j->i", cum_neg, pos, dtype=np.float64)
    return _ratio(wins, positives * negatives, np.nan)


def roc_auc(p: Predictions, w: np.ndarray) -> np.ndarray:
    """Binary ROC AUC, or the one-vs-rest macro average over classes."""
    assert p.proba is not None
    proba = p.proba
    if p.binary:
        return auc(proba[:, 1], p.y == 1, w,
                   _cached(p, "rank1", lambda: _ranking(proba[:, 1], p.y == 1)))
    per_class = np.stack([
        auc(proba[:, k], p.y == k, w,
            _cached(p, f"rank{k}", lambda k=k: _ranking(proba[:, k], p.y == k)))  # type: ignore[misc]
        for k in range(len(p.classes))])
    macro: np.ndarray = per_class.mean(axis=0)
    return macro


def log_loss(p: Predictions, w: np.ndarray) -> np.ndarray:
    """Mean negative log probability of the actual class (clipped as scikit-learn does)."""
    return _ratio(w @ _cached(p, "log_loss", lambda: _row_log_loss(p)), w.sum(axis=1), np.nan)


def _row_log_loss(p: Predictions) -> np.ndarray:
    assert p.proba is not None
    proba = p.proba / p.proba.sum(axis=1, keepdims=True)
    eps = np.finfo(np.float64).eps
    loss: np.ndarray = -np.log(np.clip(proba[np.arange(p.rows), p.y], eps, 1 - eps))
    return loss


def confidence(p: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """What calibration compares: (predicted probability, observed 0/1) per row.

    Binary: the positive class's probability against being positive. Multiclass: the top
    probability against the top class being right (top-label calibration).
    """
    assert p.proba is not None
    if p.binary:
        return p.proba[:, 1], (p.y == 1).astype(np.float64)
    top = p.proba.argmax(axis=1)
    return p.proba.max(axis=1), (top == p.y).astype(np.float64)


def calibration_bin(predicted: np.ndarray, bins: int = CALIBRATION_BINS) -> np.ndarray:
    """The equal-width bin of each probability, as `sklearn.calibration.calibration_curve`."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], predicted)


def calibration_sums(p: Predictions, w: np.ndarray, bins: int = CALIBRATION_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: weighted rows, sum of predicted probability, sum of observed outcome (R, B)."""
    sums = w @ _cached(p, f"calibration{bins}", lambda: _calibration_columns(p, bins))
    return sums[:, :bins], sums[:, bins:2 * bins], sums[:, 2 * bins:]


def _calibration_columns(p: Predictions, bins: int) -> np.ndarray:
    """(n, 3B): bin membership, predicted probability and outcome placed in the row's bin."""
    predicted, observed = confidence(p)
    member = np.zeros((p.rows, bins))
    member[np.arange(p.rows), calibration_bin(predicted, bins)] = 1.0
    return np.hstack([member, member * predicted[:, None], member * observed[:, None]])


def ece(p: Predictions, w: np.ndarray) -> np.ndarray:
    """Expected calibration error: row-weighted mean of |mean predicted - observed| per bin."""
    _, predicted, observed = calibration_sums(p, w)
    return _ratio(np.abs(predicted - observed).sum(axis=1), w.sum(axis=1), np.nan)


# -------------------------------------------------------------------- regression
def regression(p: Predictions, w: np.ndarray) -> dict[str, np.ndarray]:
    """RMSE, MAE, R² and MAPE. MAPE skips rows whose actual value is 0 (it is undefined there)."""
    total = w.sum(axis=1)
    error = p.pred - p.y
    centred = p.y - p.y.mean() if p.rows else p.y  # centring first keeps R² free of cancellation
    sq = w @ (error * error)
    ss_tot = w @ (centred * centred) - _ratio((w @ centred) ** 2, total, 0.0)
    nonzero = p.y != 0
    relative = np.abs(error) / np.where(nonzero, np.abs(p.y), 1.0) * nonzero
    return {
        "rmse": np.sqrt(_ratio(sq, total, np.nan)),
        "mae": _ratio(w @ np.abs(error), total, np.nan),
        "r2": 1.0 - _ratio(sq, ss_tot, np.nan),  # NaN for a constant target
        "mape": _ratio(w @ relative, w @ nonzero.astype(np.float64), np.nan),
    }


def compute(p: Predictions, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric that applies to `p`, each an array with one value per row of `w`.

    `w` may be float32 when it holds small integer counts (bootstrap replicates); the AUC
    uses it as is and everything else in float64.
    """
    narrow = w
    w = w.astype(np.float64, copy=False)
    if p.task == "regression":
        return regression(p, w)
    out = {"accuracy": accuracy(p, w), **precision_recall_f1(p, w)}
    if p.proba is not None and len(p.classes) >= 2:
        out["roc_auc" if p.binary else "roc_auc_ovr"] = roc_auc(p, narrow)
        out["log_loss"] = log_loss(p, w)
        out["ece"] = ece(p, w)
    return out


def point(p: Predictions, w: np.ndarray | None = None) -> dict[str, float | None]:
    """The metrics for one weighting (default: every row once), NaN given as None."""
    values = compute(p, ones(p.rows) if w is None else w.reshape(1, -1))
    return {k: (None if np.isnan(v[0]) else float(v[0])) for k, v in values.items()}
