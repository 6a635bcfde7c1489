"""Declarative cleansing of streamed Arrow record batches that re-runs identically on new data.

A `CleanseSpec` (format id `threadline.cleanse/1`, YAML or Python) is an ordered list of steps:

- ``coerce: {col: type}`` safe casts; with ``on_error: fail`` (default) a value that does not
  convert raises, naming column, count and examples; with ``on_error: "null"`` it becomes null.
- ``strip`` / ``lower`` / ``normalize_whitespace: [cols]`` on string columns
  (``normalize_whitespace`` collapses each run of whitespace to one space and trims the ends).
- ``missing: {col: {strategy: drop|constant|mean|median|mode, value: ...}}``.
- ``outliers: {col: {method: clip|drop, min: x, max: y}}`` or ``{method: ..., quantiles: [lo, hi]}``.
- ``rename: {old: new}``, ``drop: [cols]``, ``derive: {new: "expression"}`` (see `expressions`).

Statistics (mean, median, mode, quantiles) are computed on the data as it reaches their step, by
`CleanseSpec.fit`, and recorded in a `FittedCleanse`: running that on new data reuses the recorded
values, so the same transformation applies to training and serving data. Fitting reads the source
once per step that needs statistics (each pass applies the steps before it); a spec without such
steps streams in one pass.

Memory: mean holds two numbers per column; median and quantiles hold every non-null value of their
column (8 bytes a value for numbers) because they are exact; mode holds one count per distinct value.

Rounding: a mean or median filled into an integer column is rounded half to even; quantile bounds
clipping an integer column are rounded inward (ceil of the lower, floor of the upper bound).

Example:
    spec = CleanseSpec.from_yaml(text)
    spec.validate(table.schema)            # before any data is read
    fitted = spec.fit(lambda: table.to_batches())
    report = CleanseReport.empty(fitted.spec)
    for batch in cleanse_table(lambda: new_table.to_batches(), fitted, report=report):
        writer.write_batch(batch)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from threadline.errors import InvalidArgument
from threadline.prep.arrays import arrow_scalar
from threadline.prep.expressions import compile_expression
from threadline.prep.formats import check_document

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

FORMAT = "threadline.cleanse/1"
EXAMPLES = 5
KINDS = (
    "coerce",
    "strip",
    "lower",
    "normalize_whitespace",
    "missing",
    "outliers",
    "rename",
    "drop",
    "derive",
)
_LIST_KINDS = ("strip", "lower", "normalize_whitespace", "drop")
_STRATEGIES = ("drop", "constant", "mean", "median", "mode")
_METHODS = ("clip", "drop")
_POLICIES = ("fail", "null")
TYPES: dict[str, pa.DataType] = {
    **{name: getattr(pa, name)() for name in ("int8", "int16", "int32", "int64", "uint8", "uint16")},
    **{name: getattr(pa, name)() for name in ("uint32", "uint64", "float32", "float64", "string")},
    "bool": pa.bool_(),
    "date32": pa.date32(),
    **{f"timestamp[{unit}]": pa.timestamp(unit) for unit in ("s", "ms", "us", "ns")},
}

Stats = dict[str, dict[str, Any]]  # column -> {"value": fill} or {"min": lo, "max": hi}


@dataclass(frozen=True)
class Step:
    """One cleansing step.

    Attributes:
        kind: one of `KINDS`.
        params: a tuple of column names for list kinds, else a column -> option mapping.
        on_error: ``fail`` or ``null``; only for ``coerce``.
    """

    kind: str
    params: Any
    on_error: str = "fail"

    def reads(self) -> frozenset[str] | None:
        """The input columns the step reads, or None when it renames (names change under it)."""
        if self.kind == "rename":
            return None
        if self.kind == "derive":
            return frozenset().union(*(compile_expression(text).columns for text in self.params.values()))
        return frozenset(self.params if self.kind in _LIST_KINDS else list(self.params))

    def writes(self) -> frozenset[str] | None:
        """The columns the step changes, drops or defines, or None when it renames."""
        if self.kind == "rename":
            return None
        return frozenset(self.params if self.kind in _LIST_KINDS else list(self.params))

    @property
    def drops_rows(self) -> bool:
        """Whether the step can remove rows (then every statistic after it depends on it)."""
        options = self.params.values() if isinstance(self.params, dict) else ()
        if self.kind == "missing":
            return any(o["strategy"] == "drop" for o in options)
        return self.kind == "outliers" and any(o.get("method") == "drop" for o in options)

    @property
    def needs_fit(self) -> bool:
        """Whether the step uses statistics computed on the data."""
        if self.kind == "missing":
            return any(o["strategy"] in ("mean", "median", "mode") for o in self.params.values())
        if self.kind == "outliers":
            return any("quantiles" in o for o in self.params.values())
        return False

    def to_dict(self) -> dict[str, Any]:
        """The step as a YAML/JSON-ready mapping."""
        params = list(self.params) if self.kind in _LIST_KINDS else _plain(self.params)
        out: dict[str, Any] = {self.kind: params}
        if self.kind == "coerce" and self.on_error != "fail":
            out["on_error"] = self.on_error
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _make_step(index: int, raw: Any) -> Step:
    if isinstance(raw, Step):
        raw = raw.to_dict()
    if not isinstance(raw, dict):
        raise InvalidArgument(f"cleanse step {index} must be a mapping like {{strip: [name]}}, got {raw!r}")
    kinds = [key for key in raw if key != "on_error"]
    if len(kinds) != 1 or kinds[0] not in KINDS:
        raise InvalidArgument(
            f"cleanse step {index}: unknown step kind {', '.join(map(str, kinds)) or '(none)'}; "
            f"use one of {', '.join(KINDS)}"
        )
    kind = kinds[0]
    where = f"cleanse step {index} ({kind})"
    on_error = raw.get("on_error", "fail")
    if on_error is None:  # YAML reads a bare `null` as None; it can only mean the "null" policy here
        on_error = "null"
    if "on_error" in raw and kind != "coerce":
        raise InvalidArgument(f"{where}: on_error applies only to coerce steps")
    if on_error not in _POLICIES:
        raise InvalidArgument(f"{where}: on_error {on_error!r} is not one of fail, null")
    body = raw[kind]
    if kind in _LIST_KINDS:
        if isinstance(body, str) or not isinstance(body, list | tuple) or not body:
            raise InvalidArgument(f"{where} needs a non-empty list of column names, got {body!r}")
        _check_names(where, list(body))
        return Step(kind, tuple(body))
    if not isinstance(body, dict) or not body:
        raise InvalidArgument(f"{where} needs a non-empty mapping of columns, got {body!r}")
    _check_names(where, list(body))
    checkers: dict[str, Callable[[str, str, Any], Any]] = {
        "coerce": _check_coerce,
        "missing": _check_missing,
        "outliers": _check_outliers,
        "rename": _check_name_value,
        "derive": _check_derive,
    }
    params = {column: checkers[kind](where, column, value) for column, value in body.items()}
    if kind == "rename" and len(set(params.values())) != len(params):
        raise InvalidArgument(f"{where}: two columns are renamed to the same name")
    return Step(kind, params, on_error)


def _check_names(where: str, names: list[Any]) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{where}: column names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: a column is named twice")


def _check_coerce(where: str, column: str, value: Any) -> str:
    if value not in TYPES:
        raise InvalidArgument(f"{where}: column {column!r}: type {value!r} is not one of {', '.join(TYPES)}")
    return str(value)


def _check_name_value(where: str, column: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where}: column {column!r}: new name must be a non-empty string")
    return value


def _check_derive(where: str, column: str, value: Any) -> str:
    try:
        compile_expression(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: column {column!r}: {exc}") from exc
    return str(value)


def _check_missing(where: str, column: str, value: Any) -> dict[str, Any]:
    what = f"{where}: column {column!r}"
    if not isinstance(value, dict) or value.get("strategy") not in _STRATEGIES:
        raise InvalidArgument(f"{what}: needs {{strategy: {'|'.join(_STRATEGIES)}}}, got {value!r}")
    extra = set(value) - {"strategy", "value"}
    if extra or (("value" in value) != (value["strategy"] == "constant")):
        raise InvalidArgument(f"{what}: 'value' is required for strategy constant and only there")
    fill = value.get("value")
    if value["strategy"] == "constant" and not isinstance(fill, int | float | str | bool):
        raise InvalidArgument(f"{what}: constant value {fill!r} must be a number, string or boolean")
    return dict(value)


def _check_outliers(where: str, column: str, value: Any) -> dict[str, Any]:
    what = f"{where}: column {column!r}"
    if not isinstance(value, dict) or value.get("method") not in _METHODS:
        raise InvalidArgument(f"{what}: needs {{method: clip|drop, ...}}, got {value!r}")
    extra = set(value) - {"method", "min", "max", "quantiles"}
    if extra:
        raise InvalidArgument(f"{what}: unknown option {sorted(extra)[0]!r}")
    if "quantiles" in value:
        q = value["quantiles"]
        if ("min" in value or "max" in value) or not isinstance(q, list | tuple) or len(q) != 2:
            raise InvalidArgument(f"{what}: give either min/max or quantiles: [lo, hi], not both")
        if not all(_number(x) for x in q) or not 0 <= q[0] < q[1] <= 1:
            raise InvalidArgument(f"{what}: quantiles {q!r} must satisfy 0 <= lo < hi <= 1")
        return {"method": value["method"], "quantiles": [float(q[0]), float(q[1])]}
    low, high = value.get("min"), value.get("max")
    if low is None and high is None:
        raise InvalidArgument(f"{what}: give min, max or quantiles")
    if any(b is not None and not _number(b) for b in (low, high)):
        raise InvalidArgument(f"{what}: min and max must be finite numbers")
    if low is not None and high is not None and low > high:
        raise InvalidArgument(f"{what}: min {low!r} is above max {high!r}")
    return dict(value)


@dataclass(frozen=True)
class CleanseSpec:
    """An ordered list of cleansing steps.

    Attributes:
        steps: `Step` objects or mappings in the YAML shape (``{"strip": ["name"]}``).

    Raises:
        InvalidArgument: on construction, naming the step index, kind and column that are wrong.
    """

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        raw = self.steps
        if isinstance(raw, dict | str) or not isinstance(raw, list | tuple):
            raise InvalidArgument(f"cleanse steps must be a list, got {type(raw).__name__}")
        object.__setattr__(self, "steps", tuple(_make_step(i, step) for i, step in enumerate(raw)))

    @property
    def needs_fit(self) -> bool:
        """Whether any step uses statistics computed on the data."""
        return any(step.needs_fit for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON/YAML-ready mapping with its format id."""
        return {"format": FORMAT, "steps": [step.to_dict() for step in self.steps]}

    def to_yaml(self) -> str:
        """The spec as YAML text that `from_yaml` reads back to an equal spec."""
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanseSpec:
        """Read a spec written by `to_dict`.

        Raises:
            InvalidArgument: on a missing or unknown format id or a bad step.
        """
        data = check_document(data, format_id=FORMAT, what="cleanse spec", keys={"steps"})
        return cls(data.get("steps", []))

    @classmethod
    def from_yaml(cls, text: str) -> CleanseSpec:
        """Read a spec from YAML text (``yaml.safe_load``: no tags, no objects).

        Raises:
            InvalidArgument: on YAML that does not parse or does not describe a valid spec.
        """
        return cls.from_dict(_load_yaml(text))

    def validate(self, schema: pa.Schema) -> pa.Schema:
        """Check every step against `schema` without reading data; return the output schema.

        Raises:
            InvalidArgument: naming the step index and the column, e.g. an unknown column, a
                string step on a number column or a derived expression with a type error.
        """
        fields = {f.name: f.type for f in schema}
        for index, step in enumerate(self.steps):
            fields = _validate_step(index, step, fields)
        return pa.schema(list(fields.items()))

    def fit(
        self,
        source: Callable[[], Iterable[pa.RecordBatch]],
        *,
        read_columns: Callable[[list[str]], Iterable[pa.RecordBatch]] | None = None,
    ) -> FittedCleanse:
        """Compute the statistics the steps need, one pass over the data per such step.

        Each pass runs only the earlier steps that can change the statistic (see `_fit_plan`)
        and, with `read_columns` (streams only the named columns that exist in the input),
        reads only the columns those steps and the fitted one use: fitting one column of a
        wide table reads that column.
        """
        stats: dict[int, Stats] = {}
        for index, step in enumerate(self.steps):
            if step.needs_fit:
                before, columns = _fit_plan(self.steps, index)
                if read_columns is None or columns is None:
                    stats[index] = _fit_step(step, before, stats, source)
                else:
                    stats[index] = _fit_step(step, before, stats, partial(read_columns, columns))
        return FittedCleanse(self, stats)


def untouched_columns(spec: CleanseSpec, names: Sequence[str]) -> set[str]:
    """The input columns that come out of `spec` unchanged, row for row.

    Empty when a step can drop rows (then every column's values change as a whole). The
    profile of such a column is the input's, so a cleanse need not profile it again.
    """
    if any(step.drops_rows for step in spec.steps):
        return set()
    untouched = set(names)
    for step in spec.steps:
        if step.kind == "rename":
            untouched -= set(step.params) | set(step.params.values())
        else:
            untouched -= set(step.params)  # the columns a step changes, drops or (re)defines
    return untouched


def _fit_plan(steps: tuple[Step, ...], index: int) -> tuple[list[tuple[int, Step]], list[str] | None]:
    """What fitting step `index` must run first, and the input columns it reads (None: all).

    Walking back from the fitted step: a step that writes a column still needed, or drops
    rows, must run (and its inputs become needed); any other step cannot change the
    statistic and is skipped. A rename makes names ambiguous: then everything runs.
    """
    needed = set(steps[index].params)
    run: list[tuple[int, Step]] = []
    for i in range(index - 1, -1, -1):
        step = steps[i]
        writes = step.writes()
        reads = step.reads()
        if writes is None or reads is None:
            return list(enumerate(steps[:index])), None
        if step.drops_rows or writes & needed:
            run.append((i, step))
            if step.kind == "derive":
                needed -= writes  # made by the step, not read from the input
            needed |= reads
    return run[::-1], sorted(needed)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"cleanse spec is not valid YAML: {exc}") from exc


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _validate_step(index: int, step: Step, fields: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    where = f"cleanse step {index} ({step.kind})"
    names = step.params if step.kind in _LIST_KINDS else list(step.params)
    if step.kind != "derive":
        for name in names:
            if name not in fields:
                raise InvalidArgument(f"{where}: unknown column {name!r}; columns are {', '.join(fields)}")
    out = dict(fields)
    if step.kind == "coerce":
        for name, type_name in step.params.items():
            try:
                pc.cast(pa.nulls(0, fields[name]), TYPES[type_name])
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
                raise InvalidArgument(
                    f"{where}: column {name!r}: cannot cast {fields[name]} to {type_name}"
                ) from exc
            out[name] = TYPES[type_name]
    elif step.kind in ("strip", "lower", "normalize_whitespace"):
        for name in names:
            if not (pa.types.is_string(fields[name]) or pa.types.is_large_string(fields[name])):
                raise InvalidArgument(f"{where}: column {name!r} is {fields[name]}, not a string")
    elif step.kind == "missing":
        for name, option in step.params.items():
            if option["strategy"] in ("mean", "median") and not _numeric(fields[name]):
                raise InvalidArgument(
                    f"{where}: column {name!r} is {fields[name]}; {option['strategy']} needs numbers"
                )
            if option["strategy"] == "constant":
                try:
                    arrow_scalar(option["value"]).cast(fields[name])
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise InvalidArgument(
                        f"{where}: column {name!r}: value {option['value']!r} does not fit {fields[name]}"
                    ) from exc
    elif step.kind == "outliers":
        for name in names:
            if not _numeric(fields[name]):
                raise InvalidArgument(f"{where}: column {name!r} is {fields[name]}, not a number")
    elif step.kind == "rename":
        out = {step.params.get(name, name): kind for name, kind in fields.items()}
        if len(out) != len(fields):
            raise InvalidArgument(f"{where}: a new name is already a column; drop or rename that first")
    elif step.kind == "drop":
        out = {name: kind for name, kind in fields.items() if name not in step.params}
    elif step.kind == "derive":
        for name, text in step.params.items():
            try:  # later expressions of the step see the columns derived before them
                out[name] = compile_expression(text).output_type(pa.schema(list(out.items())))
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}: column {name!r}: {exc}") from exc
    return out


@dataclass(frozen=True)
class FittedCleanse:
    """A spec with the statistics computed by `CleanseSpec.fit`; applying it never refits.

    Attributes:
        spec: the spec.
        statistics: step index -> column -> ``{"value": fill}`` (missing) or
            ``{"min": lo, "max": hi}`` (outliers with quantiles).
    """

    spec: CleanseSpec
    statistics: dict[int, Stats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wanted = {i for i, step in enumerate(self.spec.steps) if step.needs_fit}
        if set(self.statistics) != wanted:
            raise InvalidArgument(
                f"fitted cleanse has statistics for steps {sorted(self.statistics)}, needs {sorted(wanted)}; "
                "run CleanseSpec.fit again"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec and its statistics as a JSON/YAML-ready mapping."""
        stats = [{"step": i, "columns": cols} for i, cols in sorted(self.statistics.items())]
        return {**self.spec.to_dict(), "statistics": stats}

    def to_yaml(self) -> str:
        """The fitted spec as YAML text that `from_yaml` reads back."""
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedCleanse:
        """Read a fitted spec written by `to_dict`.

        Raises:
            InvalidArgument: on a wrong format or statistics that do not match the steps.
        """
        if not isinstance(data, dict):
            raise InvalidArgument(f"not a fitted cleanse spec: {data!r}")
        rows = data.get("statistics", [])
        spec = CleanseSpec.from_dict({k: v for k, v in data.items() if k != "statistics"})
        try:
            stats = {int(row["step"]): {str(c): dict(v) for c, v in row["columns"].items()} for row in rows}
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"fitted cleanse statistics are malformed: {exc}") from exc
        return cls(spec, stats)

    @classmethod
    def from_yaml(cls, text: str) -> FittedCleanse:
        """Read a fitted spec from YAML text."""
        return cls.from_dict(_load_yaml(text))


def load_cleanse(text: str) -> CleanseSpec | FittedCleanse:
    """A spec from YAML: fitted (with recorded statistics, as saved with a cleansed commit in
    `_threadline/cleanse.yaml`) or plain (statistics computed on the data it is applied to)."""
    data = _load_yaml(text)
    if isinstance(data, dict) and "statistics" in data:
        return FittedCleanse.from_dict(data)
    return CleanseSpec.from_dict(data)


@dataclass
class StepReport:
    """What one step did: rows whose values it changed, rows it dropped, values it set to null."""

    index: int
    kind: str
    changed: int = 0
    dropped: int = 0
    nulled: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counts as a mapping."""
        return {
            "index": self.index,
            "kind": self.kind,
            "changed": self.changed,
            "dropped": self.dropped,
            "nulled": self.nulled,
        }


@dataclass
class CleanseReport:
    """Counts of a cleanse run, filled in while its batches stream."""

    rows_in: int = 0
    rows_out: int = 0
    steps: list[StepReport] = field(default_factory=list)
    statistics: dict[int, Stats] = field(default_factory=dict)

    @classmethod
    def empty(cls, spec: CleanseSpec) -> CleanseReport:
        """A report with zero counts for every step of `spec`."""
        return cls(steps=[StepReport(i, step.kind) for i, step in enumerate(spec.steps)])

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "steps": [step.to_dict() for step in self.steps],
            "statistics": [{"step": i, "columns": c} for i, c in sorted(self.statistics.items())],
        }


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, arrow_scalar(False))).as_py() or 0)


def _changed(old: pa.Array, new: pa.Array) -> int:
    differs = pc.or_(pc.not_equal(old, new), pc.not_equal(pc.is_null(old), pc.is_null(new)))
    return _count(differs)


def _coerce(where: str, name: str, array: pa.Array, target: pa.DataType, policy: str) -> tuple[pa.Array, int]:
    try:
        return pc.cast(array, target, safe=True), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    bad = []
    for value in pc.unique(array.drop_null()):
        try:
            pc.cast(pa.array([value.as_py()], type=array.type), target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad.append(value.as_py())
    mask = pc.is_in(array, value_set=pa.array(bad, type=array.type))
    count = _count(mask)
    if policy == "fail":
        raise InvalidArgument(
            f"{where}: {count} values of column {name!r} in this batch cannot become {target}, "
            f'e.g. {bad[:EXAMPLES]!r}; clean them first or set on_error: "null"'
        )
    cleaned = pc.if_else(mask, arrow_scalar(None, array.type), array)
    return pc.cast(cleaned, target, safe=True), count


def _fill_scalar(value: Any, kind: pa.DataType) -> pa.Scalar:
    if pa.types.is_integer(kind) and isinstance(value, float):
        value = round(value)  # half to even
    return arrow_scalar(value).cast(kind)


def _apply_step(
    index: int, step: Step, batch: pa.RecordBatch, stats: Stats, report: StepReport | None
) -> pa.RecordBatch:
    where = f"cleanse step {index} ({step.kind})"
    changed = dropped = nulled = 0
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    keep: pa.Array | None = None
    if step.kind == "coerce":
        for name, type_name in step.params.items():
            columns[name], count = _coerce(where, name, columns[name], TYPES[type_name], step.on_error)
            nulled += count
    elif step.kind in ("strip", "lower", "normalize_whitespace"):
        for name in step.params:
            old = columns[name]
            if step.kind == "strip":
                new = pc.utf8_trim_whitespace(old)
            elif step.kind == "lower":
                new = pc.utf8_lower(old)
            else:
                new = pc.utf8_trim_whitespace(pc.replace_substring_regex(old, r"\s+", " "))
            changed += _changed(old, new)
            columns[name] = new
    elif step.kind == "missing":
        for name, option in step.params.items():
            old = columns[name]
            if option["strategy"] == "drop":
                valid = pc.is_valid(old)
                keep = valid if keep is None else pc.and_(keep, valid)
                continue
            fill = option["value"] if option["strategy"] == "constant" else stats[name]["value"]
            if fill is not None:
                columns[name] = pc.fill_null(old, _fill_scalar(fill, old.type))
                changed += old.null_count
    elif step.kind == "outliers":
        for name, option in step.params.items():
            old = columns[name]
            low, high = (
                (stats[name]["min"], stats[name]["max"])
                if "quantiles" in option
                else (option.get("min"), option.get("max"))
            )
            if option["method"] == "drop":
                out = pc.or_kleene(
                    *(
                        pc.less(old, arrow_scalar(low)) if low is not None else arrow_scalar(False),
                        pc.greater(old, arrow_scalar(high)) if high is not None else arrow_scalar(False),
                    )
                )
                inside = pc.invert(pc.fill_null(out, arrow_scalar(False)))
                keep = inside if keep is None else pc.and_(keep, inside)
                continue
            new = old
            if pa.types.is_integer(old.type):
                low = None if low is None else math.ceil(low)
                high = None if high is None else math.floor(high)
            if low is not None:
                new = pc.max_element_wise(new, arrow_scalar(low, old.type), skip_nulls=False)
            if high is not None:
                new = pc.min_element_wise(new, arrow_scalar(high, old.type), skip_nulls=False)
            changed += _changed(old, new)
            columns[name] = new
    elif step.kind == "rename":
        columns = {step.params.get(name, name): array for name, array in columns.items()}
    elif step.kind == "drop":
        columns = {name: array for name, array in columns.items() if name not in step.params}
    elif step.kind == "derive":
        for name, text in step.params.items():
            try:
                columns[name] = compile_expression(text).evaluate(batch)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}: column {name!r}: {exc}") from exc
            batch = pa.RecordBatch.from_pydict(columns)
    result = pa.RecordBatch.from_pydict(columns)
    if keep is not None:
        before = result.num_rows
        result = result.filter(keep)
        dropped = before - result.num_rows
    if report is not None:
        report.changed += changed
        report.dropped += dropped
        report.nulled += nulled
    return result


def _run(
    batch: pa.RecordBatch,
    steps: tuple[Step, ...],
    stats: dict[int, Stats],
    report: CleanseReport | None,
) -> pa.RecordBatch:
    for index, step in enumerate(steps):
        batch = _apply_step(index, step, batch, stats.get(index, {}), report.steps[index] if report else None)
    return batch


def _fit_step(
    step: Step,
    before: list[tuple[int, Step]],
    stats: dict[int, Stats],
    source: Callable[[], Iterable[pa.RecordBatch]],
) -> Stats:
    """One pass over `source` through the steps `before` it, collecting what `step` needs."""
    wanted = {
        name: option.get("strategy", "quantiles")
        for name, option in step.params.items()
        if option.get("strategy") in ("mean", "median", "mode") or "quantiles" in option
    }
    sums: dict[str, list[float]] = {name: [] for name in wanted}
    counts: Counter[str] = Counter()
    chunks: dict[str, list[pa.Array]] = {name: [] for name in wanted}
    modes: dict[str, Counter[Any]] = {name: Counter() for name in wanted}
    for batch in source():
        for i, earlier in before:
            batch = _apply_step(i, earlier, batch, stats.get(i, {}), None)
        for name, how in wanted.items():
            array = batch.column(name)
            if how == "mean":
                sums[name].append(float(pc.sum(array).as_py() or 0.0))
                counts[name] += len(array) - array.null_count
            elif how == "mode":
                for row in pc.value_counts(array.drop_null()).to_pylist():
                    modes[name][row["values"]] += row["counts"]
            else:
                chunks[name].append(array.drop_null())
    out: Stats = {}
    for name, how in wanted.items():
        if how == "mean":
            out[name] = {"value": math.fsum(sums[name]) / counts[name] if counts[name] else None}
        elif how == "mode":
            # Ties go to the smallest value, so the result does not depend on the row order.
            best = max(modes[name].values(), default=0)
            out[name] = {"value": min(v for v, c in modes[name].items() if c == best) if best else None}
        else:
            values = (
                pa.chunked_array(chunks[name], type=pa.float64())
                if not chunks[name]
                else pa.chunked_array([pc.cast(c, pa.float64()) for c in chunks[name]])
            )
            if how == "median":
                qs = pc.quantile(values, q=0.5).to_pylist() if len(values) else [None]
                out[name] = {"value": qs[0]}
            else:
                q = step.params[name]["quantiles"]
                bounds = pc.quantile(values, q=q).to_pylist() if len(values) else [None, None]
                out[name] = {"min": bounds[0], "max": bounds[1]}
    return out


def cleanse_table(
    source: Callable[[], Iterable[pa.RecordBatch]],
    spec: CleanseSpec | FittedCleanse,
    *,
    report: CleanseReport | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream cleansed batches, every one with the schema `spec.validate` returns.

    A `CleanseSpec` that needs statistics is fitted on `source` first (extra passes); a
    `FittedCleanse` reuses its recorded statistics, so new data gets the same treatment.
    Batches that lose all their rows are not yielded.

    Raises:
        InvalidArgument: when the data does not match the spec (validated on the first batch's
            schema) or a coerce step with ``on_error: fail`` meets a value it cannot convert.
    """
    fitted = (
        spec
        if isinstance(spec, FittedCleanse)
        else (spec.fit(source) if spec.needs_fit else FittedCleanse(spec, {}))
    )
    if report is not None:
        if not report.steps:
            report.steps = CleanseReport.empty(fitted.spec).steps
        report.statistics = {
            i: {c: dict(v) for c, v in cols.items()} for i, cols in fitted.statistics.items()
        }
    schemas: dict[pa.Schema, pa.Schema] = {}
    for batch in source():
        if batch.schema not in schemas:
            schemas[batch.schema] = fitted.spec.validate(batch.schema)
        target = schemas[batch.schema]
        out = _run(batch, fitted.spec.steps, fitted.statistics, report)
        if report is not None:
            report.rows_in += batch.num_rows
            report.rows_out += out.num_rows
        if out.num_rows:
            arrays = [out.column(f.name).cast(f.type) for f in target]
            yield pa.RecordBatch.from_arrays(arrays, schema=target)
