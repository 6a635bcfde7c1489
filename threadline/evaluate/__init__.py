"""Evaluation against actuals: metrics, slices, champion/challenger comparison, reports."""
