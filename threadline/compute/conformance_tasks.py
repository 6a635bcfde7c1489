"""Task functions the executor conformance suite ships to workers.

They live in an importable module of the package (not in a test file) because a task's
function is pickled by reference: every worker - a local process or a Ray worker on another
machine - must be able to import it. Tests coordinate with them through files in a temporary
folder, never through timing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

#: how long a task waits for a partner task's file before concluding it never ran alongside
MEET_TIMEOUT_S = 60.0


class Unrebuildable(Exception):
    """An exception that pickles but does not unpickle (its __init__ needs two arguments)."""

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"{left}/{right}")


def add(a: int, b: int = 0) -> int:
    """a + b."""
    return a + b


def square(x: int) -> int:
    """x * x."""
    return x * x


def echo(value: object) -> object:
    """Return the argument unchanged (a round trip through both pickling directions)."""
    return value


def digest(blob: bytes) -> str:
    """BLAKE2b of the bytes (checks a large argument arrived intact without shipping it back)."""
    return hashlib.blake2b(blob).hexdigest()


def make_bytes(size: int, seed: int) -> bytes:
    """`size` reproducible pseudo-random bytes (a large result)."""
    import random

    return random.Random(seed).randbytes(size)  # noqa: S311 - test data, not secrets


def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def fail_unrebuildable() -> None:
    """Raise an exception that cannot be rebuilt on the caller's side."""
    raise Unrebuildable("left", "right")


def call_sys_exit(code: int) -> None:
    """Call sys.exit: the task fails, the worker survives."""
    sys.exit(code)


def unpicklable_result() -> object:
    """Return something that cannot be pickled back to the caller."""
    import threading

    return threading.Lock()


def _bump(counter: Path) -> int:
    """Add one to the count in a file and return it (each attempt runs in its own process)."""
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    return count


def fail_until(counter: str, failures: int) -> int:
    """Raise on the first `failures` calls (counted in file `counter`), then return the count."""
    count = _bump(Path(counter))
    if count <= failures:
        raise RuntimeError(f"attempt {count} fails on purpose")
    return count


def die(code: int = 3) -> None:
    """End the worker process at once, skipping all cleanup (like a crash in native code)."""
    os._exit(code)


def die_until(counter: str, deaths: int) -> int:
    """Kill the worker on the first `deaths` calls (counted in file `counter`), then return the count."""
    count = _bump(Path(counter))
    if count <= deaths:
        os.kill(os.getpid(), signal.SIGKILL)
    return count


def kill_self() -> None:
    """SIGKILL the worker process (what the kernel's out-of-memory killer does)."""
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_for(seconds: float) -> float:
    """Sleep, then return the seconds slept (a task that outlives its timeout)."""
    time.sleep(seconds)
    return seconds


def worker_pid() -> int:
    """The worker's process id."""
    return os.getpid()


def meet(folder: str, me: str, other: str) -> bool:
    """Write file `me`, then wait for file `other`: both tasks return only if they run at once.

    Raises:
        TimeoutError: the other task did not start within MEET_TIMEOUT_S (they ran one by one).
    """
    root = Path(folder)
    (root / me).write_text("here")
    deadline = time.monotonic() + MEET_TIMEOUT_S
    while not (root / other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started while {me} was running")
        time.sleep(0.01)
    return True


def occupy(folder: str, me: str, hold_s: float = 0.3) -> list[str]:
    """Mark `me` as running for `hold_s` seconds; return the other tasks seen running meanwhile."""
    running = Path(folder)
    running.mkdir(parents=True, exist_ok=True)
    marker = running / me
    marker.write_text("running")
    seen = {p.name for p in running.iterdir()}
    time.sleep(hold_s)
    seen |= {p.name for p in running.iterdir()}
    marker.unlink()
    return sorted(seen - {me})


def burn(iterations: int) -> int:
    """A pure-Python CPU-bound loop (holds the GIL, so only processes run it in parallel)."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def segfault() -> None:
    """Crash the worker with SIGSEGV, as a bug in native code would."""
    import ctypes

    ctypes.string_at(0)
