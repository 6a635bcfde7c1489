"""Window summaries: a window of traffic binned on its reference's bins, mergeable.

`summarise(reference, rows)` counts a window's values in the reference's bins in one O(n)
pass per column (`np.searchsorted` + `np.bincount` for numbers, Arrow's `index_in` for
categories). Counts of disjoint windows add up exactly, so the summary of a prediction log
is the merge of its commits' summaries, and a check after a new commit costs O(new rows):

    >>> import numpy as np
    >>> from threadline.monitor.reference import Reference
    >>> ref = Reference.from_table({"x": np.arange(100.0)}, bins=4)
    >>> a = summarise(ref, {"x": np.arange(50.0)})
    >>> b = summarise(ref, {"x": np.arange(50.0, 100.0)})
    >>> whole = summarise(ref, {"x": np.arange(100.0)})
    >>> a.merge(b).columns["x"].counts.tolist() == whole.columns["x"].counts.tolist()
    True

Values a categorical reference does not list fall in its "other" bucket; the most frequent
of them are also kept by name (`unlisted`, approximate beyond `UNLISTED` values) so a report
can say which new category appeared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument
from threadline.monitor.columns import as_table, kind_of, numeric_values, text_values
from threadline.monitor.reference import NumericReference, Reference

if TYPE_CHECKING:
    from threadline.monitor.reference import CategoricalReference

FORMAT_ID = "threadline.window/1"
#: unlisted categories kept by name per column
UNLISTED = 8

Int64s = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(eq=False)
class ColumnWindow:
    """One column of a window, counted in its reference's bins.

    Attributes:
        name: column name.
        kind: "numeric" or "categorical" (the reference column's).
        counts: non-null values per reference bin (numeric) or per listed category then
            "other" (categorical).
        nulls: null or NaN values.
        lo, hi: the window's min and max (numeric; NaN without values).
        unlisted: the most frequent values outside the reference's categories, with counts.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    counts: Int64s
    nulls: int
    lo: float = math.nan
    hi: float = math.nan
    unlisted: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Window rows, nulls included."""
        return int(self.counts.sum()) + self.nulls

    def merge(self, other: ColumnWindow) -> ColumnWindow:
        """The column summary of both windows together (counts exact, `unlisted` top values)."""
        if self.counts.size != other.counts.size or self.kind != other.kind:
            raise InvalidArgument(f"cannot merge summaries of column {self.name!r}: they use different "
                                  "bins; summarise both windows against the same reference")
        unlisted = dict(self.unlisted)
        for key, count in other.unlisted.items():
            unlisted[key] = unlisted.get(key, 0) + count
        return ColumnWindow(self.name, self.kind, self.counts + other.counts, self.nulls + other.nulls,
                            _nanmin(self.lo, other.lo), _nanmax(self.hi, other.hi), _top(unlisted))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "nulls": self.nulls,
                             "counts": [int(c) for c in self.counts]}
        if self.kind == "numeric":
            d.update(lo=None if math.isnan(self.lo) else self.lo,
                     hi=None if math.isnan(self.hi) else self.hi)
        if self.unlisted:
            d["unlisted"] = dict(self.unlisted)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnWindow:
        """Rebuild from `to_dict` output."""
        kind = d["kind"]
        if kind not in ("numeric", "categorical"):
            raise InvalidArgument(f"window column {d.get('name')!r} has unknown kind {kind!r}")
        lo, hi = d.get("lo"), d.get("hi")
        return cls(str(d["name"]), kind, np.asarray(d["counts"], dtype=np.int64), int(d["nulls"]),
                   math.nan if lo is None else float(lo), math.nan if hi is None else float(hi),
                   {str(k): int(v) for k, v in d.get("unlisted", {}).items()})


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _top(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:UNLISTED])


class WindowSummary:
    """A window's columns counted in one reference's bins; `merge` adds windows up.

    Attributes:
        reference: the fingerprint of the reference whose bins were used.
        rows: rows in the window.
        columns: per-column counts; a reference column absent from the window is absent here.
    """

    def __init__(self, reference: str, rows: int, columns: dict[str, ColumnWindow]) -> None:
        self.reference = reference
        self.rows = rows
        self.columns = columns

    def merge(self, other: WindowSummary) -> WindowSummary:
        """The summary of both windows together (a column in one only is kept as it is).

        Raises:
            InvalidArgument: the summaries were made against different references.
        """
        if self.reference != other.reference:
            raise InvalidArgument("cannot merge window summaries made against different references "
                                  f"({self.reference} and {other.reference}); summarise both "
                                  "against the same reference")
        columns = dict(self.columns)
        for name, col in other.columns.items():
            columns[name] = columns[name].merge(col) if name in columns else col
        return WindowSummary(self.reference, self.rows + other.rows, columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form tagged with the format id `threadline.window/1`."""
        return {"format": FORMAT_ID, "reference": self.reference, "rows": self.rows,
                "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowSummary:
        """Rebuild from `to_dict` output.

        Raises:
            InvalidArgument: the format id is not one this version reads.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt != FORMAT_ID:
            raise InvalidArgument(f"unknown window summary format {fmt!r}; this version reads "
                                  f"{FORMAT_ID!r} (upgrade threadline, or summarise the window again)")
        columns = {str(c["name"]): ColumnWindow.from_dict(c) for c in d["columns"]}
        return cls(str(d["reference"]), int(d["rows"]), columns)

    def __repr__(self) -> str:
        return f"WindowSummary(rows={self.rows}, columns={list(self.columns)})"


def summarise(reference: Reference, data: Any) -> WindowSummary:
    """Count a window's values in `reference`'s bins: O(rows) per column, bounded extra memory.

    Args:
        reference: the reference whose bins to use.
        data: the window: an Arrow table, pandas DataFrame or dict of numpy arrays. Columns the
            reference does not know are ignored; reference columns missing here are left out
            (the drift check gives them no verdict).

    Raises:
        InvalidArgument: a column's type cannot be binned as its reference column is (text in
            a numeric column, say).
    """
    table = as_table(data)
    present = set(table.column_names)
    columns: dict[str, ColumnWindow] = {}
    for name, ref in reference.columns.items():
        if name not in present:
            continue
        column = table.column(name)
        kind = kind_of(column.type)
        if kind != ref.kind and not (len(column) == column.null_count):
            raise InvalidArgument(f"column {name!r} is {column.type} in the window but {ref.kind} in the "
                                  "reference; cast it to the reference's type before checking drift")
        if isinstance(ref, NumericReference):
            columns[name] = _numeric_window(ref, column)
        else:
            columns[name] = _categorical_window(ref, column)
    return WindowSummary(reference.fingerprint(), table.num_rows, columns)


def _numeric_window(ref: NumericReference, column: pa.ChunkedArray) -> ColumnWindow:
    if kind_of(column.type) != "numeric":  # an all-null column of another type
        return ColumnWindow(ref.name, "numeric", np.zeros(ref.counts.size, dtype=np.int64), len(column))
    values = numeric_values(column)
    if values.size == 0:
        return ColumnWindow(ref.name, "numeric", np.zeros(ref.counts.size, dtype=np.int64), 0)
    # NaN sorts after every edge, so it lands in the last bin: count it there, then take it out
    index = np.searchsorted(ref.edges, values, side="left")
    counts = np.bincount(index, minlength=ref.counts.size).astype(np.int64)
    nans = int(np.count_nonzero(np.isnan(values)))
    counts[-1] -= nans
    if nans == values.size:
        return ColumnWindow(ref.name, "numeric", counts, nans)
    return ColumnWindow(ref.name, "numeric", counts, nans, float(np.nanmin(values)), float(np.nanmax(values)))


def _categorical_window(ref: CategoricalReference, column: pa.ChunkedArray) -> ColumnWindow:
    listed = len(ref.categories)
    if kind_of(column.type) != "categorical":  # an all-null column of another type
        return ColumnWindow(ref.name, "categorical", np.zeros(listed + 1, dtype=np.int64), len(column))
    values = text_values(column)
    nulls = values.null_count
    index = pc.index_in(values, value_set=pa.array(ref.categories, type=values.type))
    filled = np.asarray(pc.fill_null(index, listed).to_numpy(), dtype=np.intp)
    counts = np.bincount(filled, minlength=listed + 1).astype(np.int64)
    counts[-1] -= nulls  # nulls were filled into the "other" slot too
    unlisted: dict[str, int] = {}
    if counts[-1] > 0:
        outside = values.filter(pc.and_(pc.is_null(index), pc.is_valid(values)))
        counted = pc.value_counts(outside.combine_chunks())
        tally = np.asarray(counted.field("counts").to_numpy(), dtype=np.int64)
        # a high-cardinality column (ids) can have many unlisted values: pick the few in numpy
        keep = np.argsort(-tally, kind="stable")[: 4 * UNLISTED]
        names = counted.field("values").take(pa.array(keep)).to_pylist()
        unlisted = _top({str(v): int(tally[i]) for v, i in zip(names, keep.tolist(), strict=True)})
    return ColumnWindow(ref.name, "categorical", counts, nulls, unlisted=unlisted)


__all__ = ["FORMAT_ID", "UNLISTED", "ColumnWindow", "WindowSummary", "summarise"]
