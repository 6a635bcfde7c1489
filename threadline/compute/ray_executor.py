"""Run tasks on a Ray cluster - an existing one at `address`, or a local one started for us.

Ray is imported when a `RayExecutor` is created, never when this module is imported, so
`import threadline.compute` stays light and works without the `ray` extra.

The semantics are the local executor's, not Ray's defaults, so that code moves between the two
unchanged:

- Retries are counted here for every kind of failure (an exception, a dead worker, a timeout):
  each Ray task is submitted with `max_retries=0` and the driver thread resubmits. Ray's own
  `max_retries` would retry a dead worker invisibly, so `attempts` would be wrong and a task
  would get more attempts than `Task.retries` allows.
- Exceptions are caught inside the worker by the same `invoke` the local workers run, so a
  failure arrives as the same `TaskFailed` with the remote traceback in `.detail`.
- Admission: at most `workers` CPU slots' worth of tasks are in flight, checked by the driver
  (the cluster may be bigger than the share this executor should use); within that Ray places
  each task by its `num_cpus`, `num_gpus` and `memory`.
- `timeout_s` is enforced by the driver: on expiry it calls `ray.cancel(force=True)`, which
  kills the worker process running the task.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadline.compute.base import Executor, Task, TaskHandle
from threadline.compute.errors import TaskCancelled
from threadline.compute.remote import RemoteError, failure, invoke, retry_or_fail, worker_died
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

_EPS = 1e-9
#: how often the driver thread polls Ray while tasks are in flight (Ray cannot be woken up)
_POLL_S = 0.02
INSTALL_HINT = "the ray executor needs Ray: pip install 'threadline[ray]'"


def _ray_invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
    """What each Ray task runs: the same envelope as a local worker's."""
    return invoke(fn, args, kwargs)


def import_ray() -> ModuleType:
    """Import Ray, or raise InvalidArgument saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InvalidArgument(INSTALL_HINT) from exc
    return ray


@dataclass(eq=False)
class _Job:
    handle: TaskHandle
    ref: Any = None  # the ObjectRef of the running attempt
    deadline: float | None = None


class RayExecutor(Executor):
    """Runs tasks on Ray.

    Args:
        address: a running cluster ("ray://host:10001" or "host:6379", or "auto"); None
            starts a local cluster for this executor and stops it at `shutdown`.
        workers: CPU slots this executor uses at once; default: all the cluster's CPUs (for
            a local cluster: `os.cpu_count()`, and the cluster gets exactly that many).
        init_options: extra keyword arguments for `ray.init` (e.g. `runtime_env`).

    If Ray is already initialised in this process the executor uses that connection and
    leaves it open at `shutdown`. A cluster with token authentication (Ray's default for
    clusters it starts) needs RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN,
    or the file ~/.ray/auth_token) in this process's environment; without them Ray keeps
    retrying the connection for minutes before it fails.
    """

    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        *,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidArgument(f"RayExecutor(workers={workers!r}): must be an int >= 1")
        ray = import_ray()
        self._ray = ray
        self._owns_connection = not ray.is_initialized()
        if not self._owns_connection and init_options:
            # the job's options (its runtime_env: the shipped code) were fixed by whoever connected
            log.warning("Ray is already initialised in this process: ignoring init_options %s",
                        sorted(init_options))
        if self._owns_connection:
            options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            if address is None:
                # "local" starts a new cluster even when RAY_ADDRESS points at another one
                options.update(address="local", num_cpus=workers or os.cpu_count() or 1,
                               include_dashboard=False)
            else:
                options.update(address=address)
            options.update(init_options or {})
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                if address is None:
                    raise InvalidArgument(f"cannot start a local Ray cluster: {exc}") from exc
                raise InvalidArgument(f"cannot connect to the Ray cluster at {address!r}: {exc}; start it "
                                      "with `ray start --head` or check the address") from exc
        self.address = address
        total = ray.cluster_resources()
        self._cluster_cpus = float(total.get("CPU", 0))
        self._cluster_gpus = float(total.get("GPU", 0))
        self._cluster_memory_mb = int(total.get("memory", 0)) // (1 << 20)
        self.workers = workers or max(1, int(self._cluster_cpus))
        self._remote = ray.remote(_ray_invoke)
        self._free_cpus = float(self.workers)
        self._lock = threading.Condition()
        self._pending: deque[_Job] = deque()  # guarded by _lock
        self._to_cancel: set[TaskHandle] = set()  # guarded by _lock
        self._closing = False  # guarded by _lock
        self._running: list[_Job] = []  # only the driver thread touches this
        self._thread = threading.Thread(target=self._run, name="threadline-ray-executor", daemon=True)
        self._thread.start()

    def machine_count(self) -> int:
        """How many machines the cluster's live nodes are on (by node address)."""
        return len({node["NodeManagerAddress"] for node in self._ray.nodes() if node.get("Alive")})

    def __repr__(self) -> str:
        return f"<RayExecutor address={self.address!r} workers={self.workers}>"

    # -- caller side ---------------------------------------------------------------------

    def check(self, task: Task) -> None:
        """Refuse a task whose resources exceed this executor's share or the whole cluster."""
        need, cpu_limit = task.resources, min(float(self.workers), self._cluster_cpus)
        advice = "lower its Resources or add nodes to the cluster"
        if need.cpus > cpu_limit + _EPS:
            raise InvalidArgument(f"task {task.label!r} asks for cpus={need.cpus} but this ray executor "
                                  f"({self.workers} workers, {self._cluster_cpus:g} CPUs in the cluster) "
                                  f"can give at most {cpu_limit:g}; {advice}")
        if need.gpus > self._cluster_gpus + _EPS:
            raise InvalidArgument(f"task {task.label!r} asks for gpus={need.gpus} but the Ray cluster has "
                                  f"{self._cluster_gpus:g} GPUs; {advice}")
        if need.memory_mb is not None and need.memory_mb > self._cluster_memory_mb:
            raise InvalidArgument(f"task {task.label!r} asks for memory_mb={need.memory_mb} but the Ray "
                                  f"cluster has {self._cluster_memory_mb} MB for tasks; {advice}")

    def submit(self, task: Task) -> TaskHandle:
        """Queue a task; see `Executor.submit`."""
        self.check(task)
        handle = TaskHandle(task, self._cancel)
        with self._lock:
            if self._closing:
                raise InvalidArgument("this RayExecutor is shut down; open a new one with "
                                      "open_executor('ray')")
            self._pending.append(_Job(handle))
            self._lock.notify_all()
        return handle

    def shutdown(self, wait: bool = True) -> None:
        """Stop; with `wait` finish queued tasks first. Disconnects, and stops a cluster we started."""
        cancelled: list[TaskHandle] = []
        with self._lock:
            already = self._closing
            self._closing = True
            if not wait:
                cancelled = [job.handle for job in self._pending]
                self._pending.clear()
                self._to_cancel.update(job.handle for job in self._running)
                cancelled.extend(self._to_cancel)
            self._lock.notify_all()
        for handle in cancelled:
            handle._set_error(TaskCancelled(f"task {handle.task.label!r} was cancelled by shutdown",
                                            task=handle.task.label))
        if threading.current_thread() is not self._thread:
            self._thread.join()
        if not already and self._owns_connection:
            self._ray.shutdown()

    def _cancel(self, handle: TaskHandle) -> bool:
        with self._lock:
            queued = next((job for job in self._pending if job.handle is handle), None)
            if queued is not None:
                self._pending.remove(queued)
            else:
                self._to_cancel.add(handle)
            self._lock.notify_all()
        label = handle.task.label
        return handle._set_error(TaskCancelled(f"task {label!r} was cancelled", task=label))

    # -- driver thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # fail every task rather than leave its caller waiting forever
            log.exception("the ray executor's driver thread crashed")
            with self._lock:
                self._closing = True
                stranded = [job.handle for job in self._pending] + [job.handle for job in self._running]
                self._pending.clear()
            lost = RemoteError("DriverCrashed", f"the ray executor's driver thread crashed ({exc!r}); "
                               "open a new executor")
            for handle in stranded:
                handle._set_error(failure(handle.task, handle.attempts, lost))

    def _step(self) -> bool:
        ray = self._ray
        with self._lock:
            if not self._running:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if self._closing and not self._pending:
                    return False
            starting = []
            while self._pending:
                need = self._pending[0].handle.task.resources
                if need.cpus > self._free_cpus + _EPS:
                    break  # first come, first served
                starting.append(self._pending.popleft())
                self._free_cpus -= need.cpus
            cancels, self._to_cancel = self._to_cancel, set()
        for job in starting:
            self._start(job)
        now = time.monotonic()
        for job in list(self._running):
            if job.handle in cancels:
                self._stop(job)
            elif job.deadline is not None and now >= job.deadline:
                self._stop(job)
                self._attempt_failed(job, None)
        if not self._running:
            return True
        deadlines = [j.deadline - now for j in self._running if j.deadline is not None]
        wait_s = max(0.0, min([_POLL_S, *deadlines]))
        refs = [job.ref for job in self._running]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s, fetch_local=False)
        for ref in ready:
            job = next(j for j in self._running if j.ref == ref)
            self._finish(job)
        return True

    def _start(self, job: _Job) -> None:
        task = job.handle.task
        need = task.resources
        options: dict[str, Any] = {"num_cpus": need.cpus, "num_gpus": need.gpus, "max_retries": 0,
                                   "retry_exceptions": False, "name": task.label}
        if need.memory_mb is not None:
            options["memory"] = need.memory_mb * (1 << 20)
        try:
            job.ref = self._remote.options(**options).remote(task.fn, task.args, dict(task.kwargs))
        except Exception as exc:  # noqa: BLE001 - e.g. the function or an argument does not serialize
            self._free_cpus += need.cpus
            job.handle._start_attempt()
            job.handle._set_error(failure(task, job.handle.attempts, RemoteError.from_exception(exc)))
            return
        job.handle._start_attempt()
        job.deadline = None if task.timeout_s is None else time.monotonic() + task.timeout_s
        self._running.append(job)

    def _release(self, job: _Job) -> None:
        self._running.remove(job)
        self._free_cpus += job.handle.task.resources.cpus

    def _stop(self, job: _Job) -> None:
        """Kill the attempt's worker (a queued attempt is just dropped)."""
        self._release(job)
        try:
            self._ray.cancel(job.ref, force=True)
        except Exception:  # it finished or failed meanwhile: nothing left to kill
            log.debug("ray.cancel of %s failed", job.handle, exc_info=True)

    def _finish(self, job: _Job) -> None:
        """Fetch a finished attempt's outcome and complete, retry or fail the task."""
        self._release(job)
        exceptions = self._ray.exceptions
        try:
            ok, value = self._ray.get(job.ref)
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError) as exc:
            ok, value = False, worker_died(str(exc).strip().splitlines()[0])
        except exceptions.RayTaskError as exc:
            # the wrapper itself failed in the worker: the function or an argument did not load
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            ok, value = False, RemoteError(type(cause).__name__, str(cause), str(exc))
        except Exception as exc:  # noqa: BLE001 - any other Ray error fails this attempt
            ok, value = False, RemoteError(type(exc).__name__, str(exc))
        if ok:
            job.handle._set_result(value)
        else:
            self._attempt_failed(job, value)

    def _attempt_failed(self, job: _Job, remote: RemoteError | None) -> None:
        if retry_or_fail(job.handle, remote):
            job.ref, job.deadline = None, None
            with self._lock:
                self._pending.appendleft(job)
