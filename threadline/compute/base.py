"""What every executor shares: the task description, the handle it returns, the interface.

An executor ships a `Task` - a picklable module-level function with its arguments - to a
worker process and hands back a `TaskHandle`, a small Future. Executors differ only in where
the worker runs (a local process pool, a Ray cluster); retries, timeouts, admission by
`Resources` and the errors a caller sees are the same everywhere, and
`threadline.compute.conformance` checks that they are.

A subclass implements `submit` and `shutdown` (and `check`, to refuse impossible tasks up
front); `map`, `as_completed` and the context manager come from the base class::

    class InlineExecutor(Executor):
        '''Runs each task in the calling thread: for debugging only (no timeouts, no isolation).'''

        kind = "inline"

        def __init__(self) -> None:
            self.workers = 1

        def submit(self, task: Task) -> TaskHandle:
            self.check(task)
            handle = TaskHandle(task, cancel=lambda _handle: False)
            handle._start_attempt()
            try:
                handle._set_result(task.fn(*task.args, **task.kwargs))
            except Exception as exc:
                handle._set_error(TaskFailed(str(exc), task=task.label, attempts=1,
                                             error_type=type(exc).__name__,
                                             error_message=str(exc)))
            return handle

        def shutdown(self, wait: bool = True) -> None:
            pass
"""

from __future__ import annotations

import math
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from threadline.compute.errors import TaskCancelled, TaskFailed
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from types import TracebackType

__all__ = ["Executor", "Resources", "Task", "TaskHandle"]


@dataclass(frozen=True)
class Resources:
    """What one task needs while it runs; executors admit a task only when it fits.

    Attributes:
        cpus: CPU slots the task occupies (a task with cpus=2 on a 2-worker local pool runs
            alone). Fractions are allowed, as in Ray.
        memory_mb: memory the task needs; refused up front when the machine or cluster has
            less, and passed to Ray's scheduler. None: no claim.
        gpus: GPUs the task occupies.
    """

    cpus: float = 1
    memory_mb: int | None = None
    gpus: float = 0

    def __post_init__(self) -> None:
        for name in ("cpus", "gpus"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidArgument(f"Resources({name}={value!r}): must be a finite number >= 0")
        if self.memory_mb is not None and not (isinstance(self.memory_mb, int) and self.memory_mb > 0):
            raise InvalidArgument(f"Resources(memory_mb={self.memory_mb!r}): must be a positive int or None")


@dataclass(frozen=True)
class Task:
    """One unit of work: `fn(*args, **kwargs)` run in a worker process.

    `fn` must be picklable by reference - a function defined at the top level of an
    importable module - and the arguments and result must pickle, because they cross a
    process boundary.

    Attributes:
        fn: the function to run.
        args: positional arguments.
        kwargs: keyword arguments.
        name: shown in errors and logs; defaults to the function's qualified name.
        resources: what the task occupies while it runs.
        retries: how many more times it runs after raising or after its worker dies.
        timeout_s: wall-clock limit per attempt; on expiry the worker is killed.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    resources: Resources = Resources()
    retries: int = 0
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidArgument(f"Task(fn={self.fn!r}): fn must be a callable")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidArgument(f"Task(retries={self.retries!r}): must be an int >= 0")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise InvalidArgument(f"Task(timeout_s={self.timeout_s!r}): must be > 0 or None")

    @property
    def label(self) -> str:
        """The name errors use: `name`, or the function's qualified name."""
        return self.name or getattr(self.fn, "__qualname__", repr(self.fn))


class TaskHandle:
    """A submitted task: a small `concurrent.futures.Future` look-alike.

    Executors create handles and complete them from their own threads through the
    underscore methods; callers use `result`, `exception`, `done`, `cancel` and `attempts`.
    """

    def __init__(self, task: Task, cancel: Callable[[TaskHandle], bool]) -> None:
        self.task = task
        self._cancel_hook = cancel
        self._cond = threading.Condition()
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._attempts = 0
        self._callbacks: list[Callable[[TaskHandle], None]] = []

    def __repr__(self) -> str:
        state = "done" if self._done else "running" if self._attempts else "pending"
        return f"<TaskHandle {self.task.label!r} {state} attempts={self._attempts}>"

    @property
    def attempts(self) -> int:
        """How many times the task has started so far (1 + retries used)."""
        return self._attempts

    def done(self) -> bool:
        """True once the task finished, failed for good or was cancelled."""
        return self._done

    def cancelled(self) -> bool:
        """True if the task was cancelled."""
        return self._done and isinstance(self._error, TaskCancelled)

    def cancel(self) -> bool:
        """Cancel the task: a queued task never starts, a running one has its worker killed.

        Unlike `concurrent.futures.Future.cancel`, a running task is stopped too: work that
        nobody waits for should not hold a worker (this is what `fail_fast` relies on).

        Returns:
            False if the task had already finished, True otherwise.
        """
        if self._done:
            return False
        return self._cancel_hook(self)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task and return its result.

        Raises:
            TaskFailed: the task raised (or its worker died) on every attempt.
            TaskTimeout: the last attempt ran past `timeout_s`.
            TaskCancelled: the task was cancelled.
            TimeoutError: `timeout` seconds passed first; the task keeps running.
        """
        error = self.exception(timeout)
        if error is not None:
            raise error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the task and return its error, or None if it succeeded."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout):
                raise TimeoutError(f"task {self.task.label!r} still running after {timeout} s")
        return self._error

    def add_done_callback(self, callback: Callable[[TaskHandle], None]) -> None:
        """Call `callback(handle)` when the task completes (at once if it has)."""
        with self._cond:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback(self)

    # -- called by executors -----------------------------------------------------------

    def _start_attempt(self) -> int:
        with self._cond:
            self._attempts += 1
            return self._attempts

    def _set_result(self, value: Any) -> bool:
        return self._finish(value, None)

    def _set_error(self, error: BaseException) -> bool:
        return self._finish(None, error)

    def _finish(self, value: Any, error: BaseException | None) -> bool:
        """Complete the handle once; later completions (a late result after cancel) are dropped."""
        with self._cond:
            if self._done:
                return False
            self._value, self._error, self._done = value, error, True
            callbacks, self._callbacks = self._callbacks, []
            self._cond.notify_all()
        for callback in callbacks:
            callback(self)
        return True


class Executor(ABC):
    """Ships tasks to workers. Subclasses implement `submit` and `shutdown`.

    Attributes:
        kind: the name `open_executor` knows the executor by ("local", "ray").
        workers: how many CPU slots run tasks at once.
    """

    kind: ClassVar[str]
    workers: int

    @abstractmethod
    def submit(self, task: Task) -> TaskHandle:
        """Queue a task and return its handle at once.

        Raises:
            InvalidArgument: the task can never run here (more resources than exist, a
                function that does not pickle), or the executor is shut down.
        """

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting tasks; with `wait`, finish the queued ones first, else cancel them."""

    def check(self, task: Task) -> None:  # noqa: B027 - an optional hook, not abstract
        """Refuse a task that can never run on this executor (raise InvalidArgument)."""

    def map(self, tasks: Sequence[Task], *, fail_fast: bool = True) -> list[Any]:
        """Run tasks in parallel and return their results in the order of `tasks`.

        Every task is checked before any is submitted, so an impossible task costs nothing.
        With `fail_fast`, the first failure cancels the tasks still queued or running and is
        raised; without it, every task runs to the end and then the first failure in task
        order is raised.
        """
        for task in tasks:
            self.check(task)
        handles = [self.submit(task) for task in tasks]
        try:
            for handle in self.as_completed(handles) if fail_fast else handles:
                error = handle.exception()  # waits for this one
                if fail_fast and error is not None:
                    raise error
            return [handle.result() for handle in handles]
        finally:
            for handle in handles:
                handle.cancel()

    def as_completed(
        self, handles: Iterable[TaskHandle], timeout: float | None = None
    ) -> Iterator[TaskHandle]:
        """Yield handles as their tasks complete (successfully or not).

        Raises:
            TimeoutError: `timeout` seconds passed before every handle completed.
        """
        pending = list(handles)
        finished: queue.SimpleQueue[TaskHandle] = queue.SimpleQueue()
        for handle in pending:
            handle.add_done_callback(finished.put)
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in pending:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                yield finished.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"{len(pending)} tasks not all done after {timeout} s") from None

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # leaving on an error cancels what is queued: nobody will read those results
        self.shutdown(wait=exc_type is None)


def task_failed(task: Task, attempts: int, error: BaseException) -> TaskFailed:
    """Wrap an executor-side error (not a remote one) as the task's failure."""
    failure = TaskFailed(
        f"task {task.label!r} failed on attempt {attempts}: {type(error).__name__}: {error}",
        task=task.label,
        attempts=attempts,
        error_type=type(error).__name__,
        error_message=str(error),
    )
    failure.__cause__ = error
    return failure
