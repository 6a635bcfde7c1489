"""Realised accuracy from joined labels, the label-free estimate, and policy parsing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.monitor.accuracy import Calibration, estimate_accuracy, realised
from threadline.monitor.policy import parse_policy


def _joined(n: int, *, wrong_every: int, version: int = 1, route: str = "primary") -> pa.Table:
    labels = [i % 2 for i in range(n)]
    predictions = [(1 - y) if i % wrong_every == 0 else y for i, y in enumerate(labels)]
    return pa.table({"ts": pa.array([1000 * i for i in range(n)], pa.int64()),
                     "version": pa.array([version] * n, pa.int64()),
                     "route": [route] * n, "prediction": predictions,
                     "label": pa.array([y if i % 3 else None for i, y in enumerate(labels)], pa.int64()),
                     "in.region": ["north" if i % 4 else "south" for i in range(n)]})


def test_realised_accuracy_counts_only_labelled_rows() -> None:
    table = _joined(300, wrong_every=5)
    (point,) = realised(table)
    labelled = [i for i in range(300) if i % 3]
    wrong = [i for i in labelled if i % 5 == 0]
    assert point.rows == len(labelled)
    assert point.value == pytest.approx(1 - len(wrong) / len(labelled))
    error = realised(table, metric="error_rate")[0].value
    assert error == pytest.approx(len(wrong) / len(labelled))


def test_realised_by_window_version_and_slice() -> None:
    table = pa.concat_tables([_joined(120, wrong_every=4), _joined(120, wrong_every=2, version=2,
                                                                       route="canary")])
    points = realised(table, window_ms=60_000, slice_by="region")
    assert {(p.version, p.route) for p in points} == {(1, "primary"), (2, "canary")}
    assert {p.slice for p in points} == {"north", "south"}
    assert {p.window_start for p in points} == {0, 60_000}
    assert sum(p.rows for p in points) == 2 * len([i for i in range(120) if i % 3])
    with pytest.raises(InvalidArgument, match=r"no input column 'in\.age'"):
        realised(table, slice_by="age")
    assert realised(table.slice(0, 0)) == []


def test_estimate_matches_realised_accuracy_of_a_calibrated_model() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20_000)
    correct = rng.uniform(size=confidence.size) < confidence  # calibrated by construction
    assert estimate_accuracy(confidence) == pytest.approx(correct.mean(), abs=0.01)
    assert estimate_accuracy(np.array([])) is None


def test_calibration_corrects_an_overconfident_model() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.6, 1.0, 20_000)
    correct = rng.uniform(size=confidence.size) < confidence - 0.15  # 15 points overconfident
    raw = estimate_accuracy(confidence)
    fitted = Calibration.fit(confidence[:10_000], correct[:10_000])
    calibrated = estimate_accuracy(confidence[10_000:], fitted)
    assert raw is not None
    assert calibrated is not None
    assert abs(raw - correct[10_000:].mean()) > 0.1
    assert calibrated == pytest.approx(correct[10_000:].mean(), abs=0.02)
    assert Calibration.fit(confidence[:50], correct[:50]).x == ()  # too few rows: identity


def test_policy_parsing_names_bad_values() -> None:
    policy = parse_policy({"window": {"rows": 500}, "min_accuracy": 0.8, "on_drift": ["fallback"],
                           "canary": {"promote_after": 3}})
    assert (policy.window_rows, policy.min_accuracy, policy.on_drift) == (500, 0.8, ("fallback",))
    assert policy.canary.promote_after == 3
    assert not policy.incremental
    assert parse_policy(None).incremental
    for bad, message in [({"windows": {}}, "unknown policy key 'windows'"),
                         ({"window": {"rows": 1, "minutes": 2}}, "window must be"),
                         ({"on_drift": ["reboot"]}, "unknown action 'reboot'"),
                         ({"metric": "f1"}, "metric must be"),
                         ({"canary": {"max_error_rate": 2}}, "max_error_rate must be"),
                         ({"retrain": {"pipeline": "x"}}, "needs module")]:
        with pytest.raises(InvalidArgument, match=message):
            parse_policy(bad)


def test_label_free_estimate_tracks_accuracy_under_input_shift() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)

    def sample(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 3)) + np.array([shift, 0, 0])
        p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1] + 0.5)))
        return x, (rng.uniform(size=n) < p).astype(int)

    model = LogisticRegression().fit(*sample(20_000, 0.0))
    for shift in (0.0, 1.0, -1.5):  # covariate shift: inputs move, the relation stays
        x, y = sample(20_000, shift)
        realised_accuracy = float((model.predict(x) == y).mean())
        estimated = estimate_accuracy(model.predict_proba(x).max(axis=1))
        assert estimated is not None
        assert abs(estimated - realised_accuracy) < 0.02, (shift, estimated, realised_accuracy)
    # its blind spot: the relation between inputs and labels changes (concept drift)
    x, y = sample(20_000, 0.0)
    flipped = 1 - y
    estimated = estimate_accuracy(model.predict_proba(x).max(axis=1))
    assert estimated is not None
    assert estimated - float((model.predict(x) == flipped).mean()) > 0.4
