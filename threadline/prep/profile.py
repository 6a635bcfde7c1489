"""Table profiles: per-column statistics computed in one streaming pass, mergeable and compact.

A profile is what the monitoring layer later compares production traffic against, so three
properties matter more than anything else:

* **one pass**: `TableProfile.update` sees each Arrow `RecordBatch` once and keeps only
  bounded state (exact moments, a KLL quantile sketch, a HyperLogLog, a Misra-Gries summary);
* **mergeable**: `profile(A + B) == profile(A).merge(profile(B))` exactly for counts, nulls,
  min, max and distinct registers, up to float rounding for mean/std, and within the sketch
  error for quantiles and top values — so shards profiled in parallel combine;
* **deterministic**: no global RNG; the KLL compactor draws its coin from a hash of
  (level, compaction number), and serialisation sorts everything it stores, so the same
  input gives byte-identical JSON.

Serialised with the format id `threadline.profile/1`; a numeric column takes about 2 KiB.

Example:
    >>> import pyarrow as pa
    >>> table = pa.table({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]})
    >>> p = TableProfile.from_batches(table.to_batches())
    >>> p.columns["x"].mean, p.columns["c"].top
    (1.5, [('a', 2), ('b', 1)])
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument
from threadline.prep.arrays import arrow_of, numpy_of
from threadline.prep.kll import KLLSketch
from threadline.prep.sketches import (
    SUMMARY_QUANTILES,
    HyperLogLog,
    Scalar,
    TopK,
    hash_bytes,
    hash_numbers,
    json_num,
    num_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

FORMAT_ID = "threadline.profile/1"

Kind = Literal["numeric", "categorical", "boolean", "temporal", "other"]

# ---------------------------------------------------------------------------------------- columns


def _kind_of(t: pa.DataType) -> Kind:
    if pa.types.is_dictionary(t):
        return _kind_of(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_temporal(t):
        return "temporal"
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return "categorical"
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return "categorical"
    return "other"


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


class ColumnProfile:
    """Statistics of one column, built incrementally by `update` and combined by `merge`.

    Attributes:
        name: column name.
        type: Arrow type as a string (`"int64"`, `"timestamp[ns]"`, ...).
        kind: "numeric", "categorical", "boolean", "temporal" or "other".
        count: non-null values (NaN counts as null).
        nulls: null values, NaN included.
        nans: NaN values among `nulls` (float columns only).
        min, max: extremes (numeric/temporal; temporal in the type's integer unit).
        length_min, length_max: string/binary lengths (characters for text, bytes for binary).
        quantiles: the KLL sketch (numeric/temporal), with `quantile(q)` and `summary()`.
    """

    def __init__(self, name: str, type: str, kind: Kind) -> None:
        self.name = name
        self.type = type
        self.kind: Kind = kind
        self.count = 0
        self.nulls = 0
        self.nans = 0
        self.min: Scalar | None = None
        self.max: Scalar | None = None
        self._mean = 0.0
        self._m2 = 0.0
        self.length_min: int | None = None
        self.length_max: int | None = None
        self._length_sum = 0
        numeric = kind in ("numeric", "temporal")
        self.quantiles: KLLSketch | None = KLLSketch() if numeric else None
        self._hll: HyperLogLog | None = (
            HyperLogLog() if kind in ("numeric", "temporal", "categorical") else None
        )
        self._top: TopK | None = TopK() if kind in ("categorical", "boolean") else None
        # categorical values already in the HyperLogLog: adding one again changes nothing, so
        # a later batch hashes only values it is the first to bring (bounded; not serialised)
        self._hashed: set[str | bytes] = set()

    # -- derived values

    @property
    def mean(self) -> float | None:
        """Arithmetic mean of the non-null values (None without any)."""
        return self._mean if self.count and self.kind in ("numeric", "temporal") else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (ddof=0) of the non-null values."""
        if not self.count or self.kind not in ("numeric", "temporal"):
            return None
        return math.sqrt(max(self._m2, 0.0) / self.count)

    @property
    def distinct(self) -> int | None:
        """Estimated distinct non-null values (exact below 64; ~3% error beyond)."""
        if self._hll is not None:
            return self._hll.estimate()
        if self._top is not None:
            return sum(1 for c in self._top.counts.values() if c > 0)
        return None

    @property
    def top(self) -> list[tuple[str, int]] | None:
        """Up to 64 most frequent values with (lower-bound) counts, most frequent first."""
        return self._top.top() if self._top is not None else None

    @property
    def length_mean(self) -> float | None:
        """Mean string/binary length (None for other kinds or without values)."""
        return self._length_sum / self.count if self.length_min is not None and self.count else None

    # -- building

    def update(self, chunk: pa.Array) -> None:
        """Add one batch's column."""
        nulls = chunk.null_count
        if pa.types.is_dictionary(chunk.type) and self.kind != "categorical":
            chunk = chunk.dictionary_decode()
        if self.kind == "numeric" or self.kind == "temporal":
            values = self._numbers(chunk)
            nans = 0
            # min() propagates NaN: one cheap reduction decides whether a mask is needed
            if values.dtype.kind == "f" and values.size and math.isnan(values.min()):
                isnan = np.isnan(values)
                nans = int(isnan.sum())
                values = values[~isnan]
            self.nans += nans
            self.nulls += nulls + nans
            self._add_numbers(values)
        elif self.kind == "categorical":
            self.nulls += nulls
            self._add_categories(chunk)
        elif self.kind == "boolean":
            self.nulls += nulls
            trues = int(pc.sum(chunk).as_py() or 0)
            falses = len(chunk) - nulls - trues
            self.count += trues + falses
            assert self._top is not None
            self._top.add_counts({k: c for k, c in (("true", trues), ("false", falses)) if c})
        else:
            self.nulls += nulls
            self.count += len(chunk) - nulls

    def _numbers(self, chunk: pa.Array) -> np.ndarray[Any, Any]:
        t = chunk.type
        if pa.types.is_temporal(t):
            chunk = chunk.view(pa.int32() if t.bit_width == 32 else pa.int64())
        elif pa.types.is_decimal(t) or pa.types.is_float16(t):
            chunk = pc.cast(chunk, pa.float64())
        if chunk.null_count:
            chunk = pc.drop_null(chunk)
        return numpy_of(chunk)

    def _add_numbers(self, values: np.ndarray[Any, Any]) -> None:
        if values.size == 0:
            return
        floats = values.astype(np.float64, copy=False)
        n_b = int(values.size)
        with np.errstate(invalid="ignore", over="ignore"):  # infinities give inf/NaN moments, not warnings
            mean_b = float(np.add.reduce(floats)) / n_b  # what floats.mean() computes, minus its overhead
            deviations = floats - mean_b
            np.square(deviations, out=deviations)  # what `** 2` computes, without a second array
            m2_b = float(deviations.sum())
        self._combine_moments(n_b, mean_b, m2_b)
        lo, hi = values.min().item(), values.max().item()
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        assert self.quantiles is not None
        assert self._hll is not None
        if values.dtype == np.float64 or values.dtype.kind in "iu":
            # the same extremes as the float64 values' (int to float rounding is monotone)
            self.quantiles.update_floats(floats, float(lo), float(hi))
        else:
            self.quantiles.update(floats)
        self._hll.add_hashes(hash_numbers(values))

    def _combine_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        """Chan et al.'s parallel Welford update: exact up to float rounding, order-free."""
        n_a = self.count
        n = n_a + n_b
        # Python floats: overflow gives inf and inf - inf NaN, without warnings
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * n_a * n_b / n
        self.count = n

    def _add_categories(self, chunk: pa.Array) -> None:
        t = chunk.type
        if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
            chunk = pc.cast(chunk, pa.large_string() if pa.types.is_string_view(t) else pa.large_binary())
        if pa.types.is_dictionary(chunk.type):
            dictionary, counts, in_dictionary_nulls = _dictionary_counts(chunk)
            self.nulls += in_dictionary_nulls
        else:
            # distinct values with counts, in order of first appearance (as dictionary_encode
            # orders them), in one hash pass; nulls are one entry, counted already by update()
            value_counts = pc.value_counts(chunk)
            dictionary = value_counts.field("values")
            counts = numpy_of(value_counts.field("counts"))
            if dictionary.null_count:
                valid = dictionary.is_valid()
                dictionary = dictionary.filter(valid)
                counts = counts[numpy_of(valid)]
        if counts.size == 0:
            return
        self.count += int(counts.sum())
        text = _is_text(dictionary.type)
        values: list[str | bytes] = dictionary.to_pylist()
        assert self._hll is not None
        assert self._top is not None
        fresh = [v for v in values if v not in self._hashed]
        if fresh:  # hash each distinct value once per batch, and only if it is new to the sketch
            self._hll.add_hashes(hash_bytes([v.encode() if isinstance(v, str) else v for v in fresh]))
            if len(self._hashed) < _HASHED_MAX:
                self._hashed.update(v for v in fresh if len(v) <= _HASHED_LENGTH)
        lengths = numpy_of(pc.utf8_length(dictionary) if text else pc.binary_length(dictionary))
        lengths = lengths.astype(np.int64)
        self._length_sum += int(np.dot(lengths, counts))
        lo, hi = int(lengths.min()), int(lengths.max())
        self.length_min = lo if self.length_min is None else min(self.length_min, lo)
        self.length_max = hi if self.length_max is None else max(self.length_max, hi)
        # Only the k+1 largest batch counts and the keys already held can survive the merge.
        keys = cast("list[str]", values) if text else [_key(v, text) for v in values]
        tally: list[int] = counts.tolist()
        keep = np.argsort(-counts, kind="stable")[: self._top.k + 1]
        batch = {keys[i]: tally[i] for i in keep.tolist()}
        if self._top.counts:
            held = dict(zip(keys, tally, strict=True))
            for key in self._top.counts:
                if key in held:
                    batch[key] = held[key]
        self._top.add_counts(batch)

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of both inputs together (same name, type and kind required)."""
        if (self.name, self.type) != (other.name, other.type):
            raise InvalidArgument(
                f"cannot merge profiles: column {self.name!r} is {self.type} in one and "
                f"{other.name!r} is {other.type} in the other; cast both to one schema first"
            )
        out = ColumnProfile(self.name, self.type, self.kind)
        out.count, out._mean, out._m2 = self.count, self._mean, self._m2
        if other.count:
            out._combine_moments(other.count, other._mean, other._m2)
        out.count = self.count + other.count
        out.nulls = self.nulls + other.nulls
        out.nans = self.nans + other.nans
        out.min = _opt(min, self.min, other.min)
        out.max = _opt(max, self.max, other.max)
        out.length_min = _opt(min, self.length_min, other.length_min)
        out.length_max = _opt(max, self.length_max, other.length_max)
        out._length_sum = self._length_sum + other._length_sum
        if self.quantiles is not None and other.quantiles is not None:
            out.quantiles = self.quantiles.merge(other.quantiles)
        if self._hll is not None and other._hll is not None:
            out._hll = self._hll.merge(other._hll)
        if self._top is not None and other._top is not None:
            out._top = self._top.merge(other._top)
        return out

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; `distinct` and `std` are for readers only (rebuilt from the sketches)."""
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "distinct": self.distinct,
        }
        if self.nans:
            d["nans"] = self.nans
        if self.quantiles is not None:
            d.update(
                min=json_num(self.min),
                max=json_num(self.max),
                mean=json_num(self.mean),
                std=json_num(self.std),
                m2=json_num(self._m2),
                kll=self.quantiles.to_dict(),
            )
        if self._hll is not None:
            d["hll"] = self._hll.to_dict()
        if self._top is not None:
            d["top"] = [list(kv) for kv in self._top.top()]
            d["top_error"] = self._top.error
        if self.length_min is not None:
            d["length"] = {"min": self.length_min, "max": self.length_max, "sum": self._length_sum}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        """Rebuild a column profile written by `to_dict`."""
        kind = d["kind"]
        if kind not in ("numeric", "categorical", "boolean", "temporal", "other"):
            raise InvalidArgument(f"profile column {d.get('name')!r} has unknown kind {kind!r}")
        out = cls(str(d["name"]), str(d["type"]), kind)
        out.count, out.nulls, out.nans = int(d["count"]), int(d["nulls"]), int(d.get("nans", 0))
        if "kll" in d:
            out.min, out.max = num_json(d["min"]), num_json(d["max"])
            out._mean = float(num_json(d["mean"]) or 0.0)
            out._m2 = float(num_json(d["m2"]) or 0.0)
            out.quantiles = KLLSketch.from_dict(d["kll"])
        if "hll" in d:
            out._hll = HyperLogLog.from_dict(d["hll"])
        if out._top is not None:
            out._top.counts = {str(k): int(c) for k, c in d.get("top", [])}
            out._top.error = int(d.get("top_error", 0))
        if "length" in d:
            length = d["length"]
            out.length_min, out.length_max = int(length["min"]), int(length["max"])
            out._length_sum = int(length["sum"])
        return out


#: how many distinct categorical values a column remembers as hashed, and how long each may
#: be: at most ~0.5 MiB a column
_HASHED_MAX = 1 << 12
_HASHED_LENGTH = 64



def _dictionary_counts(chunk: pa.DictionaryArray) -> tuple[pa.Array, np.ndarray[Any, Any], int]:
    """The dictionary's present values, their counts, and the rows that are a null inside it."""
    dictionary: pa.Array = chunk.dictionary
    indices = numpy_of(pc.drop_null(chunk.indices))
    counts = np.bincount(indices.astype(np.intp), minlength=len(dictionary))
    nulls = 0
    if dictionary.null_count:  # a null inside the dictionary is a null row too
        in_dict_nulls = ~numpy_of(dictionary.is_valid())
        nulls = int(counts[in_dict_nulls].sum())
        counts[in_dict_nulls] = 0
    present = np.flatnonzero(counts)
    return dictionary.take(arrow_of(present)), counts[present], nulls


def _key(raw: bytes | str, text: bool) -> str:
    """Top-value keys are strings: text as is, binary as hex."""
    if isinstance(raw, bytes):
        return raw.decode() if text else raw.hex()
    return raw


def _opt(f: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)


# ---------------------------------------------------------------------------------------- tables


class TableProfile:
    """Profile of a table: row count and one `ColumnProfile` per column, in schema order.

    Example:
        >>> import pyarrow as pa
        >>> a = TableProfile.from_batches(pa.table({"x": [1, 2]}).to_batches())
        >>> b = TableProfile.from_batches(pa.table({"x": [3]}).to_batches())
        >>> merged = a.merge(b)
        >>> merged.rows, merged.columns["x"].max
        (3, 3)
    """

    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, ColumnProfile] = {}
        self._schema_seen = False

    @classmethod
    def of_columns(cls, rows: int, columns: dict[str, ColumnProfile]) -> TableProfile:
        """A table's profile assembled from column profiles of the same `rows` rows."""
        out = cls()
        out.rows = rows
        out.columns = dict(columns)
        out._schema_seen = True
        return out

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch]) -> TableProfile:
        """Profile a stream of record batches in one pass."""
        out = cls()
        for batch in batches:
            out.update(batch)
        return out

    @classmethod
    def from_table(cls, table: pa.Table) -> TableProfile:
        """Profile an in-memory Arrow table (its batches, in order)."""
        out = cls.from_batches(table.to_batches())
        if not out._schema_seen:  # a table with no batches still has columns
            out._init_schema(table.schema)
        return out

    def _init_schema(self, schema: pa.Schema) -> None:
        self.columns = {f.name: ColumnProfile(f.name, str(f.type), _kind_of(f.type)) for f in schema}
        self._schema_seen = True

    def update(self, batch: pa.RecordBatch) -> None:
        """Add one record batch; its schema must match the earlier batches'.

        Raises:
            InvalidArgument: a column is missing, extra, or has another type.
        """
        if not self._schema_seen:
            self._init_schema(batch.schema)
        else:
            self._check_schema({f.name: str(f.type) for f in batch.schema}, "the batch")
        self.rows += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            self.columns[name].update(column)

    def _check_schema(self, other: dict[str, str], what: str) -> None:
        mine = {name: col.type for name, col in self.columns.items()}
        for name in sorted(mine.keys() ^ other.keys()):
            where = "the profile" if name in mine else what
            raise InvalidArgument(
                f"schema mismatch: column {name!r} is only in {where}; "
                "profile tables with the same columns, or select the common columns first"
            )
        for name in mine:
            if mine[name] != other[name]:
                raise InvalidArgument(
                    f"schema mismatch: column {name!r} is {mine[name]} in the profile but {other[name]} "
                    f"in {what}; cast to one type first"
                )

    def merge(self, other: TableProfile) -> TableProfile:
        """The profile of both tables together; neither input changes.

        Raises:
            InvalidArgument: the column names or types differ (the message names the column).
        """
        if not other._schema_seen:
            return TableProfile.from_dict(self.to_dict())
        if not self._schema_seen:
            return TableProfile.from_dict(other.to_dict())
        self._check_schema({name: col.type for name, col in other.columns.items()}, "the other profile")
        out = TableProfile()
        out._schema_seen = True
        out.rows = self.rows + other.rows
        out.columns = {name: col.merge(other.columns[name]) for name, col in self.columns.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form tagged with the format id `threadline.profile/1`."""
        return {
            "format": FORMAT_ID,
            "rows": self.rows,
            "columns": [col.to_dict() for col in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableProfile:
        """Rebuild a profile written by `to_dict`.

        Raises:
            InvalidArgument: the format id is not one this version reads.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt != FORMAT_ID:
            raise InvalidArgument(
                f"unknown profile format {fmt!r}; this version of threadline reads {FORMAT_ID!r} "
                "(upgrade threadline, or recompute the profile)"
            )
        out = cls()
        out.rows = int(d["rows"])
        out.columns = {c["name"]: ColumnProfile.from_dict(c) for c in d["columns"]}
        out._schema_seen = bool(out.columns) or out.rows > 0
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal profiles give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TableProfile:
        """Rebuild a profile from `to_json` output."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return f"TableProfile(rows={self.rows}, columns={list(self.columns)})"

    def _repr_html_(self) -> str:
        head = ["column", "kind", "count", "nulls", "distinct", "min", "max", "mean", "top values"]
        rows = []
        for col in self.columns.values():
            top = ", ".join(f"{k} ({c})" for k, c in (col.top or [])[:3])
            cells = [
                col.name,
                col.kind,
                col.count,
                col.nulls,
                col.distinct,
                _show(col.min, col),
                _show(col.max, col),
                _fmt(col.mean),
                top,
            ]
            rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
        header = "".join(f"<th>{h}</th>" for h in head)
        caption = f"<caption>Profile: {self.rows} rows, {len(self.columns)} columns</caption>"
        return f"<table>{caption}<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_UNIT = re.compile(r"^(timestamp|duration|date64|date32)\[(s|ms|us|ns|day)")


def _show(value: Scalar | None, col: ColumnProfile) -> str:
    """Temporal extremes are stored as integers in the type's unit; show them as dates."""
    if value is None or col.kind != "temporal" or not isinstance(value, int):
        return _fmt(value)
    m = _UNIT.match(col.type)
    if m is None:
        return str(value)
    unit: Any = "D" if m.group(2) == "day" else m.group(2)
    if m.group(1) == "duration":
        return str(np.timedelta64(value, unit))
    return str(np.datetime64(value, unit))


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


__all__ = [
    "FORMAT_ID",
    "SUMMARY_QUANTILES",
    "ColumnProfile",
    "HyperLogLog",
    "KLLSketch",
    "TableProfile",
    "TopK",
]
