"""The default executor: a pool of local worker processes with per-task timeouts and killing.

`concurrent.futures.ProcessPoolExecutor` cannot stop one running task (it can only be torn
down whole, and a worker that dies breaks the entire pool), so this is a small scheduler over
`multiprocessing` instead: one long-lived worker process per slot, each with a private pipe,
and one scheduler thread that admits tasks, ships them, collects results and replaces any
worker that dies or is killed for a timeout or a cancel. A task submitted while a worker is
idle and the scheduler is waiting is shipped by the submitting thread itself: one process
wakes up (the worker) rather than two in turn (the scheduler, then the worker).

Start method: `forkserver` where the platform has it, else `spawn`; never `fork`. The
scheduler thread (and whatever threads the caller runs) would be copied mid-flight by `fork`,
with any lock they held at that instant held forever in the child. A forkserver forks
workers from a small single-threaded server process instead, which is as safe as `spawn` but
replaces a killed worker in milliseconds rather than re-starting an interpreter.

Preloading: `preload` names modules the forkserver imports once, when it starts, so every
worker forked from it (in this pool, and in any pool this process opens later) begins with
them imported instead of spending a third of a second importing the data layer before its
first task. The forkserver is one per process: modules asked for after it started take
effect only in a process that has not started it yet.

Admission: the pool has `workers` CPU slots (and the GPUs CUDA reports). A task is started,
first come first served, when a worker is idle and its `Resources` fit in what is free, so a
task with cpus=2 on a 2-worker pool runs alone. A task that could never fit is refused by
`submit` with InvalidArgument rather than queued forever.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_any
from typing import TYPE_CHECKING, Any, cast

from threadline.compute.base import Executor, Task, TaskHandle
from threadline.compute.errors import TaskCancelled
from threadline.compute.remote import RemoteError, failure, invoke, retry_or_fail, worker_died
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

__all__ = ["LocalExecutor"]

log = logging.getLogger(__name__)

#: slack for summing fractional CPU claims (0.1 + 0.2 != 0.3)
_EPS = 1e-9


def _worker_main(conn: Connection) -> None:
    """A worker's whole life: receive a pickled task, run it, send the outcome; until EOF."""
    # Ctrl-C belongs to the parent, which cancels and kills workers itself; a worker that
    # also got SIGINT would print a second traceback and die mid-task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What the forkserver imported (the preloaded modules) lives as long as the worker:
    # keeping it out of collections makes a full collection tens of milliseconds cheaper and
    # leaves the pages shared with the forkserver uncopied.
    gc.freeze()
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe: shut down
        try:
            # trusted: pickled by the parent process that started this worker
            fn, args, kwargs = pickle.loads(payload)  # noqa: S301
            outcome = invoke(fn, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. the function's module does not import here
            outcome = (False, RemoteError.from_exception(exc))
        del payload
        try:
            conn.send(outcome)
        except Exception as exc:  # noqa: BLE001 - the result does not pickle; nothing was written
            conn.send((False, RemoteError.from_exception(exc)))


def _preload(ctx: ForkServerContext, modules: Sequence[str]) -> None:
    """Add `modules` to what the forkserver imports when it starts (keeping `__main__` and others)."""
    from multiprocessing import forkserver

    current = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    ctx.set_forkserver_preload(current + [m for m in modules if m not in current])


def prestart(preload: Sequence[str] = ()) -> None:
    """Start this process's forkserver now, importing `preload`, so that a pool opened later
    forks its workers at once: a command line that will need workers calls this first and
    the server's imports run beside its own. Does nothing where there is no forkserver."""
    if _default_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    if preload:
        _preload(multiprocessing.get_context("forkserver"), preload)
    forkserver.ensure_running()


def _default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _detect_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else NVIDIA device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))


def _total_memory_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return None


def _exit_description(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"pid {process.pid} killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"pid {process.pid} killed by signal {-code}"
    return f"pid {process.pid} exited with code {code}"


@dataclass(eq=False)
class _Job:
    handle: TaskHandle
    payload: bytes
    deadline: float | None = None


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    job: _Job | None = None


class LocalExecutor(Executor):
    """Runs tasks in a pool of local worker processes (the default executor).

    Args:
        workers: worker processes, i.e. CPU slots; default `os.cpu_count()`.
        start_method: "forkserver" (default where available) or "spawn".
        preload: modules the forkserver imports before forking workers (see the module notes).

    Example::

        with LocalExecutor(workers=2) as pool:
            squares = pool.map([Task(pow, (n, 2)) for n in range(10)])
    """

    kind = "local"

    def __init__(self, workers: int | None = None, *, start_method: str | None = None,
                 preload: Sequence[str] = ()) -> None:
        machine_cpus = os.cpu_count() or 1
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidArgument(f"LocalExecutor(workers={workers!r}): must be an int >= 1")
        method = start_method or _default_start_method()
        if method not in ("forkserver", "spawn"):
            raise InvalidArgument(f"start_method={method!r}: use 'forkserver' or 'spawn' (fork is unsafe "
                                  "with threads)")
        self.workers = workers or machine_cpus
        self.start_method = method
        self._ctx = cast("ForkServerContext | SpawnContext", multiprocessing.get_context(method))
        if method == "forkserver" and preload:
            _preload(cast("ForkServerContext", self._ctx), preload)
        self._machine_cpus = machine_cpus
        self._gpus = _detect_gpus()
        self._memory_mb = _total_memory_mb()
        self._free_cpus = float(self.workers)
        self._free_gpus = float(self._gpus)
        self._lock = threading.Lock()
        self._pending: deque[_Job] = deque()  # guarded by _lock
        self._to_kill: set[TaskHandle] = set()  # guarded by _lock: running tasks cancelled
        self._closing = False  # guarded by _lock
        self._pipe_closed = False  # guarded by _lock
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Started on demand, up to `workers`, by the scheduler thread: a run that needs one
        # process does not wait for the others' forks. The workers, their jobs and the free
        # resources are guarded by _state, which the scheduler holds except while it waits
        # (a submitting thread that gets it ships a task to an idle worker itself).
        self._workers: list[_Worker] = []
        self._state = threading.RLock()
        self._thread = threading.Thread(target=self._run, name="threadline-local-executor", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<LocalExecutor workers={self.workers} start_method={self.start_method}>"

    # -- caller side ---------------------------------------------------------------------

    def check(self, task: Task) -> None:
        """Refuse a task whose resources exceed this pool or this machine."""
        need, cpu_limit = task.resources, min(self.workers, self._machine_cpus)
        where = f"this local executor ({self.workers} workers on a machine with {self._machine_cpus} CPUs"
        advice = "lower its Resources, or run it on a cluster with open_executor('ray', address=...)"
        if need.cpus > cpu_limit + _EPS:
            raise InvalidArgument(f"task {task.label!r} asks for cpus={need.cpus} but {where}) can give "
                                  f"at most {cpu_limit}; {advice}")
        if need.gpus > self._gpus + _EPS:
            raise InvalidArgument(f"task {task.label!r} asks for gpus={need.gpus} but {where} and "
                                  f"{self._gpus} GPUs) has {self._gpus}; {advice}")
        if need.memory_mb is not None and self._memory_mb is not None and need.memory_mb > self._memory_mb:
            raise InvalidArgument(f"task {task.label!r} asks for memory_mb={need.memory_mb} but this "
                                  f"machine has {self._memory_mb} MB; {advice}")

    def submit(self, task: Task) -> TaskHandle:
        """Queue a task; see `Executor.submit`."""
        self.check(task)
        try:
            payload = pickle.dumps((task.fn, task.args, dict(task.kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # lambdas, closures, locks, open files...
            raise InvalidArgument(f"task {task.label!r} does not pickle ({exc}); its function must be "
                                  "defined at the top level of a module and its arguments picklable") from exc
        handle = TaskHandle(task, self._cancel)
        with self._lock:
            if self._closing:
                raise InvalidArgument("this LocalExecutor is shut down; open a new one with open_executor()")
            self._pending.append(_Job(handle, payload))
        if self._state.acquire(blocking=False):  # else the scheduler is busy: it ships it next
            try:
                self._dispatch(spawn=False)
            finally:
                self._state.release()
        self._wake()  # to watch the worker now busy, or to ship the task
        return handle

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool. With `wait`, queued tasks run first; else they and running ones are cancelled."""
        cancelled: list[TaskHandle] = []
        with self._lock:
            self._closing = True
            if not wait:
                cancelled = [job.handle for job in self._pending]
                self._pending.clear()
                self._to_kill.update(w.job.handle for w in self._workers if w.job is not None)
                cancelled.extend(self._to_kill)
        for handle in cancelled:
            handle._set_error(TaskCancelled(f"task {handle.task.label!r} was cancelled by shutdown",
                                            task=handle.task.label))
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _cancel(self, handle: TaskHandle) -> bool:
        with self._lock:
            queued = next((job for job in self._pending if job.handle is handle), None)
            if queued is not None:
                self._pending.remove(queued)
            else:
                self._to_kill.add(handle)  # running (or finishing right now): its worker is killed
        cancelled = handle._set_error(TaskCancelled(f"task {handle.task.label!r} was cancelled",
                                                    task=handle.task.label))
        self._wake()
        return cancelled

    def _wake(self) -> None:
        with self._lock:
            if self._pipe_closed:
                return  # checked under the lock: a closed descriptor number may be reused already
            with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
                os.write(self._wake_w, b"x")

    # -- scheduler thread ----------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child,), name="threadline-worker", daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # fail every task rather than leave its caller waiting forever
            log.exception("the local executor's scheduler crashed")
            with self._lock:
                self._closing = True
                stranded = [job.handle for job in self._pending]
                self._pending.clear()
            with self._state:
                stranded.extend(w.job.handle for w in self._workers if w.job is not None)
            lost = RemoteError("SchedulerCrashed", f"the local executor's scheduler crashed ({exc!r}); "
                               "open a new executor")
            for handle in stranded:
                handle._set_error(failure(handle.task, handle.attempts, lost))
        finally:
            with self._state:
                for worker in self._workers:
                    self._stop(worker, kill=worker.job is not None)
            with self._lock:
                self._pipe_closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _step(self) -> bool:
        """One round: start what fits, wait for an event, handle it. False when shut down."""
        with self._state:
            self._dispatch()
            busy = [w for w in self._workers if w.job is not None]
            with self._lock:
                if self._closing and not self._pending and not busy:
                    return False
            now = time.monotonic()
            deadlines = [w.job.deadline for w in busy if w.job is not None and w.job.deadline is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        watched: list[Any] = [self._wake_r]
        for worker in busy:
            watched += [worker.conn, worker.process.sentinel]
        ready = set(wait_any(watched, timeout))
        if self._wake_r in ready:
            while True:
                try:
                    if not os.read(self._wake_r, 4096):
                        break
                except BlockingIOError:
                    break
        with self._state:
            self._handle(busy, ready)
        return True

    def _handle(self, busy: list[_Worker], ready: set[Any]) -> None:
        """Collect finished tasks and dead workers, kill cancelled and timed-out tasks."""
        for worker in busy:
            if worker.conn in ready or worker.process.sentinel in ready:
                self._collect(worker)
        with self._lock:
            kills, self._to_kill = self._to_kill, set()
        now = time.monotonic()
        for worker in self._workers:  # not only `busy`: a submitting thread may have shipped one since
            job = worker.job
            if job is None:
                continue
            if job.handle in kills:
                self._release(worker)
                self._replace(worker)  # cancelled: the handle is already complete
            elif job.deadline is not None and now >= job.deadline:
                self._release(worker)
                self._replace(worker)
                self._attempt_failed(job, None)

    def _dispatch(self, *, spawn: bool = True) -> None:
        """Start queued tasks, in order, while the next one fits in an idle worker (with
        `spawn`, starting a worker process for it if the pool is not full yet)."""
        while True:
            idle = next((w for w in self._workers if w.job is None), None)
            with self._lock:
                if not self._pending:
                    return
            if idle is None and spawn and len(self._workers) < self.workers:
                idle = self._spawn()
                self._workers.append(idle)
            with self._lock:
                if idle is None or not self._pending:
                    return
                job = self._pending[0]
                need = job.handle.task.resources
                if need.cpus > self._free_cpus + _EPS or need.gpus > self._free_gpus + _EPS:
                    return  # first come, first served: a big task is not starved by small ones
                self._pending.popleft()
            try:
                idle.conn.send_bytes(job.payload)
            except OSError:  # the idle worker had died: replace it, keep the job queued
                self._replace(idle)
                with self._lock:
                    self._pending.appendleft(job)
                continue
            idle.job = job
            self._free_cpus -= need.cpus
            self._free_gpus -= need.gpus
            job.handle._start_attempt()
            timeout = job.handle.task.timeout_s
            job.deadline = None if timeout is None else time.monotonic() + timeout

    def _release(self, worker: _Worker) -> _Job:
        job = worker.job
        assert job is not None
        worker.job = None
        need = job.handle.task.resources
        self._free_cpus += need.cpus
        self._free_gpus += need.gpus
        return job

    def _collect(self, worker: _Worker) -> None:
        """Read a finished task's outcome, or notice that its worker died."""
        outcome: tuple[bool, Any]
        try:
            if not worker.conn.poll():
                raise EOFError
            outcome = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            outcome = (False, worker_died(_exit_description(worker.process)))
        except Exception as exc:  # noqa: BLE001 - the result did not unpickle here
            outcome = (False, RemoteError.from_exception(exc))
        job = self._release(worker)
        if not worker.process.is_alive():
            self._replace(worker)
        ok, value = outcome
        if ok:
            job.handle._set_result(value)
        else:
            self._attempt_failed(job, value)

    def _attempt_failed(self, job: _Job, remote: RemoteError | None) -> None:
        """Retry the task if it has retries left, else fail it (remote None: timed out)."""
        if retry_or_fail(job.handle, remote):
            job.deadline = None
            with self._lock:
                self._pending.appendleft(job)

    def _replace(self, worker: _Worker) -> None:
        """Kill an idle or released worker (if still alive) and put a fresh process in its place."""
        self._stop(worker, kill=True)
        fresh = self._spawn()
        worker.process, worker.conn = fresh.process, fresh.conn

    @staticmethod
    def _stop(worker: _Worker, *, kill: bool) -> None:
        if kill and worker.process.is_alive():
            # SIGKILL: a task may ignore SIGTERM, and Python runs no cleanup on SIGTERM anyway
            worker.process.kill()
        worker.conn.close()  # an idle worker reads EOF and exits
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.process.close()
