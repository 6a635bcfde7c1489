"""Each metric equals scikit-learn's on fixed data, unweighted and with integer weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from threadline.errors import InvalidArgument
from threadline.evaluate import metrics as m
from threadline.evaluate.curves import calibration, confusion_matrix, roc_curve

RNG = np.random.default_rng(7)
N = 400
Y_BIN = RNG.integers(0, 2, N)
# rounded to 2 decimals so that many scores tie: the AUC's tie handling is exercised
SCORE = np.round(np.clip(0.35 * Y_BIN + 0.65 * RNG.random(N), 0.0, 1.0), 2)
PRED_BIN = (SCORE > 0.5).astype(int)
COUNTS = RNG.integers(0, 4, N).astype(np.float64)  # a bootstrap-like weighting


def _binary() -> m.Predictions:
    return m.encode("classification", Y_BIN, PRED_BIN, np.c_[1 - SCORE, SCORE], [0, 1])


@pytest.mark.parametrize("weights", [None, COUNTS], ids=["unweighted", "weighted"])
def test_binary_metrics_equal_sklearn(weights: np.ndarray | None) -> None:
    got = m.point(_binary(), weights)
    sw = weights
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_BIN, PRED_BIN, sample_weight=sw))
    assert got["precision"] == pytest.approx(skm.precision_score(Y_BIN, PRED_BIN, sample_weight=sw))
    assert got["recall"] == pytest.approx(skm.recall_score(Y_BIN, PRED_BIN, sample_weight=sw))
    assert got["f1"] == pytest.approx(skm.f1_score(Y_BIN, PRED_BIN, sample_weight=sw))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, SCORE, sample_weight=sw))
    assert got["log_loss"] == pytest.approx(
        skm.log_loss(Y_BIN, np.c_[1 - SCORE, SCORE], sample_weight=sw))


def test_auc_without_ties_uses_the_fast_path_and_still_equals_sklearn() -> None:
    score = RNG.random(N) + 0.3 * Y_BIN
    w = np.vstack([np.ones(N), COUNTS])
    got = m.auc(score, Y_BIN == 1, w)
    assert got[0] == pytest.approx(skm.roc_auc_score(Y_BIN, score))
    assert got[1] == pytest.approx(skm.roc_auc_score(Y_BIN, score, sample_weight=COUNTS))


def test_auc_of_one_class_is_undefined() -> None:
    assert np.isnan(m.auc(np.array([0.1, 0.9]), np.array([True, True]), m.ones(2))[0])


@pytest.mark.parametrize("weights", [None, COUNTS], ids=["unweighted", "weighted"])
def test_multiclass_metrics_equal_sklearn(weights: np.ndarray | None) -> None:
    y = RNG.integers(0, 3, N)
    logits = RNG.normal(size=(N, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    got = m.point(m.encode("classification", y, pred, proba, [0, 1, 2]), weights)
    sw = weights
    for avg in ("macro", "weighted"):
        assert got[f"precision_{avg}"] == pytest.approx(
            skm.precision_score(y, pred, average=avg, sample_weight=sw))
        assert got[f"recall_{avg}"] == pytest.approx(
            skm.recall_score(y, pred, average=avg, sample_weight=sw))
        assert got[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, sample_weight=sw))
    assert got["roc_auc_ovr"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", sample_weight=sw))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, sample_weight=sw))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=sw))


def test_string_labels_follow_the_models_class_order_and_unknown_labels_are_added() -> None:
    y = np.array(["no", "yes", "yes", "maybe"], dtype=object)
    pred = np.array(["no", "yes", "no", "no"], dtype=object)
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    p = m.encode("classification", y, pred, proba, ["no", "yes"])
    assert p.classes == ("no", "yes", "maybe")
    assert p.proba is not None
    assert p.proba.shape == (4, 3)
    assert p.proba[:, 2].tolist() == [0, 0, 0, 0]
    assert m.point(p)["accuracy"] == 0.5
    assert confusion_matrix(p) == skm.confusion_matrix(y, pred, labels=["no", "yes", "maybe"]).tolist()


@pytest.mark.parametrize("weights", [None, COUNTS], ids=["unweighted", "weighted"])
def test_regression_metrics_equal_sklearn(weights: np.ndarray | None) -> None:
    y = RNG.normal(10, 3, N)
    pred = y + RNG.normal(0, 1, N)
    got = m.point(m.encode("regression", y, pred), weights)
    sw = weights
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred, sample_weight=sw)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred, sample_weight=sw))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred, sample_weight=sw))
    assert got["mape"] == pytest.approx(
        skm.mean_absolute_percentage_error(y, pred, sample_weight=sw))


def test_mape_skips_zero_actuals() -> None:
    p = m.encode("regression", np.array([0.0, 2.0, 4.0]), np.array([5.0, 3.0, 3.0]))
    got = m.point(p)
    assert got["mape"] == pytest.approx((0.5 + 0.25) / 2)
    assert got["mae"] == pytest.approx(7 / 3)


def test_calibration_bins_and_ece_have_known_answers() -> None:
    proba1 = np.array([0.05, 0.15, 0.15, 0.95])
    y = np.array([0, 0, 1, 1])
    p = m.encode("classification", y, (proba1 > 0.5).astype(int), np.c_[1 - proba1, proba1], [0, 1])
    bins = calibration(p)
    filled = [(b["low"], b["rows"], b["mean_predicted"], b["observed_rate"]) for b in bins if b["rows"]]
    assert filled == [(0.0, 1, pytest.approx(0.05), 0.0), (0.1, 2, pytest.approx(0.15), 0.5),
                      (0.9, 1, pytest.approx(0.95), 1.0)]
    assert len(bins) == 10
    # ECE = (1 * |.05 - 0| + 2 * |.15 - .5| + 1 * |.95 - 1|) / 4
    assert m.point(p)["ece"] == pytest.approx(0.2)
    observed, predicted = calibration_curve(y, proba1, n_bins=10)
    assert [b["observed_rate"] for b in bins if b["rows"]] == pytest.approx(observed)
    assert [b["mean_predicted"] for b in bins if b["rows"]] == pytest.approx(predicted)


def test_roc_curve_runs_from_origin_to_one_and_matches_sklearn_points() -> None:
    curve = roc_curve(SCORE, Y_BIN == 1)
    fpr, tpr, _ = skm.roc_curve(Y_BIN, SCORE, drop_intermediate=False)
    assert (curve["fpr"][0], curve["tpr"][0], curve["fpr"][-1], curve["tpr"][-1]) == (0, 0, 1, 1)
    assert curve["fpr"] == pytest.approx(fpr.tolist())
    assert curve["tpr"] == pytest.approx(tpr.tolist())


def test_task_is_inferred_from_the_model_or_the_target() -> None:
    class Regressor:
        def predict(self, x: object) -> None: ...

    class Classifier(Regressor):
        def predict_proba(self, x: object) -> None: ...

    floats = np.array([0.5, 1.5, 2.0])
    assert m.infer_task(Classifier(), floats) == "classification"
    assert m.infer_task(Regressor(), floats) == "regression"
    assert m.infer_task(Regressor(), np.array(["a", "b"], dtype=object)) == "classification"
    assert m.infer_task(Regressor(), np.array([0, 1, 1, 0])) == "classification"
    assert m.infer_task(Regressor(), np.arange(100)) == "regression"
    assert m.check_task("regression") == "regression"
    with pytest.raises(InvalidArgument, match="unknown task 'ranking'"):
        m.check_task("ranking")


def test_regression_refuses_labels() -> None:
    with pytest.raises(InvalidArgument, match="regression needs numeric targets"):
        m.encode("regression", np.array(["a"], dtype=object), np.array(["b"], dtype=object))
