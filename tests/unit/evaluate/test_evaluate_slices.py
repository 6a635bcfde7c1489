"""Slices: categories and quantile bins, with row counts and the slice's own metrics."""

from __future__ import annotations

import numpy as np
import pytest

from threadline.evaluate import metrics as m
from threadline.evaluate.slices import MISSING, slice_masks, slice_metrics


def test_categorical_slices_count_rows_and_score_only_their_rows() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    pred = np.array([1, 0, 0, 0, 1, 1])
    plan = np.array(["basic", "basic", "pro", "pro", None, "basic"], dtype=object)
    p = m.encode("classification", y, pred)
    got = {(s.value, s.rows): s.metrics["accuracy"] for s in slice_metrics(p, {"plan": plan})}
    assert got == {("basic", 3): pytest.approx(1 / 3), ("pro", 2): 1.0, (MISSING, 1): 1.0}


def test_numeric_columns_are_cut_at_quantiles() -> None:
    labels = [(label, int(mask.sum())) for label, mask in slice_masks(np.arange(100.0))]
    assert labels == [("[0, 24.75)", 25), ("[24.75, 49.5)", 25), ("[49.5, 74.25)", 25),
                      ("[74.25, 99]", 25)]


def test_numeric_columns_with_few_values_slice_by_value_and_nan_is_missing() -> None:
    values = np.array([1.0, 2.0, 2.0, np.nan])
    assert [(label, int(mask.sum())) for label, mask in slice_masks(values)] == [
        ("(missing)", 1), ("1.0", 1), ("2.0", 2)]
    many = np.concatenate([np.arange(20.0), [np.nan]])
    assert [(label, int(mask.sum())) for label, mask in slice_masks(many)][-1] == (MISSING, 1)


def test_slice_metrics_of_regression() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = m.encode("regression", y, y + np.array([1.0, -1.0, 0.0, 2.0]))
    region = np.array(["n", "n", "s", "s"], dtype=object)
    got = {s.value: (s.rows, s.metrics["mae"]) for s in slice_metrics(p, {"region": region})}
    assert got == {"n": (2, 1.0), "s": (2, 1.0)}
