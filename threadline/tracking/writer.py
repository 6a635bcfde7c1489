"""The background writer of active runs: logging calls queue, one thread commits in batches.

A `log_metric` call only appends to a list under a lock (about a microsecond); the process's
writer thread (`_Pump`, started on first use) wakes when a batch is full or a short interval
after the first item and commits everything queued in one `log_batch` transaction. `flush`
commits what is left in the caller's thread and returns once every item queued before it is
committed: the point a caller may treat as durable. `finish` does the same and sets the run's
final status in the same transaction. One batch of a run is written at a time (the `_writing`
token), so batches commit in the order they were queued. An error met by the writer is kept
and raised in the caller on its next call, never swallowed.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.tracking.model import Metric
    from threadline.tracking.store import TrackingStore

BATCH_SIZE = 1000
INTERVAL_S = 0.05

Batch = tuple[list["Metric"], list[tuple[str, str]], dict[str, str], int]


class _Pump:
    """The one background thread of a process: drains the queues of all its active runs.

    One thread, started on first use, instead of one per run: starting a thread costs about
    a millisecond on a loaded machine, more than a whole short run's logging. The database
    takes one writer at a time anyway.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._dirty: dict[BatchWriter, None] = {}  # an ordered set: first queued, first written
        self._urgent = False
        self._thread: threading.Thread | None = None
        self.interval = INTERVAL_S

    def wake(self, writer: BatchWriter, urgent: bool) -> None:
        """Tell the thread `writer` has items; `urgent` when a batch is full."""
        with self._cond:
            self._dirty[writer] = None
            self._urgent |= urgent
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="threadline-tracking",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _after_fork(self) -> None:  # the child of a fork has the lock and lists, not the thread
        self._cond = threading.Condition()
        self._dirty = {}
        self._urgent = False
        self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty:
                    self._cond.wait()
                if not self._urgent:
                    # gather fuller batches; a full batch cuts the wait short
                    self._cond.wait_for(lambda: self._urgent, self.interval)
                writers = list(self._dirty)
                self._dirty.clear()
                self._urgent = False
            busy = [w for w in writers if not w.drain()]
            if busy:  # a caller's flush holds their token: try again after the interval
                with self._cond:
                    self._dirty.update(dict.fromkeys(busy))


_pump = _Pump()
os.register_at_fork(after_in_child=_pump._after_fork)


class BatchWriter:
    """Queues metrics, params and tags of one run and commits them in batches.

    Args:
        store: where to write.
        run_id: the run everything is logged to.
        batch_size: wake the thread at once when this many metric points are queued.
    """

    def __init__(self, store: TrackingStore, run_id: str, *, batch_size: int = BATCH_SIZE) -> None:
        self.store = store
        self.run_id = run_id
        self.batch_size = batch_size
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._metrics: list[Metric] = []
        self._params: list[tuple[str, str]] = []
        self._tags: dict[str, str] = {}
        self._queued = 0  # items queued since the start
        self._done = 0  # items committed or failed
        self._writing = False  # a batch is being written (by the thread or a caller)
        self._closed = False

    # ------------------------------------------------------------ producers
    def _queued_locked(self, count: int) -> None:
        if self._closed:
            raise InvalidArgument(f"run {self.run_id} has ended; start a new run to log more")
        self._queued += count

    def metric(self, metric: Metric) -> None:
        """Queue one metric point."""
        with self._cond:
            self._metrics.append(metric)
            self._queued_locked(1)
            size = len(self._metrics)
        # wake the thread for a first item (it then gathers for `interval`) and when a batch
        # is full; other calls only append
        if size == 1 or size == self.batch_size:
            _pump.wake(self, size == self.batch_size)

    def metrics(self, metrics: list[Metric]) -> None:
        """Queue several metric points."""
        with self._cond:
            self._metrics.extend(metrics)
            self._queued_locked(len(metrics))
        _pump.wake(self, False)

    def params(self, items: list[tuple[str, str]]) -> None:
        """Queue params (already checked against what this run logged)."""
        with self._cond:
            self._params.extend(items)
            self._queued_locked(len(items))
        _pump.wake(self, False)

    def tags(self, items: dict[str, str]) -> None:
        """Queue tags (a later value of a key replaces an earlier one)."""
        with self._cond:
            self._tags.update(items)
            self._queued_locked(len(items))
        _pump.wake(self, False)

    # ------------------------------------------------------------ consumers
    def _take_locked(self) -> Batch:
        """Take everything queued and the writing token (the lock is held, the token free)."""
        batch = self._metrics, self._params, self._tags, self._queued - self._done
        self._metrics, self._params, self._tags = [], [], {}
        self._writing = True
        return batch

    def _commit(self, batch: Batch, end_status: str | None = None) -> bool:
        """Write a batch taken with the token; keep an error; False if the batch failed."""
        metrics, params, tags, count = batch
        try:
            self._write(metrics, params, tags, end_status)
            return True
        except BaseException as exc:  # noqa: BLE001 - kept and raised in the caller
            with self._cond:
                if self.error is None:
                    self.error = exc
            return False
        finally:
            with self._cond:
                self._done += count
                self._writing = False
                self._cond.notify_all()

    def flush(self) -> None:
        """Commit everything queued so far, in order; raise a kept error."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            batch = self._take_locked() if self._done < self._queued else None
        if batch is not None:
            self._commit(batch)
        self.raise_error()

    def finish(self, status: str) -> None:
        """Commit what is queued and set the run's final status in one transaction; stop the
        thread; raise a kept error (the status is then FAILED if `status` was FINISHED)."""
        with self._cond:
            self._closed = True
            while self._writing:
                self._cond.wait()
            batch = self._take_locked()
        failed = "FAILED" if status == "FINISHED" else status
        if not self._commit(batch, failed if self.error is not None else status):
            self.store.update_run(self.run_id, status=failed)  # the last batch itself failed
        self.raise_error()

    def raise_error(self) -> None:
        """Raise (once) the first error the writer met since the last call."""
        with self._cond:
            error, self.error = self.error, None
        if error is not None:
            raise error

    # --------------------------------------------------------------- thread
    def drain(self) -> bool:
        """Commit what is queued (called by the background thread); False if a caller holds
        the writing token, so the thread should come back later."""
        with self._cond:
            if self._writing:
                return False
            if self._closed or self._done == self._queued:
                return True
            batch = self._take_locked()
        self._commit(batch)
        return True

    def _write(self, metrics: list[Metric], params: list[tuple[str, str]],
               tags: dict[str, str], end_status: str | None) -> None:
        try:
            if end_status is None:
                self.store.log_batch(self.run_id, metrics=metrics, params=params, tags=tags)
            else:
                self.store.finish_run(self.run_id, end_status, metrics=metrics, params=params,
                                      tags=tags)
        except InvalidArgument:
            if not params:
                raise
            # A param refused by the database (set by another process) must not take the
            # metrics and tags of the same batch down with it: write those, then each param.
            self.store.log_batch(self.run_id, metrics=metrics, tags=tags)
            first: InvalidArgument | None = None
            for item in params:
                try:
                    self.store.log_batch(self.run_id, params=[item])
                except InvalidArgument as exc:
                    first = first or exc
            if first is not None:
                raise first from None
