"""The prediction log: every served request (or a sample) becomes versioned data.

A deployment's traffic is committed to the data repo `predictions-<deployment>`, branch
`main`, as Parquet files `log/<YYYY-MM-DD>/<pid>-<sequence>.parquet`, one row per input row
(the sequence is a counter plus a random id of the `PredictionLog`, so a pid reused after a
restart, or on another machine sharing the home, never overwrites an earlier file).
Monitoring and retraining read it back with `read_log` like any other data; every log commit
has a lineage edge `model_version:name/N -[served]-> data_commit` for each version it holds.

The request path only appends to an in-memory buffer (`PredictionLog.record`: a lock, a deque
append, never I/O, never an exception). A background thread turns the buffer into one Arrow
table and one commit every `flush_seconds` or `flush_rows` (the table's format, and how it is
committed and read back, are in `logtable`). Several worker processes log into the same
repo: each commit adds its own file on top of the branch head (`update=True`), and a lost
compare-and-swap (`Conflict`) is retried on the new head, so no batch is lost. A flush that
fails (disk full, database down) logs one line and keeps the rows for the next try, up to
`max_buffer_rows`; beyond that rows are dropped and counted, because a log must never take the
server down with it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import math
import os
import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from threadline.data.paths import check_name
from threadline.errors import AlreadyExists, InvalidArgument
from threadline.registry.versions import version_node
from threadline.serving.logtable import (
    FORMAT,
    LogEntry,
    build_table,
    commit_parquet,
    concat,
    empty_log,
    read_parquet_files,
    rows_of,
)

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

__all__ = ["LogEntry", "PredictionLog", "log_repo", "read_log"]

log = logging.getLogger(__name__)

LOG_DIR = "log"
#: lineage relation from a model version to a log commit holding its predictions
SERVED = "served"


def log_repo(deployment: str) -> str:
    """The data repo a deployment's predictions and feedback are committed to."""
    return check_name(f"predictions-{deployment}", "prediction-log repo name")


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
            rows = rows_of(entry)
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
