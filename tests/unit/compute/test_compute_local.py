"""The local process-pool executor: the shared conformance suite plus what only it does."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import pytest

from threadline.compute import KINDS, LocalExecutor, Resources, Task, TaskFailed, TaskTimeout, open_executor
from threadline.compute import conformance_tasks as tasks
from threadline.compute.conformance import ExecutorConformance
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    with LocalExecutor(workers=2) as pool:
        yield pool


class TestLocalExecutor(ExecutorConformance):
    pass


def test_uses_forkserver_and_reports_signals(executor: LocalExecutor) -> None:
    assert executor.start_method == "forkserver"
    died = r"WorkerDied: the worker running it died \(pid \d+ killed by SIGSEGV\)"
    with pytest.raises(TaskFailed, match=died):
        executor.submit(Task(tasks.segfault)).result()


def test_timeout_replaces_the_worker_process() -> None:
    # one worker: the pool's only process before the timeout is not the one after it
    with LocalExecutor(workers=1) as pool:
        before = pool.submit(Task(tasks.worker_pid)).result()
        with pytest.raises(TaskTimeout):
            pool.submit(Task(tasks.sleep_for, (3600,), timeout_s=0.2)).result()
        after = pool.submit(Task(tasks.worker_pid)).result()
    assert before != after


def test_a_task_cancelled_as_soon_as_it_is_shipped_still_has_its_worker_killed() -> None:
    # a task for an idle worker is shipped by the submitting thread itself; cancelled at once,
    # before the scheduler has looked at that worker again, its worker must still be replaced
    with LocalExecutor(workers=1) as pool:
        before = pool.submit(Task(tasks.worker_pid)).result()
        for _ in range(5):
            handle = pool.submit(Task(tasks.sleep_for, (3600,)))
            assert handle.cancel()
            after = pool.submit(Task(tasks.worker_pid)).result(timeout=60)
            assert after != before
            before = after


def test_spawn_start_method_works_and_fork_is_refused() -> None:
    with LocalExecutor(workers=1, start_method="spawn") as pool:
        assert pool.map([Task(tasks.add, (1, 2))]) == [3]
    with pytest.raises(InvalidArgument, match="fork is unsafe with threads"):
        LocalExecutor(workers=1, start_method="fork")


def test_function_that_does_not_pickle_is_refused_at_submit(executor: LocalExecutor) -> None:
    with pytest.raises(InvalidArgument, match=r"task 'inline' does not pickle .*top level of a module"):
        executor.submit(Task(lambda: 1, name="inline"))
    with pytest.raises(InvalidArgument, match="does not pickle"):
        executor.submit(Task(tasks.echo, (threading.Lock(),)))


def test_shutdown_leaves_no_thread_or_process_behind() -> None:
    threads_before = set(threading.enumerate())
    pool = LocalExecutor(workers=2)
    pids = set(pool.map([Task(tasks.worker_pid, resources=Resources(cpus=2)) for _ in range(2)]))
    with pytest.raises(TaskTimeout):
        pool.submit(Task(tasks.sleep_for, (3600,), timeout_s=0.1)).result()
    pool.shutdown()
    assert set(threading.enumerate()) <= threads_before
    alive = {p.pid for p in multiprocessing.active_children()}
    assert not pids & alive


def test_as_completed_timeout(executor: LocalExecutor) -> None:
    handle = executor.submit(Task(tasks.sleep_for, (3600,)))
    with pytest.raises(TimeoutError, match="not all done"):
        list(executor.as_completed([handle], timeout=0.05))
    handle.cancel()


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Task(tasks.add, retries=-1), "retries=-1"),
    (lambda: Task(tasks.add, timeout_s=0), "timeout_s=0"),
    (lambda: Task("not callable"), "must be a callable"),  # type: ignore[arg-type]
    (lambda: Resources(cpus=-1), "cpus=-1"),
    (lambda: Resources(gpus=float("nan")), "gpus=nan"),
    (lambda: Resources(memory_mb=0), "memory_mb=0"),
    (lambda: LocalExecutor(workers=0), "workers=0"),
])
def test_invalid_arguments(call: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call()  # type: ignore[operator]


def test_task_label_defaults_to_the_function_name() -> None:
    assert Task(tasks.add).label == "add"
    assert Task(tasks.add, name="sum").label == "sum"


def test_task_failed_pickles_with_its_fields() -> None:
    error = TaskTimeout("t timed out", task="t", attempts=2, error_type="TaskTimeout", error_message="m",
                       detail="tb")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TaskTimeout
    assert (str(copy), copy.task, copy.attempts, copy.error_type, copy.error_message, copy.detail) == (
        "t timed out", "t", 2, "TaskTimeout", "m", "tb")


def test_open_executor_local_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_executor(workers=1) as pool:
        assert isinstance(pool, LocalExecutor)
        assert pool.map([Task(tasks.square, (5,))]) == [25]
    with pytest.raises(InvalidArgument, match="unknown executor kind 'dask'; choose one of local, ray"):
        open_executor("dask")
    assert KINDS == ("local", "ray")
    with pytest.raises(InvalidArgument, match="local executor takes no address"):
        open_executor("local", address="ray://x:1")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(InvalidArgument, match=r"pip install 'threadline\[ray\]'"):
        open_executor("ray")


def test_import_threadline_compute_stays_light() -> None:
    code = ("import sys, threadline.compute\n"
            "print(sorted(m for m in ('ray', 'pandas', 'pyarrow', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_preloaded_modules_are_imported_before_the_first_task(tmp_path: Path) -> None:
    # the forkserver is one per process: a fresh interpreter, so no earlier pool started it
    script = tmp_path / "preload_check.py"
    script.write_text(textwrap.dedent("""
        import sys
        from threadline.compute import Task, open_executor

        def loaded(name):
            return name in sys.modules

        if __name__ == "__main__":
            if sys.argv[1] == "prestart":  # the server started early; the pool opened later uses it
                from threadline.compute.local import prestart
                prestart(["xml.dom.minidom"])
                pool = open_executor("local", workers=1)
            else:
                pool = open_executor("local", workers=1, preload=["xml.dom.minidom"])
            with pool:
                print(pool.submit(Task(loaded, ("xml.dom.minidom",))).result(),
                      pool.submit(Task(loaded, ("xml.sax.saxutils",))).result())
    """))
    for how in ("preload", "prestart"):
        done = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, check=True,
                              cwd=tmp_path, timeout=120)
        assert done.stdout.split() == ["True", "False"], how
