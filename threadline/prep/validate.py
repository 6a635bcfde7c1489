"""Check streamed Arrow record batches against a table schema with rules, one policy per rule.

A `TableSchema` lists the expected columns, each with its Arrow type and rules (``type``,
``nullable``, ``range``, ``allowed``, ``unique``, ``regex``). It is inferred from data
(`TableSchema.infer`), saved as a YAML file a person edits (format id
``threadline.schema-rules/1``, one mapping per column), and read back with `TableSchema.from_yaml`,
which checks every key and value. Each rule has a policy: ``fail`` (the default) raises
`ValidationFailed`, ``drop`` removes the rows breaking it, ``quarantine`` sends them to a separate
output with a ``_violations`` column (``"amount:range;region:allowed"``).

Decisions, so that results do not depend on batch boundaries or on the policies chosen:

- ``type``: a value passes when it casts *safely* on its own to the declared type (no overflow, no
  truncation, a parsable string). The whole column is cast at once; only when that fails are the
  failing rows found, by bisecting the batch (O(bad * log n) casts). A type-breaking value counts
  as null for the other rules, so it breaks only ``type``. A cast Arrow does not implement at all
  breaks ``type`` on every non-null row.
- ``range`` (min/max, inclusive): nulls pass; a float NaN breaks it.
- ``allowed``, ``regex`` (matched whole: ``^(?:regex)$``, RE2 syntax), ``unique``: nulls pass.
- ``unique`` holds across the whole table: every non-null value counts at its first occurrence in
  row order, whatever happens to that row, and later rows with the same value break the rule.
  Values are compared by 64-bit hash (8 bytes of memory per distinct value); with n distinct values
  the chance of a false duplicate is about n**2 / 2**65.
- A row breaking both a ``drop`` and a ``quarantine`` rule is quarantined: it is kept for review.
- Counts in the report are per (column, rule) over all rows read, whatever the policy.
- Valid rows come out with the declared columns cast to the declared types, in declared order,
  followed by any extra columns (``extra_columns: ignore``); quarantined rows keep their original
  columns and values, plus ``_violations``.

A ``fail`` violation raises at the batch where it is found, after earlier batches have been
yielded: write the outputs somewhere temporary and publish them only when the stream ends.

Example:
    schema = TableSchema.infer(table.to_batches())
    path.write_text(schema.to_yaml())            # edit it, then:
    schema = TableSchema.from_yaml(path.read_text())
    report = ValidationReport()
    for status, batch in validate_table(lambda: table.to_batches(), schema, report=report):
        writers[status].write_batch(batch)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from threadline.errors import InvalidArgument
from threadline.prep.arrays import arrow_mask, arrow_scalar, numpy_filled
from threadline.prep.formats import check_document
from threadline.prep.hashing import HashSet, column_hash, null_mask

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

FORMAT = "threadline.schema-rules/1"
VALID = "valid"
QUARANTINE = "quarantine"
VIOLATIONS_COLUMN = "_violations"
RULES: tuple[str, ...] = ("type", "nullable", "range", "allowed", "unique", "regex")
POLICIES: tuple[str, ...] = ("fail", "drop", "quarantine")
EXAMPLES = 5
#: example values a `ValidationFailed` message shows per broken rule
MESSAGE_EXAMPLES = 3
#: `infer` stops tracking a column's uniqueness beyond this many distinct values
UNIQUE_INFER_LIMIT = 1_000_000

Mask = npt.NDArray[np.bool_]
_COLUMN_KEYS = ("name", "type", "nullable", "min", "max", "allowed", "unique", "regex", "policy")
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]")
_HEADER = """\
# Table schema with rules (threadline.schema-rules/1). Edit freely; one mapping per column:
#   name, type (an Arrow type: int64, double, string, bool, timestamp[us], date32[day]...),
#   nullable (true/false), min / max (inclusive; numbers, or ISO dates for temporal columns),
#   allowed (list of categories), unique (true/false), regex (matched against the whole value),
#   policy: {rule: fail | drop | quarantine} for rules type, nullable, range, allowed, unique, regex
#   (default fail).
# extra_columns: fail (reject columns not listed here) or ignore (pass them through unchecked).
"""


class ValidationFailed(InvalidArgument):
    """Data broke a rule whose policy is ``fail``, or lacks a declared column.

    Attributes:
        report: the counts up to and including the batch that failed.
        column: the first column at fault.
        rule: the first rule broken (``missing`` or ``extra`` for columns absent or not declared).
    """

    def __init__(self, message: str, *, report: ValidationReport, column: str, rule: str) -> None:
        super().__init__(message)
        self.report = report
        self.column = column
        self.rule = rule


# --------------------------------------------------------------------------------------------- rules


def parse_type(name: str) -> pa.DataType:
    """The Arrow type a type string names (``int64``, ``timestamp[us, tz=UTC]``, ``date32[day]``...).

    Raises:
        InvalidArgument: the name is not an Arrow type this module reads.
    """
    if match := _TIMESTAMP.fullmatch(name):
        return pa.timestamp(match.group(1), tz=match.group(2))
    try:
        return pa.type_for_alias(name)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument(f"unknown Arrow type {name!r}; use e.g. int64, double, string, bool, "
                              "timestamp[us], date32[day]") from exc


def _orderable(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype)
        or pa.types.is_date(dtype) or _text(dtype)
    )


def _text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


@dataclass(frozen=True)
class ColumnRules:
    """One declared column: its type and the rules its values must follow.

    Attributes:
        name: the column name.
        type: an Arrow type string (``int64``, ``double``, ``string``, ``bool``, ``timestamp[us]``...).
        nullable: whether nulls are allowed (rule ``nullable``).
        min: inclusive lower bound (rule ``range``): a number, an ISO date / timestamp string for
            temporal columns, or a string for string columns (compared by code point).
        max: inclusive upper bound, like `min`.
        allowed: the categories the values must be among (rule ``allowed``).
        unique: whether each non-null value may occur only once in the table (rule ``unique``).
        regex: a pattern each non-null value must match whole (rule ``regex``, string columns).
        policy: rule -> ``fail`` | ``drop`` | ``quarantine``; rules not named use ``fail``.

    Raises:
        InvalidArgument: on construction, naming the column and the value that is wrong.
    """

    name: str
    type: str
    nullable: bool = True
    min: float | str | None = None
    max: float | str | None = None
    allowed: tuple[str, ...] | None = None
    unique: bool = False
    regex: str | None = None
    policy: dict[str, str] = field(default_factory=dict)
    _arrow: pa.DataType = field(init=False, repr=False, compare=False)
    _bounds: tuple[pa.Scalar | None, pa.Scalar | None] = field(init=False, repr=False, compare=False)
    _value_set: pa.Array | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"schema column name {self.name!r} must be a non-empty string")
        where = f"schema column {self.name!r}"
        if not isinstance(self.type, str):
            raise InvalidArgument(f"{where}: type {self.type!r} must be an Arrow type string")
        try:
            arrow = parse_type(self.type)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
        object.__setattr__(self, "_arrow", arrow)
        for key in ("nullable", "unique"):
            if not isinstance(getattr(self, key), bool):
                raise InvalidArgument(f"{where}: {key} {getattr(self, key)!r} must be true or false")
        if not isinstance(self.policy, dict):
            raise InvalidArgument(f"{where}: policy {self.policy!r} must be a mapping rule -> policy")
        for rule, policy in self.policy.items():
            if rule not in RULES:
                raise InvalidArgument(f"{where}: policy names unknown rule {rule!r}; rules: {list(RULES)}")
            if policy not in POLICIES:
                raise InvalidArgument(
                    f"{where}: policy {policy!r} for rule {rule!r} must be one of {list(POLICIES)}"
                )
        object.__setattr__(self, "_bounds", (self._bound("min", self.min), self._bound("max", self.max)))
        low, high = self._bounds
        if low is not None and high is not None and pc.greater(low, high).as_py():
            raise InvalidArgument(f"{where}: min {self.min!r} is greater than max {self.max!r}")
        object.__setattr__(self, "_value_set", self._categories())
        if self.regex is not None:
            self._check_regex()

    def _bound(self, key: str, value: object) -> pa.Scalar | None:
        where = f"schema column {self.name!r}"
        if value is None:
            return None
        dtype = self._arrow
        if not _orderable(dtype):
            raise InvalidArgument(f"{where}: {key} is not supported for type {self.type}")
        try:
            if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
                if isinstance(value, str):
                    value = (dt.date if pa.types.is_date(dtype) else dt.datetime).fromisoformat(value)
                if not isinstance(value, dt.date):
                    raise TypeError(value)
                if pa.types.is_date(dtype) and isinstance(value, dt.datetime):
                    value = value.date()
                return pa.scalar(value, type=dtype)
            if _text(dtype):
                if not isinstance(value, str):
                    raise TypeError(value)
                return pa.scalar(value, type=dtype)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(value)
            return arrow_scalar(value)
        except (TypeError, ValueError, pa.ArrowException) as exc:
            wanted = "a string" if _text(dtype) else "a number" if not pa.types.is_temporal(dtype) else (
                "an ISO date or timestamp")
            raise InvalidArgument(f"{where}: {key} {value!r} must be {wanted} for type {self.type}") from exc

    def _categories(self) -> pa.Array | None:
        where = f"schema column {self.name!r}"
        if self.allowed is None:
            return None
        if not isinstance(self.allowed, tuple) or not all(isinstance(v, str) for v in self.allowed):
            raise InvalidArgument(f"{where}: allowed {self.allowed!r} must be a list of strings")
        try:
            return pc.cast(pa.array(self.allowed, type=pa.string()), self._arrow, safe=True)
        except (pa.ArrowException, ValueError) as exc:
            wrong = f"allowed {list(self.allowed)} are not all {self.type} values"
            raise InvalidArgument(f"{where}: {wrong}") from exc

    def _check_regex(self) -> None:
        where = f"schema column {self.name!r}"
        if not isinstance(self.regex, str):
            raise InvalidArgument(f"{where}: regex {self.regex!r} must be a string")
        if not _text(self._arrow):
            raise InvalidArgument(f"{where}: regex needs a string column, not {self.type}")
        try:
            re.compile(self.regex)
            # Arrow matches with RE2, which refuses some Python syntax (look-arounds, back-references).
            pc.match_substring_regex(pa.array([""]), pattern=self.anchored_regex)
        except (re.error, pa.ArrowException) as exc:
            raise InvalidArgument(f"{where}: regex {self.regex!r} does not compile: {exc}") from exc

    @property
    def arrow_type(self) -> pa.DataType:
        """The declared type as a ``pyarrow.DataType``."""
        return self._arrow

    @property
    def anchored_regex(self) -> str:
        """The regex wrapped so that it must match the whole value."""
        return f"^(?:{self.regex})$"

    def policy_for(self, rule: str) -> str:
        """The policy of `rule` (``fail`` unless the column names another)."""
        return self.policy.get(rule, "fail")

    def active_rules(self) -> list[str]:
        """The rules this column checks, in `RULES` order."""
        on = {
            "type": True,
            "nullable": not self.nullable,
            "range": self.min is not None or self.max is not None,
            "allowed": self.allowed is not None,
            "unique": self.unique,
            "regex": self.regex is not None,
        }
        return [rule for rule in RULES if on[rule]]

    def to_dict(self) -> dict[str, Any]:
        """The column as a plain mapping; rules that are off and default policies are left out."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        out["unique"] = self.unique
        if self.regex is not None:
            out["regex"] = self.regex
        policy = {r: p for r, p in self.policy.items() if p != "fail"}
        if policy:
            out["policy"] = policy
        return out

    @classmethod
    def from_dict(cls, data: object, index: int) -> ColumnRules:
        """Read one column mapping of a schema file (`index` only names it in errors).

        Raises:
            InvalidArgument: naming the column and the unknown key or bad value.
        """
        if not isinstance(data, dict):
            raise InvalidArgument(f"schema column #{index + 1} must be a mapping, not {data!r}")
        where = f"schema column {data.get('name', f'#{index + 1}')!r}"
        unknown = sorted(str(k) for k in set(data) - set(_COLUMN_KEYS))
        if unknown:
            raise InvalidArgument(f"{where}: unknown keys {unknown}; known keys: {list(_COLUMN_KEYS)}")
        for key in ("name", "type"):
            if key not in data:
                raise InvalidArgument(f"{where}: the {key!r} key is missing")
        fields = dict(data)
        for key in ("min", "max"):
            if isinstance(fields.get(key), dt.date):  # YAML reads an unquoted 2024-01-01 as a date
                fields[key] = fields[key].isoformat()
        allowed = fields.get("allowed")
        if allowed is not None:
            if not isinstance(allowed, list) or any(isinstance(v, dict | list) for v in allowed):
                raise InvalidArgument(f"{where}: allowed {allowed!r} must be a list of values")
            # YAML reads categories such as 1 or yes as numbers or booleans; categories are text.
            fields["allowed"] = tuple(
                ("true" if v else "false") if isinstance(v, bool) else str(v) for v in allowed
            )
        if fields.get("policy") is None:
            fields["policy"] = {}
        return cls(**fields)


@dataclass(frozen=True)
class TableSchema:
    """The declared columns of a table and what to do with columns it does not declare.

    Attributes:
        columns: the declared columns, in order.
        extra_columns: ``fail`` (a batch with an undeclared column raises) or ``ignore`` (such
            columns pass through unchecked).

    Raises:
        InvalidArgument: on construction, for repeated column names or a bad `extra_columns`.
    """

    columns: tuple[ColumnRules, ...]
    extra_columns: str = "fail"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        names = [c.name for c in self.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidArgument(f"schema declares columns {repeated} more than once")
        if VIOLATIONS_COLUMN in names:
            raise InvalidArgument(f"schema column name {VIOLATIONS_COLUMN!r} is reserved (quarantine output)")
        if self.extra_columns not in ("fail", "ignore"):
            raise InvalidArgument(f"schema extra_columns {self.extra_columns!r} must be 'fail' or 'ignore'")

    def to_arrow(self) -> pa.Schema:
        """The declared columns as a ``pyarrow.Schema`` (the schema of the valid output)."""
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    def to_dict(self) -> dict[str, Any]:
        """The schema as plain data, format id ``threadline.schema-rules/1``."""
        return {
            "format": FORMAT,
            "extra_columns": self.extra_columns,
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_yaml(self) -> str:
        """The schema as an editable YAML document (a comment header, one mapping per column)."""
        return _HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: object) -> TableSchema:
        """Read the plain data `to_dict` writes.

        Raises:
            InvalidArgument: on a wrong format id, unknown keys or bad values, naming the column.
        """
        data = check_document(data, format_id=FORMAT, what="schema-rules file",
                              keys={"extra_columns", "columns"})
        columns = data.get("columns")
        if not isinstance(columns, list):
            raise InvalidArgument(f"schema 'columns' must be a list of column mappings, not {columns!r}")
        return cls(
            tuple(ColumnRules.from_dict(c, i) for i, c in enumerate(columns)),
            extra_columns=data.get("extra_columns", "fail"),
        )

    @classmethod
    def from_yaml(cls, text: str) -> TableSchema:
        """Read a YAML document `to_yaml` wrote, possibly edited by hand.

        Raises:
            InvalidArgument: on YAML syntax errors, a wrong format id, unknown keys, unknown rules,
                bad policies, regexes that do not compile, min > max..., naming the column.
        """
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date such as 2024-13-01
            raise InvalidArgument(f"schema file is not valid YAML: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def infer(cls, batches: Iterable[pa.RecordBatch], *, max_categories: int = 20) -> TableSchema:
        """Infer a schema with rules from data, to be reviewed and edited.

        Per column: the type (dictionary columns get their value type), ``nullable`` if a null was
        seen, min/max for numbers, timestamps and dates, ``allowed`` for string columns with at most
        `max_categories` distinct values some of which repeat (distinct values that never repeat
        look like keys, not categories), and ``unique`` for integer, string, binary and temporal
        columns with no repeated non-null value (not for floats and booleans, which are
        measurements and flags rather than keys; given up beyond `UNIQUE_INFER_LIMIT` distinct
        values). A column holding only nulls gets no bounds, categories or uniqueness.

        Args:
            batches: the table's record batches, read once.
            max_categories: the most distinct values a string column may have to get ``allowed``.

        Raises:
            InvalidArgument: no batches, or batches whose types cannot be unified.
        """
        stats: dict[str, _ColumnStats] = {}
        arrow: pa.Schema | None = None
        for batch in batches:
            try:
                arrow = batch.schema if arrow is None else pa.unify_schemas(
                    [arrow, batch.schema], promote_options="permissive")
            except (pa.ArrowException, ValueError) as exc:
                raise InvalidArgument(f"cannot infer a schema: batch columns do not agree: {exc}") from exc
            for name, arr in zip(batch.schema.names, batch.columns, strict=True):
                stats.setdefault(name, _ColumnStats(max_categories)).add(arr)
        if arrow is None:
            raise InvalidArgument("cannot infer a schema from no batches")
        columns = []
        for f in arrow:
            dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
            columns.append(stats[f.name].rules(f.name, dtype))
        return cls(tuple(columns))


class _ColumnStats:
    """What `TableSchema.infer` learns about one column, batch by batch."""

    def __init__(self, max_categories: int) -> None:
        self.max_categories = max_categories
        self.nulls = False
        self.count = 0
        self.low: Any = None
        self.high: Any = None
        self.categories: set[str] | None = set()
        self.seen: HashSet | None = HashSet()
        self.repeats = False

    def add(self, arr: pa.Array) -> None:
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        dtype = arr.type
        self.nulls = self.nulls or arr.null_count > 0
        values = arr.drop_null()
        self.count += len(values)
        if not len(values):
            return
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype) \
                or pa.types.is_date(dtype):
            low, high = (v.as_py() for v in pc.min_max(values).values())
            if low is not None:  # all-NaN floats have no min/max
                self.low = low if self.low is None else min(self.low, low)
                self.high = high if self.high is None else max(self.high, high)
        if self.categories is not None and _text(dtype):
            self.categories.update(pc.unique(values).to_pylist())
            if len(self.categories) > self.max_categories:
                self.categories = None
        if self.seen is not None:
            if pa.types.is_floating(dtype) or pa.types.is_boolean(dtype) or not _hashable(dtype):
                self.seen = None
                return
            uniq = np.unique(column_hash(values))
            if len(uniq) < len(values) or self.seen.contains(uniq).any():
                self.repeats = True
                self.seen = None
                return
            self.seen.add(uniq)
            if self.seen.size > UNIQUE_INFER_LIMIT:
                self.seen = None

    def rules(self, name: str, dtype: pa.DataType) -> ColumnRules:
        temporal = pa.types.is_temporal(dtype)
        low, high = ((v.isoformat() if temporal else v) for v in (self.low, self.high))
        if pa.types.is_date(dtype) and isinstance(self.low, dt.datetime):  # date64 reads as datetime
            low, high = self.low.date().isoformat(), self.high.date().isoformat()
        categories = self.categories if _text(dtype) and self.count and self.repeats else None
        return ColumnRules(
            name=name,
            type=str(dtype),
            nullable=self.nulls,
            min=low if self.low is not None else None,
            max=high if self.high is not None else None,
            allowed=tuple(sorted(categories)) if categories is not None else None,
            unique=self.seen is not None and self.count > 0,
        )


def _hashable(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_temporal(dtype) or _text(dtype)
        or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)
    )


# -------------------------------------------------------------------------------------------- report


@dataclass
class ValidationReport:
    """What a validation saw: rows in and out, and per (column, rule) the rows breaking it.

    Attributes:
        rows_in: rows read.
        rows_valid: rows yielded as valid.
        rows_dropped: rows removed by a ``drop`` rule (and no ``quarantine`` rule).
        rows_quarantined: rows yielded to the quarantine output.
        violations: (column, rule) -> rows breaking it, whatever its policy.
        examples: (column, rule) -> up to 5 offending values, the first ones in row order.
    """

    rows_in: int = 0
    rows_valid: int = 0
    rows_dropped: int = 0
    rows_quarantined: int = 0
    violations: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counts, with violations as a list of ``{column, rule, count, examples}``."""
        return {
            "rows_in": self.rows_in,
            "rows_valid": self.rows_valid,
            "rows_dropped": self.rows_dropped,
            "rows_quarantined": self.rows_quarantined,
            "violations": [
                {"column": c, "rule": r, "count": n, "examples": list(self.examples.get((c, r), []))}
                for (c, r), n in self.violations.items()
            ],
        }

    def _count(self, column: str, rule: str, values: pa.Array, mask: Mask) -> None:
        key = (column, rule)
        self.violations[key] = self.violations.get(key, 0) + int(mask.sum())
        examples = self.examples.setdefault(key, [])
        if len(examples) < EXAMPLES:
            examples.extend(values.filter(arrow_mask(mask)).slice(0, EXAMPLES - len(examples)).to_pylist())


# ---------------------------------------------------------------------------------------- validation


def validate_table(
    source: Callable[[], Iterable[pa.RecordBatch]],
    schema: TableSchema,
    *,
    report: ValidationReport | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Validate a table; yield ``("valid", rows)`` and ``("quarantine", rows)``, in input order.

    The source is read once. Empty outputs are not yielded. See the module docstring for how each
    rule treats nulls, NaN and type-breaking values.

    Args:
        source: returns an iterable of the table's record batches.
        schema: the declared columns and rules.
        report: when given, rows and violations are counted into it (it is also on the exception).

    Raises:
        ValidationFailed: a ``fail`` rule was broken (the message names each column and rule broken
            in that batch, the count and up to 3 example values), a declared column is missing, or
            an undeclared column appears with ``extra_columns: fail``.
    """
    report = report if report is not None else ValidationReport()
    checker = _Checker(schema, report)
    for batch in source():
        checker.check_columns(batch)
        if not batch.num_rows:
            continue
        yield from checker.check(batch)


class _Checker:
    """Validation state across batches: the report and the ``unique`` columns' seen values."""

    def __init__(self, schema: TableSchema, report: ValidationReport) -> None:
        self.schema = schema
        self.report = report
        self.seen = {c.name: HashSet() for c in schema.columns if c.unique}
        self.declared = {c.name for c in schema.columns}

    def fail(self, message: str, column: str, rule: str) -> ValidationFailed:
        return ValidationFailed(message, report=self.report, column=column, rule=rule)

    def check_columns(self, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        for c in self.schema.columns:
            if c.name not in names:
                raise self.fail(
                    f"column {c.name!r} declared in the schema is missing from the data; data columns: "
                    f"{names}. Fix the data or remove the column from the schema file", c.name, "missing")
        extra = [n for n in names if n not in self.declared]
        if extra and self.schema.extra_columns == "fail":
            raise self.fail(
                f"data has columns {extra} the schema does not declare; add them to the schema file "
                "or set 'extra_columns: ignore'", extra[0], "extra")

    def check(self, batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
        n = batch.num_rows
        self.report.rows_in += n
        typed: dict[str, pa.Array] = {}
        broken: list[tuple[ColumnRules, str, Mask]] = []
        for c in self.schema.columns:
            raw = batch.column(c.name)
            typed[c.name], bad_type = _cast(raw, c.arrow_type)
            for rule, mask in [("type", bad_type), *self._rules(c, raw, typed[c.name])]:
                self.report._count(c.name, rule, raw if rule == "type" else typed[c.name], mask)
                if mask.any():
                    broken.append((c, rule, mask))
        failed = [(c, rule, mask) for c, rule, mask in broken if c.policy_for(rule) == "fail"]
        if failed:
            raise self.fail(self._fail_message(batch, failed), failed[0][0].name, failed[0][1])
        quarantine = np.zeros(n, dtype=bool)
        drop = np.zeros(n, dtype=bool)
        for c, rule, mask in broken:
            if c.policy_for(rule) == "quarantine":
                quarantine |= mask
            else:
                drop |= mask
        drop &= ~quarantine
        valid = ~(quarantine | drop)
        self.report.rows_dropped += int(drop.sum())
        self.report.rows_quarantined += int(quarantine.sum())
        self.report.rows_valid += int(valid.sum())
        if valid.any():
            yield VALID, self._valid_output(batch, typed, valid)
        if quarantine.any():
            yield QUARANTINE, _quarantine_output(batch, broken, quarantine)

    def _rules(self, c: ColumnRules, raw: pa.Array, typed: pa.Array) -> Iterator[tuple[str, Mask]]:
        if not c.nullable:
            yield "nullable", null_mask(raw)
        low, high = c._bounds
        if low is not None or high is not None:
            out = pa.array(np.zeros(len(typed), dtype=bool))
            if low is not None:
                out = pc.or_(out, pc.less(typed, low))
            if high is not None:
                out = pc.or_(out, pc.greater(typed, high))
            if pa.types.is_floating(typed.type):
                out = pc.or_(out, pc.is_nan(typed))
            yield "range", _mask(out)
        if c._value_set is not None:
            outside = pc.invert(pc.is_in(typed, value_set=c._value_set))
            yield "allowed", _mask(pc.and_(outside, pc.is_valid(typed)))
        if c.unique:
            yield "unique", self._duplicates(c.name, typed)
        if c.regex is not None:
            yield "regex", _mask(pc.invert(pc.match_substring_regex(typed, pattern=c.anchored_regex)))

    def _duplicates(self, name: str, typed: pa.Array) -> Mask:
        """True at rows whose value occurred earlier in the table (nulls never do)."""
        present = np.flatnonzero(~null_mask(typed))
        hashes = column_hash(typed)[present]
        uniq, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        seen = self.seen[name]
        old = seen.contains(uniq)
        seen.add(uniq[~old])
        dup_present = np.ones(len(present), dtype=bool)
        dup_present[first] = False  # the first occurrence within the batch...
        dup_present |= old[inverse]  # ...unless an earlier batch had the value
        out = np.zeros(len(typed), dtype=bool)
        out[present[dup_present]] = True
        return out

    def _fail_message(self, batch: pa.RecordBatch, failed: list[tuple[ColumnRules, str, Mask]]) -> str:
        parts = []
        for c, rule, mask in failed:
            values = batch.column(c.name).filter(arrow_mask(mask)).slice(0, MESSAGE_EXAMPLES).to_pylist()
            parts.append(f"column {c.name!r} broke rule {rule!r} ({_describe(c, rule)}) in {int(mask.sum())} "
                         f"rows of this batch, e.g. {values}")
        return ("validation failed: " + "; ".join(parts)
                + ". Fix the data, or set that rule's policy to drop or quarantine in the schema file")

    def _valid_output(self, batch: pa.RecordBatch, typed: dict[str, pa.Array], valid: Mask) -> pa.RecordBatch:
        arrays = list(typed.values())
        fields = list(self.schema.to_arrow())
        for name in batch.schema.names:
            if name not in self.declared:
                arrays.append(batch.column(name))
                fields.append(batch.schema.field(name))
        out = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
        return out if valid.all() else out.filter(arrow_mask(valid))


def _describe(c: ColumnRules, rule: str) -> str:
    return {
        "type": f"type {c.type}",
        "nullable": "not nullable",
        "range": f"min {c.min!r}, max {c.max!r}",
        "allowed": f"allowed {list(c.allowed or ())}",
        "unique": "unique",
        "regex": f"regex {c.regex!r}",
    }[rule]


def _quarantine_output(
    batch: pa.RecordBatch, broken: list[tuple[ColumnRules, str, Mask]], quarantine: Mask
) -> pa.RecordBatch:
    rows = np.flatnonzero(quarantine)
    labels: list[list[str]] = [[] for _ in rows]
    position = np.full(len(quarantine), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    for c, rule, mask in broken:  # in schema column order, then rule order
        for i in position[mask & quarantine]:
            labels[i].append(f"{c.name}:{rule}")
    out = batch.filter(arrow_mask(quarantine))
    if VIOLATIONS_COLUMN in out.schema.names:
        out = out.drop_columns([VIOLATIONS_COLUMN])  # an extra column of that name is replaced
    return out.append_column(VIOLATIONS_COLUMN, pa.array([";".join(x) for x in labels], type=pa.string()))


def _mask(arr: pa.Array) -> Mask:
    """A boolean Arrow array as a numpy mask, null as False."""
    return cast("Mask", numpy_filled(arr, False))


def _cast(arr: pa.Array, dtype: pa.DataType) -> tuple[pa.Array, Mask]:
    """The column cast to `dtype`, with rows that do not cast safely set to null, and their mask."""
    if pa.types.is_dictionary(arr.type) and not pa.types.is_dictionary(dtype):
        arr = arr.dictionary_decode()
    bad = np.zeros(len(arr), dtype=bool)
    if arr.type == dtype:
        return arr, bad
    try:
        return pc.cast(arr, dtype, safe=True), bad
    except pa.ArrowNotImplementedError:
        return pa.nulls(len(arr), type=dtype), ~null_mask(arr)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # Casting is element-wise, so a value fails in the whole column exactly when it fails alone:
    # bisect the failing slices down to single rows.
    stack = [(0, len(arr) // 2), (len(arr) // 2, len(arr))]
    while stack:
        lo, hi = stack.pop()
        if hi <= lo:
            continue
        try:
            pc.cast(arr.slice(lo, hi - lo), dtype, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if hi - lo == 1:
                bad[lo] = True
            else:
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid, hi)]
    cleaned = pc.if_else(arrow_mask(bad), arrow_scalar(None, arr.type), arr)
    return pc.cast(cleaned, dtype, safe=True), bad


__all__ = [
    "FORMAT",
    "POLICIES",
    "QUARANTINE",
    "RULES",
    "VALID",
    "VIOLATIONS_COLUMN",
    "ColumnRules",
    "TableSchema",
    "ValidationFailed",
    "ValidationReport",
    "parse_type",
    "validate_table",
]
