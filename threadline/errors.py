"""The exception hierarchy: one root, one subclass per kind of failure.

Every message says what failed and what to do next. `HTTP_STATUS` maps each kind to the status
code the servers answer with, so the mapping lives in one place.
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Root of every error Threadline raises on purpose."""

    exit_code: int = 1


class InvalidArgument(ThreadlineError, ValueError):
    """A name, ref, path or option given by the user is malformed or not allowed."""

    exit_code = 2


class NotFound(ThreadlineError, LookupError):
    """A repo, ref, commit, path or object does not exist."""

    exit_code = 3


class AlreadyExists(ThreadlineError):
    """Something with that name exists already."""

    exit_code = 4


class Conflict(ThreadlineError):
    """A concurrent writer got there first (a compare-and-swap lost).

    Attributes:
        repo: the data repo, when the conflict is about a branch.
        branch: the branch that moved.
        winner: the commit id the branch points at now.
    """

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        repo: str | None = None,
        branch: str | None = None,
        winner: str | None = None,
    ) -> None:
        super().__init__(message)
        self.repo = repo
        self.branch = branch
        self.winner = winner


class IntegrityError(ThreadlineError):
    """Stored bytes do not match their hash, or a record that must exist is missing.

    Attributes:
        key: the object (hash) or record that failed the check.
    """

    exit_code = 6

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class StorageError(ThreadlineError, OSError):
    """The operating system or a storage service refused an operation (disk full, I/O error).

    Attributes:
        path: the file or key the failed operation touched.
    """

    exit_code = 7

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class LockTimeout(ThreadlineError):
    """Another process holds a lock for longer than we were willing to wait."""

    exit_code = 8


class Unauthorized(ThreadlineError):
    """The caller is not allowed to do this."""

    exit_code = 9


class NotInitialized(NotFound):
    """No Threadline home was found from the working folder."""


HTTP_STATUS: dict[type[ThreadlineError], int] = {
    InvalidArgument: 400,
    Unauthorized: 401,
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    LockTimeout: 503,
    IntegrityError: 500,
    StorageError: 507,
}


def http_status(error: ThreadlineError) -> int:
    """Return the HTTP status code for an error, walking its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
