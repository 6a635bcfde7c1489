"""The prediction log: every served request (or a sample) becomes versioned data.

A deployment's traffic is committed to the data repo `predictions-<deployment>`, branch
`main`, as Parquet files `log/<YYYY-MM-DD>/<pid>-<sequence>.parquet`, one row per input row
(the sequence is a counter plus a random id of the `PredictionLog`, so a pid reused after a
restart, or on another machine sharing the home, never overwrites an earlier file).
Monitoring and retraining read it back with `read_log` like any other data; every log commit
has a lineage edge `model_version:name/N -[served]-> data_commit` for each version it holds.

The request path only appends to an in-memory buffer (`PredictionLog.record`: a lock, a deque
append, never I/O, never an exception). A background thread turns the buffer into one Arrow
table and one commit every `flush_seconds` or `flush_rows`. Several worker processes log into
the same repo: each commit adds its own file on top of the branch head (`update=True`), and a
lost compare-and-swap (`Conflict`) is retried on the new head, so no batch is lost. A flush
that fails (disk full, database down) logs one line and keeps the rows for the next try, up to
`max_buffer_rows`; beyond that rows are dropped and counted, because a log must never take
the server down with it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import math
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from threadline.data.paths import check_name
from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.registry.versions import version_node

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import numpy as np

    from threadline.data.repos import DataRepos
    from threadline.serving.inputs import Inputs

__all__ = ["LogEntry", "PredictionLog", "log_repo", "read_log"]

log = logging.getLogger(__name__)

#: format id written into every log file's schema metadata and every log commit's metadata
FORMAT = "threadline.predlog/1"
BRANCH = "main"
LOG_DIR = "log"
#: lineage relation from a model version to a log commit holding its predictions
SERVED = "served"
#: how many times a commit is retried after losing the branch compare-and-swap
COMMIT_TRIES = 50
#: the column holding tensor inputs, one JSON array per row
TENSOR_COLUMN = "in.tensor"
INPUT_PREFIX = "in."

Mode = Literal["primary", "canary", "shadow"]


def log_repo(deployment: str) -> str:
    """The data repo a deployment's predictions and feedback are committed to."""
    return check_name(f"predictions-{deployment}", "prediction-log repo name")


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


def _rows_of(entry: LogEntry) -> int:
    inputs = entry.inputs
    return max(1, int(inputs.rows)) if inputs is not None else 1


def sampled(request_id: str, fraction: float) -> bool:
    """Whether a request is kept at sampling `fraction`: a stable hash of its id, so every
    worker (and a re-sent request) decides the same way."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * (1 << 64)


class PredictionLog:
    """Buffers served requests and commits them to the deployment's prediction-log repo.

    Args:
        repos: the data layer the log is committed to.
        deployment: the deployment's name; the repo is `predictions-<deployment>`.
        sample: the fraction of requests kept, in (0, 1], decided per request id.
        flush_rows: a flush starts once this many rows are buffered.
        flush_seconds: and at least this often while rows are buffered.
        max_buffer_rows: rows held in memory at most; requests beyond it are dropped and
            counted in `dropped_rows` rather than slowing the server down.
        background: run the flushing thread (False: only `flush()` and `close()` commit, for
            callers that drive flushing themselves).

    Counters (read them any time): `logged_rows` (committed), `dropped_rows` (never will be),
    `commits`, `conflicts` (lost compare-and-swaps that were retried), `failures` (flushes
    that failed and kept their rows); `last_error` is the latest flush failure's message.
    """

    def __init__(
        self,
        repos: DataRepos,
        deployment: str,
        *,
        sample: float = 1.0,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_buffer_rows: int = 200_000,
        background: bool = True,
    ) -> None:
        if not (isinstance(sample, int | float) and 0 < sample <= 1):
            raise InvalidArgument(f"sample={sample!r}: give the fraction of requests to log, in (0, 1]")
        if not (isinstance(flush_rows, int) and flush_rows >= 1):
            raise InvalidArgument(f"flush_rows={flush_rows!r}: must be an int >= 1")
        if not (isinstance(flush_seconds, int | float) and math.isfinite(flush_seconds)
                and flush_seconds > 0):
            raise InvalidArgument(f"flush_seconds={flush_seconds!r}: must be a number > 0")
        if not (isinstance(max_buffer_rows, int) and max_buffer_rows >= flush_rows):
            raise InvalidArgument(f"max_buffer_rows={max_buffer_rows!r}: must be an int >= "
                                  f"flush_rows ({flush_rows})")
        self.repos = repos
        self.deployment = deployment
        self.repo = log_repo(deployment)
        self.sample = float(sample)
        self.flush_rows = flush_rows
        self.flush_seconds = float(flush_seconds)
        self.max_buffer_rows = max_buffer_rows
        self.logged_rows = 0
        self.dropped_rows = 0
        self.commits = 0
        self.conflicts = 0
        self.failures = 0
        self.last_error: str | None = None
        self._buffer: collections.deque[LogEntry] = collections.deque()
        self._buffered_rows = 0  # queued + held + in flight: what the bound applies to
        self._queued_rows = 0  # rows of the entries in `_buffer`
        self._held: Any = None  # a table whose commit failed, retried by the next flush
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._committed = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()  # one flush at a time (thread, flush(), close())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._sequence = 0
        # names files uniquely even when pids repeat: across restarts and across machines
        self._instance = secrets.token_hex(4)
        self._repo_ready = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"predlog-{deployment}",
                                            daemon=True)
            self._thread.start()

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for the next flush."""
        return self._buffered_rows

    # ------------------------------------------------------------------ request path
    def record(self, entry: LogEntry) -> None:
        """Queue one request for the log: O(1), no I/O, never raises (the request path calls it)."""
        try:
            if self.sample < 1.0 and not sampled(entry.request_id, self.sample):
                return
            rows = _rows_of(entry)
            with self._lock:
                if self._closed or self._buffered_rows + rows > self.max_buffer_rows:
                    self.dropped_rows += rows
                    return
                self._buffer.append(entry)
                self._buffered_rows += rows
                self._queued_rows += rows
                full = self._queued_rows >= self.flush_rows
            if full and not self._wake.is_set():
                self._wake.set()
        except Exception:  # noqa: BLE001 - a malformed entry must never fail a request
            with contextlib.suppress(Exception):
                self.dropped_rows += 1

    # ------------------------------------------------------------------ flushing
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.flush()

    def flush(self) -> int:
        """Commit everything buffered now, in one commit; returns the rows committed.

        Never raises: a failure is logged in one line, counted in `failures`, kept in
        `last_error`, and its rows are held (as a table) for the next flush, within
        `max_buffer_rows`: the oldest are dropped first.
        """
        with self._flush_lock:
            with self._lock:
                # swap, not copy: the request path waits on this lock
                batch, self._buffer = self._buffer, collections.deque()
                taken, self._queued_rows = self._queued_rows, 0
                held, self._held = self._held, None
            # rows taken stay counted in `_buffered_rows` until they are committed or dropped,
            # so the bound covers what is in flight too
            inflight = taken + (held.num_rows if held is not None else 0)
            if not inflight:
                return 0
            try:
                table, bad = build_table(batch) if batch else (None, 0)
            except Exception as exc:  # noqa: BLE001 - unconvertible batch: drop it, keep serving
                log.warning("prediction log %s: dropped %d rows that could not be converted: %s",
                            self.repo, taken, exc)
                table, bad = None, taken
            if bad:
                log.warning("prediction log %s: dropped %d malformed rows", self.repo, bad)
            if held is not None:
                table = held if table is None else concat([held, table], held)
            try:
                if table is not None and table.num_rows:
                    self._commit(table)
            except Exception as exc:  # noqa: BLE001 - the server outlives its log
                self._hold(table, inflight, bad, exc)
                return 0
            rows = int(table.num_rows) if table is not None else 0
            with self._lock:
                self._buffered_rows -= inflight
                self.dropped_rows += bad
                if rows:
                    self.logged_rows += rows
                    self.commits += 1
                    self._committed.notify_all()
            return rows

    def wait_for_commits(self, count: int, timeout: float | None = None) -> bool:
        """Wait until `commits` reaches `count`; False if `timeout` seconds passed first."""
        with self._committed:
            return self._committed.wait_for(lambda: self.commits >= count, timeout)

    def _hold(self, table: Any, inflight: int, bad: int, exc: BaseException) -> None:
        """Keep a table that failed to commit for the next flush, dropping its oldest rows
        beyond the buffer bound."""
        with self._lock:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            room = max(0, self.max_buffer_rows - (self._buffered_rows - inflight))
            keep = min(int(table.num_rows), room)
            self.dropped_rows += bad + int(table.num_rows) - keep
            self._held = table.slice(table.num_rows - keep) if keep else None
            self._buffered_rows += keep - inflight
        log.warning("prediction log %s: a flush of %d rows failed, %d kept for the next try: %s",
                    self.repo, table.num_rows, keep, self.last_error)

    def _ensure_repo(self) -> None:
        if self._repo_ready:
            return
        with contextlib.suppress(AlreadyExists):  # another worker (or an earlier run) made it
            self.repos.create(self.repo, f"prediction log and feedback of deployment {self.deployment}")
        self._repo_ready = True

    def _commit(self, table: Any) -> None:
        import pyarrow.compute as pc

        self._ensure_repo()
        ts = table.column("ts")
        first, last = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
        day = datetime.fromtimestamp(first / 1000, UTC).strftime("%Y-%m-%d")
        # versions from the table, not the batch: malformed entries were left out of it
        pairs = table.select(["model", "version"]).group_by(["model", "version"]).aggregate([])
        versions = sorted((str(m), int(v)) for m, v in zip(pairs["model"].to_pylist(),
                                                            pairs["version"].to_pylist(), strict=True))
        meta = {"format": FORMAT, "deployment": self.deployment, "rows": int(table.num_rows),
                "requests": int(pc.count_distinct(table["request_id"]).as_py()),
                "from_ms": first, "until_ms": last, "pid": os.getpid(),
                "versions": [f"{name}/{number}" for name, number in versions]}
        message = (f"{table.num_rows} predictions of {self.deployment} from "
                   f"{_iso(first)} to {_iso(last)}")
        nodes = [version_node(name, number) for name, number in versions]
        # a node lineage would refuse (an absurdly long name) gets no edge rather than
        # failing every flush from now on
        served = [(node, SERVED) for node in nodes if 0 < len(node.id) <= 200]
        with self._lock:
            self._sequence += 1
            name = f"{os.getpid()}-{self._sequence:06d}-{self._instance}.parquet"
        commit_parquet(self.repos, self.repo, f"{LOG_DIR}/{day}", name, table, message, meta,
                       served, on_conflict=self._count_conflict)

    def _count_conflict(self) -> None:
        with self._lock:
            self.conflicts += 1

    def close(self) -> None:
        """Flush what is buffered and stop the background thread (idempotent)."""
        with self._lock:
            already = self._closed
            self._closed = True
        if already:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


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
    rows = _rows_of(entry)
    fields = [convert(getattr(entry, name)) for name, _, convert in _FIXED]
    inputs = entry.inputs
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
        return _rows_of(entry)
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


def read_log(repos: DataRepos, deployment: str, *, since_ms: float | None = None,
             until_ms: float | None = None) -> Any:
    """The deployment's prediction log at the branch head, as one pyarrow Table.

    Args:
        repos: the data layer.
        deployment: the deployment's name.
        since_ms: keep rows with `ts >= since_ms` (epoch ms).
        until_ms: keep rows with `ts < until_ms`.

    Raises:
        NotFound: the deployment has never logged (its repo does not exist).
    """
    import pyarrow.compute as pc

    repo = log_repo(deployment)
    last_day = (datetime.fromtimestamp(until_ms / 1000, UTC).strftime("%Y-%m-%d")
                if until_ms is not None else None)

    def wanted(path: str) -> bool:
        # a file sits under the day of its first row: a later day holds no earlier rows
        day = path.split("/")[1] if path.count("/") >= 2 else ""
        return last_day is None or day <= last_day

    tables, _ = read_parquet_files(repos, repo, LOG_DIR, wanted)
    table = concat(tables, empty_log())
    if since_ms is not None:
        table = table.filter(pc.greater_equal(table["ts"], math.ceil(since_ms)))
    if until_ms is not None:
        table = table.filter(pc.less(table["ts"], math.ceil(until_ms)))
    return table
