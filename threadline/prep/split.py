"""Split a table into named parts (train / validation / test), streaming Arrow record batches.

A `SplitSpec` is a small JSON-serialisable definition (format id `threadline.split/1`): storing it
next to the parts lets anyone re-create the exact same split later. Every method is deterministic
for a seed and holds only O(parts + classes) state, never the table:

- ``random``: a row's part is decided by a seeded hash of its global row index.
- ``hash``: by a seeded hash of its key columns, so a row keeps its part when the data grows or is
  reordered, and no example leaks between parts across data versions.
- ``stratify``: exact per-class counts (largest-remainder rounding); needs a counting pass first,
  so it goes through `split_table`, which takes a callable returning fresh batches.
- ``time``: by cutoffs on a time column; the fractions only name and order the parts.

Example:
    spec = SplitSpec({"train": 0.8, "test": 0.2}, method="hash", by=("user_id",), seed=7)
    spec.validate(table.schema)
    report = SplitReport.empty(spec)
    for part, batch in split_table(lambda: table.to_batches(), spec, report=report):
        writers[part].write_batch(batch)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument
from threadline.prep.arrays import arrow_mask, numpy_filled, numpy_of
from threadline.prep.formats import check_columns, check_document
from threadline.prep.hashing import (
    MASK64,
    U64,
    hashable_type,
    key_hashes,
    mix,
    seed_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

FORMAT = "threadline.split/1"
Method = Literal["random", "hash", "stratify", "time"]
METHODS: tuple[str, ...] = get_args(Method)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass(frozen=True)
class SplitSpec:
    """How to split a table: part names with fractions, a method and its columns, a seed.

    Attributes:
        fractions: part name -> fraction, in part order; each > 0, summing to 1 within 1e-9.
            For ``time`` they only name and order the parts (still validated the same way).
        method: ``random``, ``hash``, ``stratify`` or ``time``.
        by: key columns for ``hash``.
        stratify: the label column for ``stratify``.
        time_column: the time column for ``time`` (temporal, or ISO-8601 strings).
        cutoffs: for ``time``, ``len(fractions) - 1`` increasing ISO dates or timestamps; a naive
            one is read as UTC, as are naive column values.
        seed: an integer in [0, 2**64).

    Raises:
        InvalidArgument: on construction, naming the value that is wrong.
    """

    fractions: dict[str, float]
    method: Method = "random"
    by: tuple[str, ...] = ()
    stratify: str | None = None
    time_column: str | None = None
    cutoffs: tuple[str, ...] = ()
    seed: int = 0
    _cutoff_us: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fractions = dict(self.fractions)  # a private copy: the spec is frozen, the caller's dict not
        object.__setattr__(self, "fractions", fractions)
        object.__setattr__(self, "by", tuple(self.by))
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))
        if not fractions:
            raise InvalidArgument("split fractions are empty; give e.g. {'train': 0.8, 'test': 0.2}")
        for name, value in fractions.items():
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"split part names must be non-empty strings, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"split fraction {name}={value!r} must be a number > 0")
            if not math.isfinite(value):
                raise InvalidArgument(f"split fraction {name}={value!r} must be finite")
        total = math.fsum(fractions.values())
        if abs(total - 1.0) > 1e-9:
            raise InvalidArgument(f"split fractions {fractions} sum to {total!r}, not 1")
        if self.method not in METHODS:
            raise InvalidArgument(f"split method {self.method!r} is not one of {', '.join(METHODS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MASK64:
            raise InvalidArgument(f"split seed {self.seed!r} must be an integer in [0, 2**64)")
        self._check_method_fields()

    def _check_method_fields(self) -> None:
        needs = {"hash": "by", "stratify": "stratify", "time": "time_column"}
        given = {
            "by": bool(self.by),
            "stratify": self.stratify is not None,
            "time_column": self.time_column is not None,
            "cutoffs": bool(self.cutoffs),
        }
        own = {needs.get(self.method)} | ({"cutoffs"} if self.method == "time" else set())
        for name, present in given.items():
            if present and name not in own:
                raise InvalidArgument(f"split option {name!r} does not apply to method {self.method!r}")
        if self.method in needs and not given[needs[self.method]]:
            raise InvalidArgument(f"split method {self.method!r} needs {needs[self.method]!r}")
        if len(set(self.by)) != len(self.by):
            raise InvalidArgument(f"split key columns {list(self.by)} repeat a column")
        if self.method == "time":
            if len(self.cutoffs) != len(self.fractions) - 1:
                raise InvalidArgument(
                    f"split method 'time' needs {len(self.fractions) - 1} cutoffs for parts "
                    f"{list(self.fractions)}, got {list(self.cutoffs)}"
                )
            parsed = tuple(_parse_cutoff(c) for c in self.cutoffs)
            if any(b <= a for a, b in itertools.pairwise(parsed)):
                raise InvalidArgument(f"split cutoffs {list(self.cutoffs)} must be strictly increasing")
            object.__setattr__(self, "_cutoff_us", parsed)

    @property
    def parts(self) -> list[str]:
        """The part names, in order."""
        return list(self.fractions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that `from_dict` turns back into an equal spec."""
        return {
            "format": FORMAT,
            "fractions": dict(self.fractions),
            "method": self.method,
            "by": list(self.by),
            "stratify": self.stratify,
            "time_column": self.time_column,
            "cutoffs": list(self.cutoffs),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        """Read a dict written by `to_dict`.

        Raises:
            InvalidArgument: on an unknown format id, unknown keys or bad values.
        """
        keys = {"fractions", "method", "by", "stratify", "time_column", "cutoffs", "seed"}
        data = check_document(data, format_id=FORMAT, what="split definition", keys=keys)
        if not isinstance(data.get("fractions"), dict):
            raise InvalidArgument("split definition needs 'fractions' as an object of part -> fraction")
        for key in ("by", "cutoffs"):
            if not isinstance(data.get(key, []), list | tuple):
                raise InvalidArgument(f"split definition {key!r} must be a list")
        return cls(
            fractions=dict(data["fractions"]),
            method=data.get("method", "random"),
            by=tuple(data.get("by", ())),
            stratify=data.get("stratify"),
            time_column=data.get("time_column"),
            cutoffs=tuple(data.get("cutoffs", ())),
            seed=data.get("seed", 0),
        )

    def validate(self, schema: pa.Schema) -> None:
        """Check that the columns this spec reads exist in `schema` with usable types.

        Raises:
            InvalidArgument: naming the missing column or the column with the wrong type.
        """
        checks: list[tuple[str, Callable[[pa.DataType], bool], str]] = [
            *((c, hashable_type, "a number, bool, temporal, string or binary") for c in self.by),
        ]
        if self.stratify is not None:
            checks.append((self.stratify, _label_type, "an integer, bool, string or dictionary"))
        if self.time_column is not None:
            checks.append((self.time_column, _time_type, "a timestamp, date or ISO-8601 string"))
        check_columns(schema, checks, what="split column")


@dataclass
class SplitReport:
    """Rows written to each part, with the spec that made them.

    Attributes:
        spec: the split definition.
        rows: part name -> row count, in part order.
    """

    spec: SplitSpec
    rows: dict[str, int]

    @classmethod
    def empty(cls, spec: SplitSpec) -> SplitReport:
        """A report with zero rows in every part, to pass as ``report=`` to the split functions."""
        return cls(spec, dict.fromkeys(spec.fractions, 0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: the spec, rows per part and the total."""
        return {"spec": self.spec.to_dict(), "rows": dict(self.rows), "total": sum(self.rows.values())}


def split_batches(
    batches: Iterable[pa.RecordBatch],
    spec: SplitSpec,
    *,
    row_offset: int = 0,
    report: SplitReport | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Split a stream of batches in one pass; yield ``(part, rows of the batch in that part)``.

    Empty parts of a batch are not yielded. Works for every method but ``stratify``, which needs
    class counts first (use `split_table`).

    Args:
        batches: the table, batch by batch; only one batch is held at a time.
        spec: the split definition.
        row_offset: the global index of the first row (``random`` hashes global row indices, so a
            shard that starts at row N gives the same assignment as the whole table).
        report: when given, the rows yielded are counted into it.

    Raises:
        InvalidArgument: for ``stratify``, a bad column, or a null or unparseable time.
    """
    if spec.method == "stratify":
        raise InvalidArgument("split method 'stratify' needs two passes; use split_table(source, spec)")
    index = row_offset
    for batch in batches:
        if batch.num_rows == 0:
            continue
        spec.validate(batch.schema)
        if spec.method == "random":
            codes = _cut(mix(_row_hashes(index, batch.num_rows) ^ seed_key(spec.seed)), spec)
        elif spec.method == "hash":
            codes = _cut(key_hashes(batch, spec.by, spec.seed), spec)
        else:
            codes = _time_codes(batch, spec)
        index += batch.num_rows
        yield from _emit(batch, codes, spec, report)


def split_table(
    source: Callable[[], Iterable[pa.RecordBatch]],
    spec: SplitSpec,
    *,
    row_offset: int = 0,
    report: SplitReport | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Split a re-readable table with any method; ``stratify`` reads it twice, the others once.

    For ``stratify``, the first pass counts rows per class (null labels are one class). Each
    class's counts per part are then fixed by largest-remainder rounding, and in the second pass
    the row at position p within its class (stream order) goes to the part that holds rank
    ``perm(p)``, where perm is a seeded pseudo-random permutation of ``range(class count)``. This
    gives exact counts with O(classes) memory instead of sorting every row's hash.

    Args:
        source: returns a fresh iterable of the same batches, in the same order, each call.
        spec: the split definition.
        row_offset: as for `split_batches`.
        report: when given, the rows yielded are counted into it.

    Raises:
        InvalidArgument: as `split_batches`, or when the second pass disagrees with the first.
    """
    if spec.method != "stratify":
        yield from split_batches(source(), spec, row_offset=row_offset, report=report)
        return
    label = cast("str", spec.stratify)
    counts: dict[Any, int] = {}
    for batch in source():
        spec.validate(batch.schema)
        values, codes = _labels(batch.column(label))
        for value, n in zip(values, np.bincount(codes, minlength=len(values)).tolist()):
            counts[value] = counts.get(value, 0) + n
    if not counts:
        return
    classes = {value: i for i, value in enumerate(counts)}
    sizes = np.array(list(counts.values()), dtype=np.int64)
    # bounds[c, j]: ranks below it in class c go to parts < j (cumulative exact counts).
    bounds = np.cumsum(np.array([stratified_counts(int(n), spec) for n in sizes], dtype=np.int64), axis=1)
    seen = np.zeros(len(sizes), dtype=np.int64)
    for batch in source():
        values, local = _labels(batch.column(label))
        try:
            mapping = np.array([classes[v] for v in values], dtype=np.int64)
        except KeyError as exc:
            raise InvalidArgument(
                f"split source yielded a new class {exc.args[0]!r} on its second pass"
            ) from exc
        cls = mapping[local]
        position = seen[cls] + _rank_within(cls)
        seen += np.bincount(cls, minlength=len(sizes))
        if np.any(seen > sizes):
            raise InvalidArgument("split source yielded more rows on its second pass than on its first")
        rank = _permute(position, sizes[cls], spec.seed)
        codes = (rank[:, None] >= bounds[cls]).sum(axis=1)
        yield from _emit(batch, codes, spec, report)
    if np.any(seen != sizes):
        raise InvalidArgument("split source yielded fewer rows on its second pass than on its first")


def stratified_counts(n: int, spec: SplitSpec) -> list[int]:
    """Rows of a class of `n` rows that go to each part: largest-remainder rounding of n * fraction.

    Remainder ties go to the earlier part. The counts always sum to `n`.
    """
    exact = [n * f for f in spec.fractions.values()]
    # The epsilon keeps 700 * 0.8 = 559.9999... from flooring to 559.
    counts = [math.floor(x + 1e-9) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


# --- assignment helpers -------------------------------------------------------------------------


def _emit(
    batch: pa.RecordBatch, codes: npt.NDArray[Any], spec: SplitSpec, report: SplitReport | None
) -> Iterator[tuple[str, pa.RecordBatch]]:
    for i, part in enumerate(spec.fractions):
        mask = codes == i
        n = int(mask.sum())
        if n == 0:
            continue
        if report is not None:
            report.rows[part] = report.rows.get(part, 0) + n
        yield part, batch if n == batch.num_rows else batch.filter(arrow_mask(mask))


def _cut(hashes: U64, spec: SplitSpec) -> npt.NDArray[np.intp]:
    """Part index per row: the hash's top 53 bits as a float in [0, 1), cut at cumulative fractions."""
    unit = (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53
    bounds = np.cumsum(list(spec.fractions.values()))[:-1]
    return np.searchsorted(bounds, unit, side="right")


def _rank_within(cls: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each row, how many earlier rows of the batch share its class (a vectorised cumcount)."""
    order = np.argsort(cls, kind="stable")
    sorted_cls = cls[order]
    starts = np.flatnonzero(np.r_[True, sorted_cls[1:] != sorted_cls[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(cls)]))
    rank = np.empty(len(cls), dtype=np.int64)
    rank[order] = np.arange(len(cls), dtype=np.int64) - group_start
    return rank


def _permute(x: npt.NDArray[np.int64], n: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.int64]:
    """A seeded bijection of ``range(n)`` per row (n may differ by row): a Feistel network on the
    smallest even bit width covering n, cycle-walked back into range (< 4 rounds expected)."""
    half = np.maximum((np.ceil(np.log2(np.maximum(n, 2))).astype(np.int64) + 1) // 2, 1)
    half += (np.left_shift(1, 2 * half) < n).astype(np.int64)  # log2 in float64 can round down
    half = half.astype(np.uint64)
    low = (np.uint64(1) << half) - np.uint64(1)
    round_keys = mix(np.arange(1, 5, dtype=np.uint64) ^ seed_key(seed))
    out = x.astype(np.uint64)
    todo = np.ones(len(x), dtype=bool)
    while todo.any():
        v, h, m = out[todo], half[todo], low[todo]
        left, right = v >> h, v & m
        for round_key in round_keys:
            f = mix(right ^ round_key) & m
            left, right = right, left ^ f
        out[todo] = (left << h) | right
        todo[todo] = out[todo] >= n[todo].astype(np.uint64)
    return out.astype(np.int64)


# --- hashing ------------------------------------------------------------------------------------


def _row_hashes(start: int, n: int) -> U64:
    return np.arange(start, start + n, dtype=np.uint64)


def _labels(arr: pa.Array) -> tuple[list[Any], npt.NDArray[np.intp]]:
    """The distinct labels of a batch (None for null) and each row's index into them."""
    encoded = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    values: list[Any] = encoded.dictionary.to_pylist()
    codes = numpy_filled(encoded.indices, len(values)).astype(np.intp)
    if encoded.indices.null_count:
        values.append(None)
    return values, codes


# --- time ---------------------------------------------------------------------------------------


def _time_codes(batch: pa.RecordBatch, spec: SplitSpec) -> npt.NDArray[np.intp]:
    name = cast("str", spec.time_column)
    us = _to_epoch_us(batch.column(name), name)
    return np.searchsorted(np.array(spec._cutoff_us, dtype=np.int64), us, side="right")


def _to_epoch_us(arr: pa.Array, name: str) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch (naive values read as UTC); nanoseconds are floored, which keeps
    every comparison with a whole-microsecond cutoff exact."""
    if arr.null_count:
        raise InvalidArgument(
            f"split time column {name!r} has {arr.null_count} null values; fill or drop them first"
        )
    dtype = arr.type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        arr = _parse_times(arr, name)
        dtype = arr.type
    raw: npt.NDArray[np.int64]
    if pa.types.is_timestamp(dtype):
        raw = numpy_of(arr.view(pa.int64())).astype(np.int64)
        return raw // 1000 if dtype.unit == "ns" else raw * _US_PER[dtype.unit]
    if pa.types.is_date32(dtype):
        raw = numpy_of(arr.view(pa.int32())).astype(np.int64)
        return raw * 86_400_000_000
    if pa.types.is_date64(dtype):
        raw = numpy_of(arr.view(pa.int64())).astype(np.int64)
        return raw * 1000
    raise InvalidArgument(f"split time column {name!r} has type {dtype}; it must be a timestamp or date")


def _parse_times(arr: pa.Array, name: str) -> pa.Array:
    """ISO-8601 strings as timestamps: naive ones as they are, ones with a zone offset in UTC."""
    try:
        return pc.cast(arr, pa.timestamp("ns"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(arr, pa.timestamp("ns", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(
            f"split time column {name!r} holds strings that are not ISO-8601 timestamps "
            f"(all naive or all with a zone offset): {exc}"
        ) from exc


def _parse_cutoff(text: str) -> int:
    """An ISO date or timestamp as microseconds since the epoch; naive values are read as UTC."""
    if not isinstance(text, str):
        raise InvalidArgument(f"split cutoff {text!r} must be an ISO date or timestamp string")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"split cutoff {text!r} is not an ISO date or timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _label_type(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or (pa.types.is_dictionary(dtype) and _label_type(dtype.value_type))
    )


def _time_type(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_timestamp(dtype)
        or pa.types.is_date(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
    )


__all__ = ["FORMAT", "SplitReport", "SplitSpec", "split_batches", "split_table", "stratified_counts"]
