"""The store lock: writers share it, garbage collection takes it alone.

A commit holds the shared lock from its first "is this chunk already stored?" question until
its branch pointer has moved, so gc can never delete an object that a commit in flight is
relying on. The lock file records the holder's pid, host and command so a stuck lock can be
diagnosed; the kernel releases a dead holder's lock by itself (flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING

from threadline.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class StoreLock:
    """A reader-writer lock on a file.

    Args:
        path: the lock file (created if missing).
        timeout: seconds to wait before raising LockTimeout.
    """

    def __init__(self, path: Path, timeout: float = 600.0) -> None:
        self.path = path
        self.timeout = timeout

    def owner(self) -> dict[str, object]:
        """What the last exclusive holder wrote about itself (empty if nothing)."""
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    @contextlib.contextmanager
    def _hold(self, mode: int, what: str) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.timeout
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        owner = self.owner()
                        raise LockTimeout(
                            f"could not {what}: {self.path} is held by pid {owner.get('pid', '?')} "
                            f"on {owner.get('host', '?')} ({owner.get('command', '?')}); wait for "
                            "it to finish, or stop that process"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
            if mode == fcntl.LOCK_EX:
                info = {"pid": os.getpid(), "host": socket.gethostname(),
                        "command": " ".join(sys.argv)[:500], "since": time.time()}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by writers (commits); many at once."""
        return self._hold(fcntl.LOCK_SH, "start writing")

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by garbage collection; waits until no writer is active."""
        return self._hold(fcntl.LOCK_EX, "start garbage collection")
