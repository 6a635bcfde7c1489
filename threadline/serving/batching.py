"""Adaptive micro-batching: concurrent requests to one model version share one model call.

A request that finds the model idle and no one else in flight is answered at once, so a lone
caller pays no batching delay. Under concurrent load, requests that arrive while the model is
busy queue, and the next call takes them all (up to `max_rows`); a batch may also be held
open for up to `max_wait` while other admitted requests are still on their way. A cheap model
(calls under `INLINE_SECONDS`, e.g. a linear model under ONNX Runtime) runs on the event loop
itself as each request comes: merging calls that cost microseconds would cost more in
scheduling than it saves. A slower one runs on the version's own thread, so the loop keeps
serving health checks and other models meanwhile, and it is what batching pays off for.

A request whose deadline passes while queued is taken out of the queue and never reaches the
model; one whose batch is already running gets its deadline error and the batch's answer is
dropped. Nothing outlives the batcher: `close` fails what is queued and joins the thread.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from threadline.serving.inputs import Inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

#: model calls faster than this (moving average) run on the event loop
INLINE_SECONDS = 0.001


class _Pending:
    __slots__ = ("future", "inputs")

    def __init__(self, inputs: Inputs, future: asyncio.Future[np.ndarray[Any, Any]]) -> None:
        self.inputs = inputs
        self.future = future


class MicroBatcher:
    """Merges concurrent `submit`s into model calls of at most `max_rows` rows.

    Args:
        predict: the model call (rows in, one answer per row out).
        max_rows: most rows per model call.
        max_wait: seconds a batch may wait for more requests while others are in flight.
        others_in_flight: how many admitted requests are in flight besides this one
            (the admission controller's count); 0 means nobody is coming, so no wait.
        seconds_per_call: the model's moving-average call time (decides inline vs thread).
        name: thread name suffix (the version id).
        on_call: told the rows of every model call (the batch-size metric).
    """

    def __init__(self, predict: Callable[[Inputs], np.ndarray[Any, Any]], *, max_rows: int = 64,
                 max_wait: float = 0.002, others_in_flight: Callable[[], int] = lambda: 0,
                 seconds_per_call: Callable[[], float] = lambda: 0.0, name: str = "model",
                 on_call: Callable[[int], None] | None = None) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._others = others_in_flight
        self._cost = seconds_per_call
        self._on_call = on_call
        self._queue: list[_Pending] = []
        self._queued_rows = 0
        self._busy = False
        self._filled: asyncio.Event | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tl-serve-{name}")
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: sizes (rows) of recent model calls, read by the metrics
        self.calls = 0
        self.last_batch_rows = 0

    async def submit(self, inputs: Inputs) -> np.ndarray[Any, Any]:
        """The model's answers for `inputs` (awaitable; cancel it to withdraw the request)."""
        now = self.answer_now(inputs)
        if now is not None:
            return now
        loop = asyncio.get_running_loop()
        if not self._busy and not self._queue and (self.max_wait <= 0 or self._others() == 0):
            return await self._run_alone(inputs, loop)
        pending = _Pending(inputs, loop.create_future())
        self._queue.append(pending)
        self._queued_rows += inputs.rows
        if self._filled is not None and self._queued_rows >= self.max_rows:
            self._filled.set()
        if not self._busy:
            self._busy = True
            self._spawn_drain(loop)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._withdraw(pending)
            raise

    def answer_now(self, inputs: Inputs) -> np.ndarray[Any, Any] | None:
        """The model's answers for `inputs` at once, on the caller's thread, when the model is
        cheap (under `INLINE_SECONDS` a call) and idle; None when they must be `submit`ted.

        Nothing waits in here, so a caller needs no deadline around it.
        """
        if self._closed:
            raise RuntimeError("the model version is unloaded")
        if self._busy or self._queue or self._cost() >= INLINE_SECONDS:
            return None
        # cheaper than a hand-off to a batch: answer now, on the loop
        self._count(inputs.rows)
        return self._predict(inputs)

    async def _run_alone(self, inputs: Inputs, loop: asyncio.AbstractEventLoop) -> np.ndarray[Any, Any]:
        self._busy = True
        try:
            self._count(inputs.rows)
            if self._cost() < INLINE_SECONDS:
                return self._predict(inputs)
            return await asyncio.shield(loop.run_in_executor(self._thread, self._predict, inputs))
        finally:
            if self._queue:
                self._spawn_drain(loop)
            else:
                self._busy = False

    def _count(self, rows: int) -> None:
        self.calls += 1
        self.last_batch_rows = rows
        if self._on_call is not None:
            self._on_call(rows)

    def _spawn_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _withdraw(self, pending: _Pending) -> None:
        if pending in self._queue:
            self._queue.remove(pending)
            self._queued_rows -= pending.inputs.rows

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].inputs.rows <= self.max_rows):
            item = self._queue.pop(0)
            rows += item.inputs.rows
            batch.append(item)
        self._queued_rows -= rows
        return batch

    async def _drain(self) -> None:
        """Run batches until the queue is empty (one drain task at a time: `_busy`)."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                coming = self._others() > len(self._queue)
                if self.max_wait > 0 and self._queued_rows < self.max_rows and coming:
                    self._filled = asyncio.Event()
                    try:
                        await asyncio.wait_for(self._filled.wait(), self.max_wait)
                    except TimeoutError:
                        pass
                    finally:
                        self._filled = None
                batch = [p for p in self._take() if not p.future.done()]
                if not batch:
                    continue
                joined = Inputs.concat([p.inputs for p in batch])
                self._count(joined.rows)
                try:
                    if self._cost() < INLINE_SECONDS:
                        out = self._predict(joined)
                    else:
                        out = await loop.run_in_executor(self._thread, self._predict, joined)
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                start = 0
                for p in batch:
                    end = start + p.inputs.rows
                    if not p.future.done():
                        p.future.set_result(out[start:end])
                    start = end
        finally:
            self._busy = False

    def close(self) -> None:
        """Fail whatever is queued and stop the version's thread (after its current call)."""
        self._closed = True
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(RuntimeError("the model version was unloaded"))
        self._queue.clear()
        self._queued_rows = 0
        self._thread.shutdown(wait=True, cancel_futures=True)
