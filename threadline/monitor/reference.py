"""Reference summaries: what a model's training data looked like, in ~1-2 KiB per column.

A drift check compares a window of production traffic with the data the model learned from.
Keeping the training rows around for that is costly, so a `Reference` keeps, per column, a
fixed binning and the training data's count in each bin:

* numeric: up to `bins - 1` cut points at the reference's quantiles (so every bin holds about
  the same share, which spends the resolution where the data are) and the count per bin;
* categorical (strings, booleans): the `top` most frequent categories, an "other" bucket for
  the rest, and their counts;
* both: null count (NaN is null), rows, and the rows the tests may trust (`effective_rows`).

A window is binned the same way (`threadline.monitor.window.summarise`), so every test works
on two count vectors and a check costs O(window), not O(training data).

A reference is built exactly from data (`Reference.from_table`) or from a stored
data-preparation profile (`Reference.from_profile`): cut points and counts then come from the
profile's KLL quantile sketch and top-values summary. Sketch counts carry rank error, so such
a column's `effective_rows` is the sample size whose sampling error matches the sketch's
(derived from its compaction history), and tests treat the reference as that many rows: the
p-values stay honest, at some cost in power for very large windows.

Serialised with the format id `threadline.reference/1`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from threadline.errors import InvalidArgument
from threadline.monitor.columns import as_table, kind_of, numeric_values, text_values
from threadline.prep.kll import KLLSketch
from threadline.prep.sketches import json_num, num_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

FORMAT_ID = "threadline.reference/1"
#: numeric bins per column: 64 keeps a column near 1.3 KiB and a bin at ~1.6% of the data
DEFAULT_BINS = 64
#: categories listed per column; the rest share one "other" bucket
DEFAULT_TOP = 32
#: quantiles read from a KLL sketch per bin, to place cut points and estimate their ranks
_GRID_PER_BIN = 4

Float64s = np.ndarray[Any, np.dtype[np.float64]]
Int64s = np.ndarray[Any, np.dtype[np.int64]]


def _pack_floats(values: Float64s) -> str:
    return base64.b64encode(values.astype("<f8").tobytes()).decode("ascii")


def _unpack_floats(text: str) -> Float64s:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


@dataclass(frozen=True, eq=False)
class NumericReference:
    """One numeric column's binning and reference counts.

    Attributes:
        name: column name.
        edges: sorted, distinct, finite cut points; bin i holds edges[i-1] < x <= edges[i]
            (the first bin everything up to edges[0], the last everything above edges[-1]).
        counts: non-null reference values per bin (len(edges) + 1 entries).
        nulls: null or NaN values.
        lo, hi: the reference's min and max (NaN when it has no values).
        scale: the spread distances are divided by: IQR / 1.349 (the standard deviation for
            normal data, robust to outliers), else the standard deviation, else 1.
        effective_rows: the sample size tests treat the reference as (== rows when exact).
    """

    name: str
    edges: Float64s
    counts: Int64s
    nulls: int
    lo: float
    hi: float
    scale: float
    effective_rows: int
    kind: Literal["numeric"] = "numeric"

    @property
    def rows(self) -> int:
        """Reference rows, nulls included."""
        return int(self.counts.sum()) + self.nulls

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (cut points base64 float64: 8 bytes each, exact)."""
        return {"name": self.name, "kind": "numeric", "nulls": self.nulls,
                "effective_rows": self.effective_rows, "lo": json_num(self.lo),
                "hi": json_num(self.hi), "scale": self.scale, "edges": _pack_floats(self.edges),
                "counts": [int(c) for c in self.counts]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericReference:
        """Rebuild from `to_dict` output."""
        edges = _unpack_floats(str(d["edges"]))
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.size != edges.size + 1:
            raise InvalidArgument(f"reference column {d.get('name')!r} has {counts.size} counts for "
                                  f"{edges.size} cut points (expected one more); rebuild the reference")
        return cls(str(d["name"]), edges, counts, int(d["nulls"]), float(num_json(d["lo"])),
                   float(num_json(d["hi"])), float(d["scale"]), int(d["effective_rows"]))


@dataclass(frozen=True, eq=False)
class CategoricalReference:
    """One categorical column's listed categories and reference counts.

    Attributes:
        name: column name.
        categories: the listed values, most frequent first (booleans as "true"/"false").
        counts: reference count per listed category, then the "other" bucket (len + 1).
        nulls: null values.
        effective_rows: the sample size tests treat the reference as (== rows when exact).
    """

    name: str
    categories: tuple[str, ...]
    counts: Int64s
    nulls: int
    effective_rows: int
    kind: Literal["categorical"] = "categorical"

    @property
    def rows(self) -> int:
        """Reference rows, nulls included."""
        return int(self.counts.sum()) + self.nulls

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "kind": "categorical", "nulls": self.nulls,
                "effective_rows": self.effective_rows, "categories": list(self.categories),
                "counts": [int(c) for c in self.counts]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalReference:
        """Rebuild from `to_dict` output."""
        categories = tuple(str(c) for c in d["categories"])
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.size != len(categories) + 1:
            raise InvalidArgument(f"reference column {d.get('name')!r} has {counts.size} counts for "
                                  f"{len(categories)} categories (expected one more); rebuild it")
        return cls(str(d["name"]), categories, counts, int(d["nulls"]), int(d["effective_rows"]))


ColumnReference = NumericReference | CategoricalReference


class Reference:
    """Per-column reference summaries of one table (a model version's training data).

    Example:
        >>> import numpy as np
        >>> ref = Reference.from_table({"x": np.arange(1000.0), "c": np.array(["a", "b"] * 500)})
        >>> ref.rows, ref.columns["c"].categories
        (1000, ('a', 'b'))
    """

    def __init__(self, columns: dict[str, ColumnReference], rows: int, source: str = "data") -> None:
        self.columns = columns
        self.rows = rows
        self.source = source

    # -- building

    @classmethod
    def from_table(cls, data: Any, columns: Sequence[str] | None = None, *, bins: int = DEFAULT_BINS,
                   top: int = DEFAULT_TOP) -> Reference:
        """Summarise data exactly: an Arrow table, pandas DataFrame or dict of numpy arrays.

        Args:
            data: the reference rows.
            columns: the columns to keep (default: every numeric, string or boolean column).
            bins: numeric bins per column (2 to 256).
            top: categories listed per categorical column (1 to 256).

        Raises:
            InvalidArgument: a named column is missing or of a type that cannot be binned.
        """
        _check_sizes(bins, top)
        table = as_table(data)
        out: dict[str, ColumnReference] = {}
        for name in _pick_columns(table, columns):
            column = table.column(name)
            if kind_of(column.type) == "numeric":
                out[name] = _numeric_from_values(name, numeric_values(column), bins)
            else:
                out[name] = _categorical_from_values(name, text_values(column), top)
        return cls(out, table.num_rows, "data")

    @classmethod
    def from_profile(cls, profile: dict[str, Any], columns: Sequence[str] | None = None, *,
                     bins: int = DEFAULT_BINS, top: int = DEFAULT_TOP) -> Reference:
        """Summarise from a stored data-preparation profile (`TableProfile.to_dict()` form).

        Numeric and temporal columns are binned from the KLL sketch, categorical and boolean
        columns from the top values; other kinds are skipped.

        Raises:
            InvalidArgument: not a `threadline.profile/1` profile, or a named column is absent.
        """
        _check_sizes(bins, top)
        if not isinstance(profile, dict) or profile.get("format") != "threadline.profile/1":
            raise InvalidArgument("not a data-preparation profile (format 'threadline.profile/1'); "
                                  "pass `TableProfile.to_dict()` or `ModelVersion.profile[key]`")
        found = {str(c["name"]): c for c in profile["columns"]}
        wanted = list(columns) if columns is not None else list(found)
        out: dict[str, ColumnReference] = {}
        for name in wanted:
            if name not in found:
                raise InvalidArgument(f"column {name!r} is not in the profile; it has {sorted(found)}")
            col = found[name]
            if col["kind"] in ("numeric", "temporal") and "kll" in col:
                out[name] = _numeric_from_profile(col, bins)
            elif col["kind"] in ("categorical", "boolean"):
                out[name] = _categorical_from_profile(col, top)
            elif columns is not None:
                raise InvalidArgument(f"column {name!r} is {col['kind']}; only numeric, temporal, "
                                      "string and boolean columns can be checked for drift")
        return cls(out, int(profile["rows"]), "profile")

    # -- identity and storage

    def fingerprint(self) -> str:
        """A hash of the binning (not the counts): window summaries carry it to stay comparable."""
        parts = [(n, c.kind, _pack_floats(c.edges) if isinstance(c, NumericReference) else list(c.categories))
                 for n, c in sorted(self.columns.items())]
        return hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form tagged with the format id `threadline.reference/1`."""
        return {"format": FORMAT_ID, "rows": self.rows, "source": self.source,
                "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reference:
        """Rebuild a reference written by `to_dict`.

        Raises:
            InvalidArgument: the format id is not one this version reads.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt != FORMAT_ID:
            raise InvalidArgument(f"unknown reference format {fmt!r}; this version of threadline "
                                  f"reads {FORMAT_ID!r} (upgrade threadline, or rebuild the reference)")
        columns: dict[str, ColumnReference] = {}
        for c in d["columns"]:
            columns[str(c["name"])] = (NumericReference.from_dict(c) if c["kind"] == "numeric"
                                       else CategoricalReference.from_dict(c))
        return cls(columns, int(d["rows"]), str(d.get("source", "data")))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Reference:
        """Rebuild from `to_json` output."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return f"Reference(rows={self.rows}, columns={list(self.columns)}, source={self.source!r})"


# ---------------------------------------------------------------------------------------- exact


def _check_sizes(bins: int, top: int) -> None:
    if not 2 <= bins <= 256:
        raise InvalidArgument(f"bins={bins} is out of range; use 2 to 256 (default {DEFAULT_BINS})")
    if not 1 <= top <= 256:
        raise InvalidArgument(f"top={top} is out of range; use 1 to 256 (default {DEFAULT_TOP})")


def _pick_columns(table: pa.Table, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return [f.name for f in table.schema if kind_of(f.type) is not None]
    for name in columns:
        if name not in table.column_names:
            raise InvalidArgument(f"column {name!r} is not in the data; it has {table.column_names}")
        if kind_of(table.schema.field(name).type) is None:
            raise InvalidArgument(f"column {name!r} is {table.schema.field(name).type}; only numeric, "
                                  "temporal, string and boolean columns can be checked for drift")
    return list(columns)


def _scale(q25: float | None, q75: float | None, std: float | None) -> float:
    """IQR / 1.349, else std, else 1: a spread that makes distances comparable across columns."""
    if q25 is not None and q75 is not None and math.isfinite(q75 - q25) and q75 > q25:
        return (q75 - q25) / 1.349
    if std is not None and math.isfinite(std) and std > 0:
        return std
    return 1.0


def _numeric_from_values(name: str, values: Float64s, bins: int) -> NumericReference:
    isnan = np.isnan(values)
    nulls = int(isnan.sum())
    present = values[~isnan] if nulls else values
    if present.size == 0:
        return NumericReference(name, np.empty(0), np.zeros(1, dtype=np.int64), nulls,
                                math.nan, math.nan, 1.0, 0)
    # "inverted_cdf" cut points are data values, so each value of a discrete column can own a bin
    cuts = np.quantile(present, np.arange(1, bins) / bins, method="inverted_cdf")
    edges = np.unique(cuts[np.isfinite(cuts)])
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    finite = present[np.isfinite(present)]
    q25, q75 = (np.quantile(finite, [0.25, 0.75]) if finite.size else (math.nan, math.nan))
    std = float(finite.std()) if finite.size else None
    return NumericReference(name, edges.astype(np.float64), counts.astype(np.int64), nulls,
                            float(present.min()), float(present.max()),
                            _scale(float(q25), float(q75), std), int(present.size + nulls))


def _categorical_from_values(name: str, values: pa.ChunkedArray, top: int) -> CategoricalReference:
    import pyarrow.compute as pc

    nulls = values.null_count
    counted = pc.value_counts(values.combine_chunks()) if len(values) else None
    pairs: list[tuple[str, int]] = []
    if counted is not None:
        pairs = [(v, int(c)) for v, c in zip(counted.field("values").to_pylist(),
                                             counted.field("counts").to_pylist()) if v is not None]
    pairs.sort(key=lambda kv: (-kv[1], kv[0]))
    listed = pairs[:top]
    other = sum(c for _, c in pairs[top:])
    counts = np.asarray([c for _, c in listed] + [other], dtype=np.int64)
    return CategoricalReference(name, tuple(v for v, _ in listed), counts, nulls, len(values))


# ---------------------------------------------------------------------------------------- profiles


def _sketch_rows(kll: dict[str, Any], n: int) -> int:
    """The sample size whose CDF error matches the sketch's rank error.

    Each compaction at level h moves a rank by 0 or +-2^h with equal odds of 0 and not, so
    the rank variance is about sum(compactions_h * 4^h) / 2; a sample of m rows has CDF
    variance p(1 - p)/m <= 1/(4m). An uncompacted sketch is exact.
    """
    variance = sum(c * 4.0**h for h, c in enumerate(kll.get("compactions", []))) / 2.0
    if variance <= 0:
        return n
    return max(1, min(n, int(0.25 * n * n / variance)))


def _numeric_from_profile(col: dict[str, Any], bins: int) -> NumericReference:
    sketch = KLLSketch.from_dict(col["kll"])
    n, nulls = int(col["count"]), int(col["nulls"])
    name = str(col["name"])
    if n == 0 or sketch.n == 0:
        return NumericReference(name, np.empty(0), np.zeros(1, dtype=np.int64), nulls,
                                math.nan, math.nan, 1.0, 0)
    lo, hi = float(num_json(col["min"])), float(num_json(col["max"]))
    grid_size = bins * _GRID_PER_BIN
    grid = np.asarray([sketch.quantile(i / grid_size) for i in range(1, grid_size)], dtype=np.float64)
    cuts = grid[_GRID_PER_BIN - 1 :: _GRID_PER_BIN]
    edges = np.unique(cuts[np.isfinite(cuts)])
    # the sketch's CDF at each cut point, read off the finer grid (resolution 1 / grid_size)
    ranks = np.searchsorted(grid, edges, side="right") / grid_size
    ranks = np.where(edges >= hi, 1.0, ranks)
    cumulative = np.rint(ranks * n).astype(np.int64)
    counts = np.diff(np.concatenate([[0], cumulative, [n]])).clip(min=0)
    std = num_json(col.get("std"))
    scale = _scale(sketch.quantile(0.25), sketch.quantile(0.75), float(std) if std is not None else None)
    return NumericReference(name, edges, counts.astype(np.int64), nulls, lo, hi, scale,
                            _sketch_rows(col["kll"], n) + nulls)


def _categorical_from_profile(col: dict[str, Any], top: int) -> CategoricalReference:
    n, nulls = int(col["count"]), int(col["nulls"])
    pairs = sorted(((str(v), int(c)) for v, c in col.get("top") or []), key=lambda kv: (-kv[1], kv[0]))
    listed = pairs[:top]
    other = max(0, n - sum(c for _, c in listed))
    counts = np.asarray([c for _, c in listed] + [other], dtype=np.int64)
    error = int(col.get("top_error", 0))
    # Misra-Gries counts fall short by at most `error`: a relative error of error/n per share,
    # matched by a sample of (0.5 n / error)^2 rows; exact (error 0) below 64 distinct values
    effective = n if error == 0 else max(1, min(n, int((0.5 * n / error) ** 2)))
    return CategoricalReference(str(col["name"]), tuple(v for v, _ in listed), counts, nulls,
                                effective + nulls)


__all__ = ["DEFAULT_BINS", "DEFAULT_TOP", "FORMAT_ID", "CategoricalReference", "ColumnReference",
           "NumericReference", "Reference"]
