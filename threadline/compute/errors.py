"""Errors of the compute layer: a task failed remotely, ran out of time, or was cancelled.

A task runs in another process (a local worker or a Ray worker), so its exception arrives as
text - the type name, the message and the remote traceback - and, when it survives pickling,
as the original exception object, which becomes `__cause__` so that `except ValueError`
handlers further up still see it through `err.__cause__`.
"""

from __future__ import annotations

from threadline.errors import ThreadlineError


class TaskFailed(ThreadlineError):
    """A task raised, or its worker died, on every attempt it was allowed.

    Attributes:
        task: the task's name (its function's qualified name when it has none).
        attempts: how many times it ran, retries included.
        error_type: the remote exception's type name (`WorkerDied` when the process died).
        error_message: the remote exception's message.
        detail: the remote traceback text (empty when there is none, e.g. a killed worker).
    """

    def __init__(
        self,
        message: str,
        *,
        task: str,
        attempts: int,
        error_type: str,
        error_message: str,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.task = task
        self.attempts = attempts
        self.error_type = error_type
        self.error_message = error_message
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only fields: the default Exception pickling would lose them
        return (_rebuild, (type(self), self.args[0] if self.args else "", self.__dict__.copy()))


def _rebuild(cls: type[TaskFailed], message: str, fields: dict[str, object]) -> TaskFailed:
    error = cls.__new__(cls)
    ThreadlineError.__init__(error, message)
    error.__dict__.update(fields)
    return error


class TaskTimeout(TaskFailed):
    """A task ran past its `timeout_s` on its last attempt; its worker was killed."""


class TaskCancelled(ThreadlineError):
    """The task was cancelled (by `cancel()`, `fail_fast` or `shutdown`) before it finished.

    Attributes:
        task: the task's name.
    """

    def __init__(self, message: str, *, task: str = "") -> None:
        super().__init__(message)
        self.task = task


__all__ = ["TaskCancelled", "TaskFailed", "TaskTimeout"]
