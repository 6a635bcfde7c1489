"""The prediction log's table format: entries as Arrow rows, tables committed as Parquet and read back.

`build_table` turns a batch of served requests into one table, one row per input row: the
request's fields (`LogEntry`, declared next to the columns they fill, so that the two change
together), the input columns `in.<name>` (or `in.tensor`), and `prediction`. `commit_parquet`
adds a table to a repo's branch as one Parquet file, retrying a lost compare-and-swap, and
`read_parquet_files` with `concat` read a folder of them back as one table. Feedback
(`feedback.py`) stores and reads its labels with the same helpers, so they sit here rather than
in `predlog.py`, below both.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from threadline.errors import Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import numpy as np

    from threadline.data.repos import DataRepos
    from threadline.serving.inputs import Inputs

__all__ = [
    "BRANCH",
    "COMMIT_TRIES",
    "FORMAT",
    "INPUT_PREFIX",
    "TENSOR_COLUMN",
    "LogEntry",
    "Mode",
    "arrow_column",
    "build_table",
    "commit_parquet",
    "concat",
    "empty_log",
    "read_parquet_files",
    "rows_of",
]

#: format id written into every log file's schema metadata and every log commit's metadata
FORMAT = "threadline.predlog/1"
BRANCH = "main"
#: how many times a commit is retried after losing the branch compare-and-swap
COMMIT_TRIES = 50
#: the column holding tensor inputs, one JSON array per row
TENSOR_COLUMN = "in.tensor"
INPUT_PREFIX = "in."

Mode = Literal["primary", "canary", "shadow"]


@dataclass(slots=True)
class LogEntry:
    """One served request, as the serving layer hands it to `PredictionLog.record`.

    Attributes:
        request_id: unique per request (also the sampling key and the feedback join key).
        ts: when the request arrived, epoch milliseconds.
        deployment: the deployment that served it.
        route: the route (name) within the deployment.
        model: the registered model's name.
        version: the model version number that answered.
        mode: "primary", "canary" or "shadow".
        latency_ms: time spent serving it.
        status: the HTTP status answered.
        inputs: the decoded request rows.
        outputs: one prediction per input row, or None when the request failed.
        error: what failed, or None.
    """

    request_id: str
    ts: float
    deployment: str
    route: str
    model: str
    version: int
    mode: Mode
    latency_ms: float
    status: int
    inputs: Inputs | None
    outputs: Sequence[Any] | np.ndarray[Any, Any] | None = None
    error: str | None = None
    #: decodes the request's rows later, in the log's thread (set instead of `inputs` when
    #: the answer came from the cache without decoding the body)
    decode: Callable[[], Inputs] | None = None


def inputs_of(entry: LogEntry) -> Inputs | None:
    """The entry's rows, decoding them now if they were left for later."""
    if entry.inputs is None and entry.decode is not None:
        entry.inputs = entry.decode()
        entry.decode = None
    return entry.inputs


def rows_of(entry: LogEntry) -> int:
    """How many log rows `entry` becomes: one per input row, at least one."""
    inputs = entry.inputs
    if inputs is None and entry.decode is not None and entry.outputs is not None:
        return max(1, len(entry.outputs))  # one answer per row: the rows without decoding
    return max(1, int(inputs.rows)) if inputs is not None else 1


def commit_parquet(
    repos: DataRepos, repo: str, folder: str, name: str, table: Any, message: str,
    metadata: dict[str, Any], derived_from: Sequence[tuple[Any, str]] = (),
    *, on_conflict: Any = None,
) -> str:
    """Write `table` as `folder/name` and add it to `repo@main`, keeping the other files.

    A lost compare-and-swap (another process committed first) is retried on the new head,
    with a short random pause so that competing writers spread out. Returns the commit id.
    """
    import pyarrow.parquet as pq

    scratch = Path(tempfile.mkdtemp(prefix="tl-predlog-"))
    try:
        pq.write_table(table, scratch / name)
        for attempt in range(COMMIT_TRIES):
            try:
                result = repos.commit(f"{repo}@{BRANCH}", [scratch], message, metadata=metadata,
                                      prefix=folder, update=True, derived_from=derived_from)
                return result.commit.id
            except Conflict:
                if on_conflict is not None:
                    on_conflict()
                if attempt == COMMIT_TRIES - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter only
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    raise AssertionError("unreachable")  # pragma: no cover

# ---------------------------------------------------------------------- tables
def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def arrow_column(values: list[Any]) -> Any:
    """An Arrow array typed from Python values; mixed or unsupported values become JSON text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else _json(v) for v in values], pa.string())


def _plain(values: Any) -> list[Any]:
    """Outputs as a list of Python values, one per row."""
    if hasattr(values, "tolist"):
        converted = values.tolist()
        return converted if isinstance(converted, list) else [converted]
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


#: the per-request columns, their Arrow types and how an entry's field becomes a value
_FIXED: tuple[tuple[str, str, Any], ...] = (
    ("request_id", "string", str), ("ts", "int64", int), ("route", "string", str),
    ("model", "string", str), ("version", "int32", int), ("mode", "string", str),
    ("latency_ms", "float64", float), ("status", "int32", int),
    ("error", "string", lambda v: None if v is None else str(v)),
)


@dataclass(slots=True)
class _Checked:
    """One entry's values, converted and checked: the request's fields, then its rows."""

    fields: list[Any]
    rows: int
    columns: dict[str, list[Any]] | None
    tensor: list[str] | None
    predictions: list[Any] | None


def _checked(entry: LogEntry) -> _Checked:
    """Convert one entry; raises on an entry that cannot be logged."""
    inputs = inputs_of(entry)
    rows = rows_of(entry)
    fields = [convert(getattr(entry, name)) for name, _, convert in _FIXED]
    columns: dict[str, list[Any]] | None = None
    tensor: list[str] | None = None
    if inputs is not None and inputs.columns is not None:
        columns = {}
        for name, values in inputs.columns.items():
            column = _plain(values)
            if len(column) != rows:
                raise ValueError(f"input column {name!r} has {len(column)} values for {rows} rows")
            columns[INPUT_PREFIX + str(name)] = column
    elif inputs is not None and inputs.tensor is not None:
        tensor = [_json(row) for row in inputs.tensor.tolist()]
    predictions = None
    if entry.outputs is not None:
        predictions = _plain(entry.outputs)
        if len(predictions) != rows:
            raise ValueError(f"{len(predictions)} predictions for {rows} input rows")
    return _Checked(fields, rows, columns, tensor, predictions)


def _padded(good: list[_Checked], pick: Any) -> list[Any]:
    """One column over every entry's rows: `pick(entry)` or None for each of its rows."""
    out: list[Any] = []
    for checked in good:
        values = pick(checked)
        out.extend(values if values is not None else [None] * checked.rows)
    return out


def build_table(batch: Iterable[LogEntry]) -> tuple[Any, int]:
    """The Arrow table of a batch of entries (one row per input row), and the number of rows
    of malformed entries left out. The table is None when no row is left."""
    import numpy as np
    import pyarrow as pa

    good: list[_Checked] = []
    bad = 0
    for entry in batch:
        try:
            good.append(_checked(entry))
        except Exception:  # noqa: BLE001 - one bad entry must not block the others
            bad += _safe_rows(entry)
    if not good:
        return None, bad
    counts = np.fromiter((c.rows for c in good), np.int64, len(good))
    owner = pa.array(np.repeat(np.arange(len(good)), counts))  # the entry of each row
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    arrays: dict[str, Any] = {}
    for i, (name, arrow_type, _) in enumerate(_FIXED):
        per_request = pa.array([c.fields[i] for c in good], getattr(pa, arrow_type)())
        arrays[name] = per_request.take(owner)
        if name == "request_id":
            arrays["row"] = pa.array(np.arange(int(counts.sum())) - starts, pa.int32())
    names = list(dict.fromkeys(n for c in good if c.columns is not None for n in c.columns))
    for name in names:
        arrays[name] = arrow_column(_padded(good, lambda c, n=name: (c.columns or {}).get(n)))
    if any(c.tensor is not None for c in good):
        arrays[TENSOR_COLUMN] = pa.array(_padded(good, lambda c: c.tensor), pa.string())
    predictions = _padded(good, lambda c: c.predictions)
    arrays["prediction"] = (arrow_column(predictions) if any(c.predictions is not None for c in good)
                            else pa.nulls(len(predictions)))
    table = pa.table(arrays)
    return table.replace_schema_metadata({"threadline.format": FORMAT}), bad


def _safe_rows(entry: Any) -> int:
    try:
        return rows_of(entry)
    except Exception:  # noqa: BLE001 - not even a row count: count it as one
        return 1


# ---------------------------------------------------------------------- reading
def read_parquet_files(repos: DataRepos, repo: str, folder: str,
                       keep: Any = None) -> tuple[list[Any], str | None]:
    """Every Parquet file under `folder` of `repo@main`'s head (one commit), in path order,
    and that commit's id (None if the branch has no commit yet)."""
    from threadline.data.tables import read_table

    try:
        head = repos.resolve(f"{repo}@{BRANCH}").commit
    except NotFound as exc:
        raise NotFound(f"{repo} does not exist: it is created by the first flush of a "
                       f"deployment that logs predictions, or the first feedback sent ({exc})") from exc
    if head is None:
        return [], None
    paths = sorted(e.path for e in repos.manifest(head).under(folder) if e.path.endswith(".parquet"))
    if keep is not None:
        paths = [p for p in paths if keep(p)]
    return [read_table(repos, f"{repo}@{head.id}:{p}") for p in paths], head.id


def concat(tables: list[Any], empty: Any) -> Any:
    """Tables of possibly different columns as one (missing columns null, types widened)."""
    import pyarrow as pa

    if not tables:
        return empty
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # one file typed a column as numbers, another as text: fall back to text for those
        names: dict[str, set[Any]] = {}
        for t in tables:
            for field in t.schema:
                names.setdefault(field.name, set()).add(field.type)
        mixed = {n for n, types in names.items() if len({str(t) for t in types} - {"null"}) > 1}
        return pa.concat_tables([_as_text(t, mixed) for t in tables], promote_options="permissive")


def _as_text(table: Any, names: set[str]) -> Any:
    import pyarrow as pa

    for name in names & set(table.column_names):
        index = table.column_names.index(name)
        column = table.column(name)
        try:
            text = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pa.array([None if v is None else _json(v) for v in column.to_pylist()], pa.string())
        table = table.set_column(index, name, text)
    return table


def empty_log() -> Any:
    """A log table with no rows (the fixed columns only)."""
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("row", pa.int32()), ("ts", pa.int64()),
                      ("route", pa.string()), ("model", pa.string()), ("version", pa.int32()),
                      ("mode", pa.string()), ("latency_ms", pa.float64()), ("status", pa.int32()),
                      ("error", pa.string()), ("prediction", pa.null())]).empty_table()
