"""The conformance suite every Executor passes (like `threadline.storage.conformance`).

An executor's test module subclasses the suite and provides an `executor` fixture that
yields a fresh executor with exactly two CPU slots (the parallelism and admission tests
depend on it), shut down at teardown::

    import pytest

    from threadline.compute.conformance import ExecutorConformance
    from threadline.compute.local import LocalExecutor


    @pytest.fixture
    def executor():
        with LocalExecutor(workers=2) as pool:
            yield pool


    class TestLocalExecutor(ExecutorConformance):
        pass

Nothing here waits on a clock to decide an outcome: tasks coordinate through files in
`tmp_path` (a counter for retries, marker files for a barrier), and a task that must be
stopped sleeps for far longer than the 120 s test timeout, so a missing kill fails the test
instead of slowing it down. The task functions are in `conformance_tasks`, an importable
module, because workers import a task's function by name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from threadline.compute import conformance_tasks as tasks
from threadline.compute.base import Executor, Resources, Task
from threadline.compute.errors import TaskCancelled, TaskFailed, TaskTimeout
from threadline.errors import InvalidArgument, ThreadlineError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ExecutorConformance"]

#: a task that only ends by being killed: longer than any test may run
FOREVER_S = 3600.0
#: every CPU slot of the two-worker executor the suite runs on: such a task runs alone
TWO_CPUS = Resources(cpus=2)


class ExecutorConformance:
    """The behaviour every executor shares; needs an `executor` fixture with two workers."""

    def test_is_an_executor_with_two_workers(self, executor: Executor) -> None:
        assert isinstance(executor, Executor)
        assert executor.kind in ("local", "ray")
        assert executor.workers == 2

    def test_map_returns_results_in_task_order(self, executor: Executor) -> None:
        # the first task finishes last; the results still come back in task order
        work = [Task(tasks.sleep_for, (0.3,))] + [Task(tasks.square, (n,)) for n in range(1, 12)]
        assert executor.map(work) == [0.3] + [n * n for n in range(1, 12)]
        assert executor.map([]) == []

    def test_submit_returns_a_future_like_handle(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.add, (2,), {"b": 40}, name="answer"))
        assert handle.result(timeout=60) == 42
        assert handle.done()
        assert handle.attempts == 1
        assert handle.exception() is None
        assert not handle.cancel()  # finished: nothing to cancel
        assert not handle.cancelled()

    def test_as_completed_yields_every_handle_once(self, executor: Executor) -> None:
        handles = [executor.submit(Task(tasks.square, (n,))) for n in range(6)]
        done = list(executor.as_completed(handles, timeout=60))
        assert sorted(map(id, done)) == sorted(map(id, handles))
        assert sorted(h.result() for h in done) == [n * n for n in range(6)]

    def test_exception_becomes_task_failed_with_remote_traceback(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.fail, ("boom 17",), name="exploder"))
        with pytest.raises(TaskFailed, match=r"task 'exploder' failed after 1 attempt: ValueError: boom 17"):
            handle.result()
        error = handle.exception()
        assert isinstance(error, TaskFailed)
        assert not isinstance(error, TaskTimeout)
        assert (error.task, error.attempts, error.error_type, error.error_message) == (
            "exploder", 1, "ValueError", "boom 17")
        assert "conformance_tasks.py" in error.detail
        assert "raise ValueError(message)" in error.detail
        assert isinstance(error.__cause__, ValueError)
        assert str(error.__cause__) == "boom 17"
        assert isinstance(error, ThreadlineError)

    def test_exception_that_cannot_be_rebuilt_still_reports_type_and_message(
        self, executor: Executor
    ) -> None:
        with pytest.raises(TaskFailed, match="Unrebuildable: left/right") as info:
            executor.submit(Task(tasks.fail_unrebuildable)).result()
        assert info.value.error_type == "threadline.compute.conformance_tasks.Unrebuildable"
        assert "fail_unrebuildable" in info.value.detail
        assert info.value.__cause__ is None

    def test_sys_exit_fails_the_task_not_the_executor(self, executor: Executor) -> None:
        with pytest.raises(TaskFailed, match="SystemExit: 4"):
            executor.submit(Task(tasks.call_sys_exit, (4,))).result()
        assert executor.submit(Task(tasks.square, (3,))).result() == 9

    def test_unpicklable_result_fails_the_task(self, executor: Executor) -> None:
        with pytest.raises(TaskFailed, match="pickle"):
            executor.submit(Task(tasks.unpicklable_result)).result()
        assert executor.submit(Task(tasks.square, (4,))).result() == 16

    def test_retries_count_attempts(self, executor: Executor, tmp_path: Path) -> None:
        counter = tmp_path / "count"
        handle = executor.submit(Task(tasks.fail_until, (str(counter), 2), retries=2))
        assert handle.result() == 3
        assert handle.attempts == 3

    def test_retries_exhausted_raise_the_last_failure(self, executor: Executor, tmp_path: Path) -> None:
        counter = tmp_path / "count"
        handle = executor.submit(Task(tasks.fail_until, (str(counter), 5), retries=1))
        with pytest.raises(TaskFailed, match="after 2 attempts: RuntimeError: attempt 2 fails on purpose"):
            handle.result()
        assert handle.attempts == 2
        assert counter.read_text() == "2"

    @pytest.mark.parametrize("how", ["os_exit", "sigkill", "segfault"])
    def test_dead_worker_fails_the_task_and_the_executor_goes_on(self, executor: Executor, how: str) -> None:
        fn = {"os_exit": tasks.die, "sigkill": tasks.kill_self, "segfault": tasks.segfault}[how]
        handle = executor.submit(Task(fn, name="doomed"))
        with pytest.raises(TaskFailed, match=r"task 'doomed' failed after 1 attempt: WorkerDied: "):
            handle.result()
        assert handle.exception().error_type == "WorkerDied"  # type: ignore[union-attr]
        assert executor.map([Task(tasks.square, (n,)) for n in range(4)]) == [0, 1, 4, 9]

    def test_dead_worker_is_retried(self, executor: Executor, tmp_path: Path) -> None:
        handle = executor.submit(Task(tasks.die_until, (str(tmp_path / "deaths"), 1), retries=1))
        assert handle.result() == 2
        assert handle.attempts == 2

    def test_timeout_kills_the_task_and_the_executor_goes_on(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.sleep_for, (FOREVER_S,), name="sleeper", timeout_s=0.5))
        with pytest.raises(TaskTimeout, match=re.escape("task 'sleeper' failed after 1 attempt: TaskTimeout: "
                                                        "ran longer than timeout_s=0.5 s")):
            handle.result()
        # both slots are free again: the killed worker no longer holds one
        assert executor.map([Task(tasks.square, (n,), resources=TWO_CPUS) for n in range(2)]) == [0, 1]

    def test_timeout_is_retried(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.sleep_for, (FOREVER_S,), timeout_s=0.3, retries=1))
        with pytest.raises(TaskTimeout, match="after 2 attempts"):
            handle.result()
        assert handle.attempts == 2

    def test_fail_fast_cancels_the_rest(self, executor: Executor) -> None:
        # Two never-ending tasks run next to the failing one, two more are queued. If map did
        # not kill the running ones and drop the queued ones, the map below would wait forever.
        work = [Task(tasks.sleep_for, (FOREVER_S,)), Task(tasks.fail, ("first failure",))]
        work += [Task(tasks.sleep_for, (FOREVER_S,))] * 3
        with pytest.raises(TaskFailed, match="first failure"):
            executor.map(work)
        assert executor.map([Task(tasks.square, (n,), resources=TWO_CPUS) for n in range(3)]) == [0, 1, 4]

    def test_without_fail_fast_everything_runs_then_the_first_failure_raises(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        work = [Task(tasks.fail, ("one",)), Task(tasks.fail_until, (str(tmp_path / "c"), 0)),
                Task(tasks.fail, ("two",))]
        with pytest.raises(TaskFailed, match="ValueError: one"):
            executor.map(work, fail_fast=False)
        assert (tmp_path / "c").read_text() == "1"

    def test_cancel_a_running_and_a_queued_task(self, executor: Executor) -> None:
        full = TWO_CPUS
        running = executor.submit(Task(tasks.sleep_for, (FOREVER_S,), resources=full))
        queued = executor.submit(Task(tasks.square, (5,)))
        assert queued.cancel()
        assert running.cancel()
        for handle in (running, queued):
            with pytest.raises(TaskCancelled, match="was cancelled"):
                handle.result(timeout=60)
            assert handle.cancelled()
        assert executor.submit(Task(tasks.square, (6,), resources=full)).result() == 36

    def test_result_timeout_leaves_the_task_running(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.sleep_for, (FOREVER_S,)))
        with pytest.raises(TimeoutError, match="still running"):
            handle.result(timeout=0.05)
        assert not handle.done()
        assert handle.cancel()

    @pytest.mark.parametrize(("resources", "named"), [
        (Resources(cpus=3), "cpus=3"),
        (Resources(cpus=1000), "cpus=1000"),
        (Resources(gpus=1000), "gpus=1000"),
        (Resources(memory_mb=1 << 40), f"memory_mb={1 << 40}"),
    ])
    def test_resources_over_capacity_are_refused_up_front(
        self, executor: Executor, tmp_path: Path, resources: Resources, named: str
    ) -> None:
        impossible = Task(tasks.square, (1,), name="greedy", resources=resources)
        with pytest.raises(InvalidArgument, match=f"task 'greedy' asks for {re.escape(named)} but"):
            executor.submit(impossible)
        # map checks every task before starting any: the first one never runs either
        marker = tmp_path / "ran"
        with pytest.raises(InvalidArgument, match="greedy"):
            executor.map([Task(tasks.fail_until, (str(marker), 0)), impossible])
        assert executor.submit(Task(tasks.square, (7,))).result() == 49
        assert not marker.exists()

    def test_a_task_using_every_cpu_runs_alone(self, executor: Executor, tmp_path: Path) -> None:
        running = str(tmp_path / "running")
        work = [Task(tasks.occupy, (running, "small-1")), Task(tasks.occupy, (running, "big"),
                                                               resources=Resources(cpus=2)),
                Task(tasks.occupy, (running, "small-2")), Task(tasks.occupy, (running, "small-3"))]
        seen = dict(zip(["small-1", "big", "small-2", "small-3"], executor.map(work), strict=True))
        assert seen["big"] == []
        assert all("big" not in others for others in seen.values())

    def test_two_tasks_run_at_the_same_time(self, executor: Executor, tmp_path: Path) -> None:
        # each task waits for the other's file: both finish only if they ran concurrently
        pair = [Task(tasks.meet, (str(tmp_path), "a", "b")), Task(tasks.meet, (str(tmp_path), "b", "a"))]
        assert executor.map(pair) == [True, True]

    def test_large_arguments_and_results_round_trip(self, executor: Executor) -> None:
        blob = tasks.make_bytes(20_000_000, seed=5)
        assert executor.submit(Task(tasks.digest, (blob,))).result() == tasks.digest(blob)
        assert executor.submit(Task(tasks.make_bytes, (20_000_000, 5))).result() == blob
        assert executor.submit(Task(tasks.echo, (blob,))).result() == blob

    def test_results_of_many_kinds_round_trip(self, executor: Executor) -> None:
        values: list[object] = [None, 0, -1.5, "text", b"\x00\xff", [1, (2, 3)], {"k": {4, 5}}, {6}]
        assert executor.map([Task(tasks.echo, (v,)) for v in values]) == values

    def test_shutdown_refuses_new_tasks_and_is_idempotent(self, executor: Executor) -> None:
        handle = executor.submit(Task(tasks.square, (8,)))
        executor.shutdown()
        assert handle.result() == 64  # shutdown(wait=True) finished it
        with pytest.raises(InvalidArgument, match="shut down"):
            executor.submit(Task(tasks.square, (9,)))
        executor.shutdown()

    def test_shutdown_without_wait_cancels_what_is_left(self, executor: Executor) -> None:
        handles = [executor.submit(Task(tasks.sleep_for, (FOREVER_S,))) for _ in range(3)]
        executor.shutdown(wait=False)
        for handle in handles:
            with pytest.raises(TaskCancelled, match="cancelled by shutdown"):
                handle.result(timeout=60)
