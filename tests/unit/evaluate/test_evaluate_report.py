"""The HTML report: its sections per task, and every data-derived string escaped."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np

from threadline.evaluate import evaluate, render_html
from threadline.evaluate.bootstrap import Interval
from threadline.evaluate.compare import MetricComparison
from threadline.evaluate.result import DataInfo, EvaluationResult, ModelInfo
from threadline.evaluate.slices import SliceMetrics

if TYPE_CHECKING:
    from conftest import Churn


def test_classification_report_has_every_section_and_escapes_values(churn: Churn) -> None:
    churn.registry.set_alias("churn", "production", 1)
    result = evaluate(churn.registry, "churn@2", churn.ref, target="churned", slice_by=["segment"],
                      against="churn@production", replicates=50, record=False)
    page = render_html(result)
    for section in ("<h2>Metrics</h2>", "<h2>Champion/challenger</h2>", "<h2>Confusion matrix</h2>",
                    "<h2>Curves</h2>", "<h2>Slices</h2>", "ROC curve", "Calibration"):
        assert section in page
    assert page.count("<svg") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=", page)  # self-contained: nothing to fetch
    assert "challenger better" in page
    assert churn.commit in page
    json.dumps(result.to_dict())  # the JSON form is plain data


def test_regression_report_draws_residuals_and_escapes_names() -> None:
    result = EvaluationResult(
        model=ModelInfo("m<b>@1", "m<b>", 1, "sklearn"),
        data=DataInfo("d@main:t.csv", "d", "c0ffee", "t.csv"), target="y&z", task="regression",
        rows=3, seed=0, replicates=10, created_at="2026-01-01T00:00:00+00:00",
        metrics={"rmse": 1.0, "r2": None}, intervals={"rmse": Interval(0.5, 1.5)},
        diagnostics={"residuals": {"edges": [-1.0, 0.0, 1.0], "counts": [1.0, 2.0]}},
        slices=[SliceMetrics("<col>", "\"'<v>", 3, {"rmse": 1.0})],
        against=ModelInfo("m<b>@0", "m<b>", 0, "sklearn"), against_metrics={"rmse": 2.0},
        comparison=[MetricComparison("rmse", 2.0, 1.0, -1.0, Interval(-1.2, -0.8), "challenger better")],
        notes=["mape skips the 1 row(s) whose actual value is 0"],
    )
    page = render_html(result)
    assert "Residuals" in page
    assert page.count("<svg") == 1
    assert "<b>" not in page
    assert "m&lt;b&gt;" in page
    assert "&lt;col&gt;" in page
    assert "&quot;&#x27;&lt;v&gt;" in page
    assert "y&amp;z" in page
    assert "[0.5, 1.5]" in page
    assert "[-1.2, -0.8]" in page
    assert "mape skips" in page
    assert "Confusion matrix" not in page
    assert np.isfinite(result.to_dict()["metrics"]["rmse"])
