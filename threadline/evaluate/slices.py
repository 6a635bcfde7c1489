"""Metrics per slice of a column: each value of a categorical column, quantile bins of a number.

A slice is a 0/1 weight row, so its metrics come from the same code as the overall ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.evaluate.metrics import point

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.evaluate.metrics import Predictions

#: a numeric column with more distinct values than this is cut into quantile bins
MAX_NUMERIC_VALUES = 10
QUANTILE_BINS = 4
#: categories beyond the most frequent this many are pooled into "(other)"
MAX_CATEGORIES = 50
MISSING = "(missing)"
OTHER = "(other)"


@dataclass(frozen=True)
class SliceMetrics:
    """The metrics of the rows where `column` falls in `value` (a category or a bin)."""

    column: str
    value: str
    rows: int
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"column": self.column, "value": self.value, "rows": self.rows,
                "metrics": dict(self.metrics)}


def _number(v: float) -> str:
    return f"{v:.4g}"


def _quantile_masks(values: np.ndarray, bins: int) -> list[tuple[str, np.ndarray]]:
    """Bins `[edge i, edge i+1)` between quantiles; the last bin is closed (holds the maximum)."""
    missing = np.isnan(values)
    edges = np.unique(np.quantile(values[~missing], np.linspace(0.0, 1.0, bins + 1)))
    last = len(edges) - 2  # callers give > MAX_NUMERIC_VALUES distinct values: >= 2 edges
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, last)
    out = [(f"[{_number(edges[i])}, {_number(edges[i + 1])}{']' if i == last else ')'}",
             (index == i) & ~missing) for i in range(last + 1)]
    if missing.any():
        out.append((MISSING, missing))
    return out


def _category_masks(values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    labels = np.array([MISSING if v is None or v != v else str(v) for v in values.tolist()],
                      dtype=object)
    names, counts = np.unique(labels, return_counts=True)
    ranked = [str(n) for _, n in sorted(zip(-counts, names, strict=True))]
    kept, pooled = ranked[:MAX_CATEGORIES], ranked[MAX_CATEGORIES:]
    out = [(name, labels == name) for name in sorted(kept)]
    if pooled:
        out.append((OTHER, np.isin(labels, pooled)))
    return out


def slice_masks(values: np.ndarray, bins: int = QUANTILE_BINS) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) per slice of one column's values.

    A numeric column with more than `MAX_NUMERIC_VALUES` distinct values is cut at its
    quantiles into `bins` bins labelled `[low, high)`; anything else slices by value.
    """
    if values.dtype.kind in "iuf" and np.unique(values[~np.isnan(values.astype(np.float64))]).size \
            > MAX_NUMERIC_VALUES:
        return _quantile_masks(values.astype(np.float64), bins)
    return _category_masks(values)


def slice_metrics(p: Predictions, columns: dict[str, np.ndarray],
                  order: Sequence[str] = ()) -> list[SliceMetrics]:
    """Metrics and row counts per slice of each column (`order`: column order; default all)."""
    out = []
    for column in order or list(columns):
        for label, mask in slice_masks(columns[column]):
            rows = int(mask.sum())
            if rows:
                out.append(SliceMetrics(column, label, rows, point(p, mask.astype(np.float64))))
    return out
