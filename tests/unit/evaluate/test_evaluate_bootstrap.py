"""Seeded bootstrap intervals and the paired champion/challenger verdicts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from threadline.errors import InvalidArgument
from threadline.evaluate import metrics as m
from threadline.evaluate.bootstrap import Interval, intervals, replicate, weight_chunks
from threadline.evaluate.compare import (
    CHALLENGER_BETTER,
    CHAMPION_BETTER,
    WITHIN_NOISE,
    compare,
    verdict,
)


def _model(y: np.ndarray, wrong: np.ndarray, confidence: float = 0.8) -> m.Predictions:
    """A binary classifier that is wrong exactly on the rows in `wrong`."""
    pred = np.where(wrong, 1 - y, y)
    p1 = np.where(pred == 1, confidence, 1 - confidence)
    return m.encode("classification", y, pred, np.c_[1 - p1, p1], [0, 1])


Y = np.random.default_rng(3).integers(0, 2, 2000)


def test_weights_are_resampling_counts_and_depend_only_on_the_seed() -> None:
    first = np.vstack(list(weight_chunks(50, 30, seed=5)))
    again = np.vstack(list(weight_chunks(50, 30, seed=5)))
    other = np.vstack(list(weight_chunks(50, 30, seed=6)))
    assert first.shape == (30, 50)
    assert (first.sum(axis=1) == 50).all()
    assert (first == again).all()
    assert not (first == other).all()
    with pytest.raises(InvalidArgument, match="replicates must be at least 1"):
        next(weight_chunks(5, 0, seed=0))


def test_a_replicate_is_the_metric_of_the_resampled_rows() -> None:
    p = _model(Y, np.arange(Y.size) % 5 == 0)
    weights = next(weight_chunks(Y.size, 3, seed=1))
    got = replicate([p], replicates=3, seed=1)[0]["accuracy"]
    assert got.tolist() == pytest.approx([accuracy_score(Y, p.pred, sample_weight=w) for w in weights])


def test_replicate_auc_is_exact_on_float32_counts() -> None:
    rng = np.random.default_rng(8)
    score = rng.random(Y.size) + 0.2 * Y  # distinct scores: the float32 fast path
    p = m.encode("classification", Y, (score > 0.6).astype(int), np.c_[1 - score, score], [0, 1])
    weights = next(weight_chunks(Y.size, 4, seed=2))
    assert weights.dtype == np.float32
    got = replicate([p], replicates=4, seed=2)[0]["roc_auc"]
    assert got.tolist() == pytest.approx(
        [roc_auc_score(Y, score, sample_weight=w) for w in weights], rel=1e-12)
    assert got.tolist() == m.auc(score, Y == 1, weights.astype(np.float64)).tolist()


def test_paired_bootstrap_of_100k_rows_is_vectorised() -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 100_000)
    models = []
    for signal in (0.3, 0.32):
        score = signal * y + (1 - signal) * rng.random(y.size)
        models.append(m.encode("classification", y, (score > 0.5).astype(int),
                               np.c_[1 - score, score], [0, 1]))
    start = time.process_time()
    found = compare(models[0], models[1], replicates=1000, seed=0)
    # a few seconds of CPU (3 s on a busy shared core); a loop over replicates takes minutes
    assert time.process_time() - start < 30
    assert {c.metric for c in found} >= {"accuracy", "roc_auc", "log_loss", "ece"}


def test_intervals_are_deterministic_for_a_seed_and_hold_the_estimate() -> None:
    p = _model(Y, np.arange(Y.size) % 4 == 0)
    a = intervals(p, replicates=200, seed=11)
    assert a == intervals(p, replicates=200, seed=11)
    assert a != intervals(p, replicates=200, seed=12)
    assert a["accuracy"].contains(0.75)
    assert a["accuracy"].low is not None
    assert a["accuracy"].high is not None
    assert 0.70 < a["accuracy"].low < 0.75 < a["accuracy"].high < 0.80


def test_a_clearly_better_challenger_is_detected_both_ways() -> None:
    champion = _model(Y, np.arange(Y.size) % 4 == 0, 0.7)      # 75 % right
    challenger = _model(Y, np.arange(Y.size) % 10 == 0, 0.9)   # 90 % right
    found = {c.metric: c for c in compare(champion, challenger, replicates=300, seed=0)}
    assert found["accuracy"].difference == pytest.approx(0.15)
    assert found["accuracy"].verdict == CHALLENGER_BETTER
    assert found["accuracy"].interval.low is not None
    assert found["accuracy"].interval.low > 0
    assert found["log_loss"].verdict == CHALLENGER_BETTER  # lower is better: difference < 0
    assert found["log_loss"].difference is not None
    assert found["log_loss"].difference < 0
    back = {c.metric: c for c in compare(challenger, champion, replicates=300, seed=0)}
    assert back["accuracy"].verdict == CHAMPION_BETTER
    assert back["log_loss"].verdict == CHAMPION_BETTER


def test_models_of_equal_quality_are_within_noise() -> None:
    rows = np.arange(Y.size)
    champion = _model(Y, rows < 200)                    # wrong on the first 200 rows
    challenger = _model(Y, (rows >= 200) & (rows < 400))  # wrong on 200 other rows
    found = {c.metric: c for c in compare(champion, challenger, replicates=300, seed=0)}
    assert found["accuracy"].difference == 0
    assert found["accuracy"].interval.contains(0.0)
    assert {c.verdict for c in found.values()} == {WITHIN_NOISE}


def test_verdict_rules() -> None:
    assert verdict("accuracy", Interval(0.01, 0.02)) == CHALLENGER_BETTER
    assert verdict("accuracy", Interval(-0.02, -0.01)) == CHAMPION_BETTER
    assert verdict("rmse", Interval(-0.02, -0.01)) == CHALLENGER_BETTER
    assert verdict("rmse", Interval(0.01, 0.02)) == CHAMPION_BETTER
    assert verdict("accuracy", Interval(-0.01, 0.02)) == WITHIN_NOISE
    assert verdict("accuracy", Interval(None, None)) == WITHIN_NOISE


def test_paired_bootstrap_needs_the_same_rows() -> None:
    with pytest.raises(InvalidArgument, match="same rows"):
        replicate([_model(Y, Y < 0), _model(Y[:10], Y[:10] < 0)])
