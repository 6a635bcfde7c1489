"""Evaluation against actuals: metrics, slices, champion/challenger comparison, reports."""

from threadline.evaluate.record import latest_evaluation
from threadline.evaluate.report import render_html
from threadline.evaluate.result import EvaluationResult
from threadline.evaluate.run import evaluate

__all__ = ["EvaluationResult", "evaluate", "latest_evaluation", "render_html"]
