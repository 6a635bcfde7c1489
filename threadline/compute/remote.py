"""The two ends of one attempt: running a task in a worker, and turning its outcome into errors.

Both executors run the same `invoke` in the worker, so an exception crosses the process
boundary the same way whatever carried it: as a `RemoteError` with the type name, message
and traceback text, plus the exception itself pickled separately. Pickling the exception on
its own means an exception that does not pickle (or does not unpickle: a custom class whose
`__init__` takes other arguments) still reports its type, message and traceback.

Trust: the pickled bytes handled here come only from worker processes this executor started
(a private pipe) or from the Ray cluster the caller chose to run code on; the caller already
trusts those with arbitrary code. Nothing here reads pickles from users, files or the network.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadline.compute.errors import TaskFailed, TaskTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from threadline.compute.base import Task, TaskHandle

__all__ = ["RemoteError", "failure", "invoke", "timeout_failure", "worker_died"]


@dataclass(frozen=True)
class RemoteError:
    """An exception raised in a worker, in a form that always pickles.

    Attributes:
        error_type: the exception's type, qualified by module unless it is a builtin.
        message: `str(exception)`.
        traceback: the formatted remote traceback.
        pickled: the exception pickled, or None if it would not pickle.
    """

    error_type: str
    message: str
    traceback: str = ""
    pickled: bytes | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> RemoteError:
        """Describe `exc` (called in the worker, inside the except block)."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        try:
            pickled: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any pickling failure just drops the object
            pickled = None
        return cls(name, str(exc), "".join(traceback.format_exception(exc)), pickled)

    def exception(self) -> BaseException | None:
        """The original exception, if it survives the round trip."""
        if self.pickled is None:
            return None
        try:
            # trusted bytes: written by our own worker (see the module docstring)
            value = pickle.loads(self.pickled)  # noqa: S301
        except Exception:  # noqa: BLE001 - an exception that cannot be rebuilt is reported as text
            return None
        return value if isinstance(value, BaseException) else None


def invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
    """Run one attempt in the worker: `(True, result)` or `(False, RemoteError)`.

    SystemExit is caught too: a task calling `sys.exit()` fails that task, it does not end
    the worker. KeyboardInterrupt is left alone so that a worker can still be interrupted.
    """
    try:
        return True, fn(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - every failure goes back to the caller
        return False, RemoteError.from_exception(exc)


def failure(
    task: Task, attempts: int, remote: RemoteError, *, cls: type[TaskFailed] = TaskFailed
) -> TaskFailed:
    """The error a caller sees for a remote failure, with the original as `__cause__`."""
    error = cls(
        f"task {task.label!r} failed after {attempts} attempt{'s' if attempts != 1 else ''}: "
        f"{remote.error_type}: {remote.message}",
        task=task.label,
        attempts=attempts,
        error_type=remote.error_type,
        error_message=remote.message,
        detail=remote.traceback,
    )
    if remote.traceback:
        # shown under the local traceback when the error is printed, never part of str()
        error.add_note(f"remote traceback of {task.label!r}:\n{remote.traceback.rstrip()}")
    cause = remote.exception()
    if cause is not None:
        error.__cause__ = cause
    return error


def worker_died(description: str) -> RemoteError:
    """A worker process that ended while running the task (killed, segfault, `os._exit`)."""
    return RemoteError("WorkerDied", f"the worker running it died ({description}); "
                       "see the worker's output for why (out of memory, a crash in native code)")


def timeout_failure(task: Task, attempts: int) -> TaskTimeout:
    """The error for a task whose last attempt ran past `timeout_s`."""
    remote = RemoteError("TaskTimeout", f"ran longer than timeout_s={task.timeout_s} s; its worker was "
                         "killed (raise Task.timeout_s or split the work)")
    error = failure(task, attempts, remote, cls=TaskTimeout)
    assert isinstance(error, TaskTimeout)
    return error


def retry_or_fail(handle: TaskHandle, remote: RemoteError | None) -> bool:
    """After a failed attempt: True if the task has retries left (the caller re-queues it),
    else fail its handle with TaskFailed, or TaskTimeout when `remote` is None (timed out).
    A handle already done (cancelled meanwhile) is left alone and not retried."""
    if handle.done():
        return False
    if handle.attempts <= handle.task.retries:
        return True
    if remote is None:
        handle._set_error(timeout_failure(handle.task, handle.attempts))
    else:
        handle._set_error(failure(handle.task, handle.attempts, remote))
    return False
