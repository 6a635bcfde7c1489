"""Shard-and-combine: one partial model per shard, merged into one model by its family's rule.

- linear models: coefficients and intercepts averaged, weighted by shard rows;
- forests and bagging: the union of the shards' trees (each shard grows its share of
  `n_estimators` with its own seed);
- Gaussian naive Bayes: per-class counts, means and variances merged exactly (pooled moments);
- multinomial naive Bayes: feature and class counts summed (exact);
- k-means: the shards' centroids clustered again, weighted by cluster size, then refined with
  a few Lloyd iterations on a sample of all rows.

Each rule is a function of the fitted parts and their row counts; `combiner_for` picks one by
the estimator's class (subclasses included). An estimator with no rule is refused with the
strategies that do fit it.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.train.libs import sk
from threadline.train.shards import distinct, load_shard

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["combine", "combiner_for", "fit_part", "has_combiner", "strategies_for", "wants_pilot"]

#: (module, class names) of the estimators each rule combines
_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "average": ("sklearn.linear_model", ("LinearRegression", "Ridge", "LogisticRegression",
                                         "SGDClassifier", "SGDRegressor", "Perceptron",
                                         "PassiveAggressiveClassifier", "PassiveAggressiveRegressor")),
    "trees": ("sklearn.ensemble", ("RandomForestClassifier", "RandomForestRegressor",
                                   "ExtraTreesClassifier", "ExtraTreesRegressor")),
    "bagging": ("sklearn.ensemble", ("BaggingClassifier", "BaggingRegressor")),
    "gaussian_nb": ("sklearn.naive_bayes", ("GaussianNB",)),
    "multinomial_nb": ("sklearn.naive_bayes", ("MultinomialNB",)),
    "kmeans": ("sklearn.cluster", ("KMeans",)),
}
#: estimators whose partial_fit the sync strategy drives (averaged each epoch)
SYNC_FAMILIES = ("SGDClassifier", "SGDRegressor", "Perceptron", "PassiveAggressiveClassifier",
                 "PassiveAggressiveRegressor", "GaussianNB", "MultinomialNB", "MiniBatchKMeans")


def _family(estimator: Any) -> str | None:
    for cls in type(estimator).__mro__:
        for family, (module, names) in _FAMILIES.items():
            if cls.__name__ in names and cls.__module__.startswith(module):
                return family
    return None


def has_combiner(estimator: Any) -> bool:
    """Whether shard-and-combine knows how to merge this estimator."""
    return _family(estimator) is not None


def can_sync(estimator: Any) -> bool:
    """Whether the sync strategy can drive this estimator's partial_fit."""
    return any(c.__name__ in SYNC_FAMILIES and c.__module__.startswith("sklearn.")
               for c in type(estimator).__mro__)


def strategies_for(estimator: Any) -> list[str]:
    """The strategies that can train this estimator, best first."""
    found = ["combine"] if has_combiner(estimator) else []
    if can_sync(estimator):
        found.append("sync")
    return [*found, "search", "single"]


def refuse(estimator: Any, strategy: str) -> InvalidArgument:
    """The error for a strategy that cannot train `estimator`, naming the ones that can."""
    name = type(estimator).__name__
    fits = " or ".join(f"strategy={s!r}" for s in strategies_for(estimator))
    what = "no combiner" if strategy == "combine" else f"no support for strategy {strategy!r}"
    return InvalidArgument(f"{name} has {what}; use {fits}")


def fit_part(estimator: Any, shard_path: str, rows: int | None = None, threads: int | None = None,
             pilot_seed: int | None = None) -> tuple[Any, int, float]:
    """Worker side: fit `estimator` on a shard (its first `rows` rows); returns (model, rows, seconds).

    `threads` caps the native thread pools (OpenMP, BLAS) during the fit, so parts running side
    by side share the cores instead of oversubscribing them. With `pilot_seed`, the fit starts
    from a pilot fit on a sample of the shard (see `wants_pilot`).
    """
    X, y = load_shard(shard_path)
    if rows is not None:
        X, y = X[:rows], y[:rows]
    start = time.perf_counter()
    with sk("threadpoolctl").threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        if pilot_seed is not None:
            _pilot(estimator, X, y, pilot_seed)
        estimator.fit(X, y)
    return estimator, int(X.shape[0]), time.perf_counter() - start


#: solvers of LogisticRegression that continue from `coef_` when `warm_start` is on
_WARM_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
PILOT_MIN_ROWS = 100_000  # per shard: below this a fit is too short for a pilot to pay off


def wants_pilot(estimator: Any, shard_rows: int) -> bool:
    """Whether shards of `shard_rows` rows should start from a pilot fit on a sample.

    Averaging needs every shard's fit to converge; started from a fit on a tenth of the shard,
    the solver meets its own tolerance on the whole shard in one to three iterations instead
    of eight or more from zero. That holds for LogisticRegression with a solver that honours
    `warm_start`, on large enough shards.
    """
    is_logistic = any(c.__name__ == "LogisticRegression" for c in type(estimator).__mro__)
    return is_logistic and estimator.solver in _WARM_SOLVERS and shard_rows >= PILOT_MIN_ROWS


def _pilot(estimator: Any, X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Set `estimator` to continue from a fit on a sample of (X, y), unless the sample misses a class."""
    size = min(max(20_000, X.shape[0] // 10), X.shape[0])
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=size, replace=False))
    sample_y = np.asarray(y[rows])
    if not np.array_equal(distinct(sample_y), distinct(np.asarray(y))):
        return
    pilot = sk("sklearn.base").clone(estimator).set_params(warm_start=False).fit(X[rows], sample_y)
    estimator.set_params(warm_start=True)
    estimator.coef_, estimator.intercept_ = pilot.coef_, pilot.intercept_


def _same_classes(parts: Sequence[Any]) -> None:
    first = getattr(parts[0], "classes_", None)
    for i, part in enumerate(parts[1:], 1):
        if first is not None and not np.array_equal(first, part.classes_):
            raise InvalidArgument(f"shard {i} learned classes {part.classes_.tolist()} but shard 0 "
                                  f"learned {first.tolist()}; every shard must see every class")


def _average(parts: Sequence[Any], rows: Sequence[int], **_: Any) -> Any:
    _same_classes(parts)
    weights = np.asarray(rows, dtype=np.float64)
    merged = copy.deepcopy(parts[0])
    for attr in ("coef_", "intercept_", "_average_coef", "_average_intercept",
                 "_standard_coef", "_standard_intercept"):
        values: list[Any] = [getattr(p, attr, None) for p in parts]
        if any(v is None for v in values):
            continue
        mean = np.average(np.asarray(values, dtype=np.float64), axis=0, weights=weights)
        setattr(merged, attr, float(mean) if np.ndim(values[0]) == 0 else mean.astype(
            np.asarray(values[0]).dtype))
    return merged


def _union(parts: Sequence[Any], rows: Sequence[int], **_: Any) -> Any:
    _same_classes(parts)
    merged = copy.deepcopy(parts[0])
    merged.estimators_ = [tree for p in parts for tree in p.estimators_]
    merged.n_estimators = len(merged.estimators_)
    if hasattr(merged, "estimators_features_"):  # bagging
        merged.estimators_features_ = [f for p in parts for f in p.estimators_features_]
    if hasattr(merged, "_seeds"):
        merged._seeds = np.concatenate([p._seeds for p in parts])
    for attr in ("oob_score_", "oob_decision_function_", "oob_prediction_"):
        if hasattr(merged, attr):  # computed on one shard only: meaningless for the union
            delattr(merged, attr)
    return merged


def _pool(counts: np.ndarray, means: np.ndarray, variances: np.ndarray) -> tuple[Any, Any, Any]:
    """Pooled count, mean and (population) variance of groups along axis 0 (stable form)."""
    total = counts.sum(axis=0)
    w = counts / np.where(total == 0, 1, total)
    mean = (w[..., None] * means).sum(axis=0)
    var = (w[..., None] * (variances + (means - mean) ** 2)).sum(axis=0)
    return total, mean, var


def _gaussian_nb(parts: Sequence[Any], rows: Sequence[int], **_: Any) -> Any:
    _same_classes(parts)
    counts = np.asarray([p.class_count_ for p in parts])
    means = np.asarray([p.theta_ for p in parts])
    raw_var = np.asarray([p.var_ - p.epsilon_ for p in parts])  # sklearn adds epsilon_ to var_
    class_count, theta, var = _pool(counts, means, raw_var)
    # the smoothing term is var_smoothing times the largest variance of any feature over all rows
    _, _, overall = _pool(class_count[:, None], theta[:, None, :], var[:, None, :])
    merged = copy.deepcopy(parts[0])
    merged.epsilon_ = merged.var_smoothing * float(np.max(overall))
    merged.class_count_, merged.theta_, merged.var_ = class_count, theta, var + merged.epsilon_
    if merged.priors is None:
        merged.class_prior_ = class_count / class_count.sum()
    return merged


def _multinomial_nb(parts: Sequence[Any], rows: Sequence[int], **_: Any) -> Any:
    _same_classes(parts)
    merged = copy.deepcopy(parts[0])
    merged.feature_count_ = np.sum([p.feature_count_ for p in parts], axis=0)
    merged.class_count_ = np.sum([p.class_count_ for p in parts], axis=0)
    # sklearn's own update functions: the merged model equals a single fit to the last bit
    merged._update_feature_log_prob(merged._check_alpha())
    merged._update_class_log_prior(class_prior=merged.class_prior)
    return merged


def _kmeans(parts: Sequence[Any], rows: Sequence[int], *, sample: np.ndarray | None = None,
            seed: int = 0, refine_iter: int = 10, **_: Any) -> Any:
    KMeans = sk("sklearn.cluster").KMeans

    k = parts[0].n_clusters
    centers = np.vstack([p.cluster_centers_ for p in parts])
    sizes = np.concatenate([np.bincount(p.labels_, minlength=k) for p in parts]).astype(np.float64)
    merge = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(centers, sample_weight=sizes)
    merged = copy.deepcopy(parts[0])
    if sample is None:
        merged.cluster_centers_ = merge.cluster_centers_
        return merged
    # a few Lloyd iterations from the merged centroids on a sample of every shard's rows
    refined = KMeans(n_clusters=k, init=merge.cluster_centers_, n_init=1, max_iter=refine_iter,
                     random_state=seed).fit(sample)
    for attr in ("cluster_centers_", "labels_", "inertia_", "n_iter_"):
        setattr(merged, attr, getattr(refined, attr))
    return merged


_RULES: dict[str, Callable[..., Any]] = {
    "average": _average, "trees": _union, "bagging": _union, "gaussian_nb": _gaussian_nb,
    "multinomial_nb": _multinomial_nb, "kmeans": _kmeans,
}


def combiner_for(estimator: Any) -> str:
    """The combine rule's name for `estimator` ("average", "trees"...).

    Raises:
        InvalidArgument: no rule fits; the message lists the strategies that do.
    """
    family = _family(estimator)
    if family is None:
        raise refuse(estimator, "combine")
    return family


def split_estimators(total: int, parts: int) -> list[int]:
    """`total` trees shared among `parts` shards (earlier shards take the remainder)."""
    if total < parts:
        raise InvalidArgument(f"n_estimators={total} cannot be split over {parts} shards; use at "
                              f"least {parts} trees or fewer workers")
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def combine(rule: str, parts: Sequence[Any], rows: Sequence[int], **options: Any) -> Any:
    """Merge fitted parts with `rule` (see the module docstring)."""
    return _RULES[rule](parts, rows, **options)
