"""Combine rules against known answers: weighted means, tree counts, exact naive-Bayes merges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.ensemble import (
    BaggingClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from train_data import blobs, linear

from threadline.errors import InvalidArgument
from threadline.train.combine import combine, combiner_for, split_estimators, strategies_for


def _halves(X: np.ndarray, y: np.ndarray, cut: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[:cut], y[:cut]), (X[cut:], y[cut:])]


def test_linear_coefficients_are_the_row_weighted_mean() -> None:
    X, y = linear(900)
    parts = [LinearRegression().fit(a, b) for a, b in _halves(X, y, 300)]
    merged = combine(combiner_for(LinearRegression()), parts, [300, 600])
    expected = (300 * parts[0].coef_ + 600 * parts[1].coef_) / 900
    np.testing.assert_allclose(merged.coef_, expected, rtol=1e-12)
    assert merged.intercept_ == pytest.approx((300 * parts[0].intercept_ + 600 * parts[1].intercept_) / 900)
    assert isinstance(merged.intercept_, float)
    assert parts[0].coef_ is not merged.coef_  # the parts are left alone


def test_logistic_multiclass_average_and_disagreeing_classes_refused() -> None:
    X, y = blobs(600, classes=3)
    parts = [LogisticRegression(max_iter=1000).fit(a, b) for a, b in _halves(X, y, 200)]
    merged = combine("average", parts, [200, 400])
    np.testing.assert_allclose(merged.coef_, (parts[0].coef_ + 2 * parts[1].coef_) / 3)
    assert merged.score(X, y) > 0.95
    two = LogisticRegression(max_iter=1000).fit(X[y < 2], y[y < 2])
    with pytest.raises(InvalidArgument, match=r"shard 1 learned classes \[0, 1\] but shard 0 learned"):
        combine("average", [parts[0], two], [1, 1])


def test_forest_union_has_every_tree() -> None:
    X, y = blobs(600)
    parts = [RandomForestClassifier(n_estimators=n, random_state=i).fit(a, b)
             for i, (n, (a, b)) in enumerate(zip([3, 4], _halves(X, y, 300), strict=True))]
    merged = combine(combiner_for(RandomForestClassifier()), parts, [300, 300])
    assert merged.n_estimators == len(merged.estimators_) == 7
    assert merged.score(X, y) > 0.95
    reg = [ExtraTreesRegressor(n_estimators=2, random_state=i).fit(*linear(200, seed=i)) for i in range(3)]
    assert len(combine("trees", reg, [200] * 3).estimators_) == 6


def test_bagging_union_keeps_features_and_seeds() -> None:
    X, y = blobs(400)
    parts = [BaggingClassifier(n_estimators=3, max_features=0.6, random_state=i).fit(a, b)
             for i, (a, b) in enumerate(_halves(X, y, 200))]
    merged = combine(combiner_for(BaggingClassifier()), parts, [200, 200])
    assert merged.n_estimators == len(merged.estimators_) == len(merged.estimators_features_) == 6
    assert len(merged._seeds) == 6
    assert merged.score(X, y) > 0.9


def test_gaussian_nb_merge_equals_a_single_fit() -> None:
    X, y = blobs(3000, features=4, classes=3, seed=5)
    cuts = [0, 700, 1900, 3000]
    parts = [GaussianNB().fit(X[a:b], y[a:b]) for a, b in itertools.pairwise(cuts)]
    merged = combine(combiner_for(GaussianNB()), parts, [700, 1200, 1100])
    single = GaussianNB().fit(X, y)
    np.testing.assert_array_equal(merged.class_count_, single.class_count_)
    for attr in ("theta_", "var_", "class_prior_", "epsilon_"):
        np.testing.assert_allclose(getattr(merged, attr), getattr(single, attr), rtol=1e-10)
    np.testing.assert_array_equal(merged.predict(X), single.predict(X))


def test_multinomial_nb_merge_equals_a_single_fit() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.poisson(3.0, size=(800, 6)), rng.integers(3, size=800)
    parts = [MultinomialNB().fit(a, b) for a, b in _halves(X, y, 350)]
    merged = combine(combiner_for(MultinomialNB()), parts, [350, 450])
    single = MultinomialNB().fit(X, y)
    for attr in ("feature_count_", "class_count_", "feature_log_prob_", "class_log_prior_"):
        np.testing.assert_allclose(getattr(merged, attr), getattr(single, attr), rtol=1e-12)


def test_kmeans_merged_centroids_match_a_single_fit_on_separated_blobs() -> None:
    X, _ = blobs(3000, features=2, classes=4, spread=0.3, seed=2)
    parts = [KMeans(n_clusters=4, n_init=3, random_state=i).fit(a) for i, (a, _) in
             enumerate(_halves(X, np.zeros(len(X)), 1500))]
    merged = combine(combiner_for(KMeans(n_clusters=4)), parts, [1500, 1500], sample=X[::3], seed=0)
    single = KMeans(n_clusters=4, n_init=3, random_state=0).fit(X)
    # every single-fit centroid has a merged one within a small distance (labels may be permuted)
    distances = np.linalg.norm(single.cluster_centers_[:, None] - merged.cluster_centers_[None], axis=2)
    assert distances.min(axis=1).max() < 0.1
    assert merged.predict(X).shape == (3000,)


def test_an_estimator_without_a_combiner_is_refused_with_the_strategies_that_fit() -> None:
    with pytest.raises(InvalidArgument,
                       match=r"^GradientBoostingClassifier has no combiner; use strategy='search' or "
                             r"strategy='single'$"):
        combiner_for(GradientBoostingClassifier())
    assert strategies_for(SGDClassifier()) == ["combine", "sync", "search", "single"]
    assert strategies_for(RandomForestClassifier()) == ["combine", "search", "single"]


def test_trees_split_over_shards() -> None:
    assert split_estimators(200, 2) == [100, 100]
    assert split_estimators(7, 3) == [3, 2, 2]
    with pytest.raises(InvalidArgument, match="n_estimators=1 cannot be split over 2 shards"):
        split_estimators(1, 2)
