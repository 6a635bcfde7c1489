"""Killing a pipeline mid-step: no step is marked complete without its output, and a re-run
resumes - finished steps are reused, the killed one runs again.

Two ways to die: the worker running the step is SIGKILLed (the driver survives and fails the
run), and the whole run - driver and workers - is SIGKILLed (the run is left `running` and is
shown as `interrupted`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

from threadline.pipelines.runs import RunStore

from .homes import CHILD_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.data.repos import DataRepos

    from .homes import Home

STEPS = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from threadline.pipelines import Input, Output, Pipeline, step

    @step
    def first(raw=Input("raw@main"), out=Output()):
        (out / "a").write_bytes((raw / "r.txt").read_bytes() * 2)

    @step
    def slow(x=Input("step:first"), out=Output()):
        (out / "partial").write_text("half")
        marker = Path(os.environ["KILL_MARKER"])
        if not (marker.parent / "resume").exists():
            marker.write_text(str(os.getpid()))
            time.sleep(100)
        (out / "b").write_bytes((x / "a").read_bytes())

    @step
    def last(x=Input("step:slow"), out=Output()):
        (out / "c").write_bytes((x / "b").read_bytes() + b"!")

    pipe = Pipeline("kill", steps=[first, slow, last])
''')

DRIVER = textwrap.dedent('''
    import sys
    sys.path.insert(0, ".")
    from threadline.config import load_settings
    from threadline.data.connect import connect
    from threadline.pipelines.engine import run_pipeline
    import kill_steps

    if __name__ == "__main__":
        settings = load_settings()
        result = run_pipeline(kill_steps.pipe.spec(), settings, connect(settings), workers=2)
        print(result.run_id, result.status, flush=True)
''')


def _prepare(make_home: Callable[..., Home]) -> Home:
    home = make_home("raw")
    (home.root / "kill_steps.py").write_text(STEPS)
    (home.root / "driver.py").write_text(DRIVER)
    (home.root / "src").mkdir()
    (home.root / "src" / "r.txt").write_text("raw data")
    with home.session() as repos:
        repos.commit("raw@main", [home.root / "src"], "raw")
    return home


def _start(home: Home) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "driver.py"], cwd=home.root, text=True,
                            env={**home.env, "KILL_MARKER": str(home.root / "marker")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    home.children.append(proc)
    return proc


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not path.exists() or not path.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    return int(path.read_text())


def _assert_nothing_complete_without_output(repos: DataRepos) -> None:
    store = RunStore(repos.db)
    for run in store.list():
        for step in store.get(run.id).steps:
            if step.status in ("succeeded", "cached"):
                assert step.output_commit is not None
                repos.resolve(f"{step.output_repo}@{step.output_commit}").require_commit()
            else:
                assert step.output_commit is None, step


def _resume(home: Home) -> None:
    (home.root / "resume").touch()
    proc = _start(home)
    out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, err
    assert out.split()[1] == "succeeded", err
    with home.session() as repos:
        store = RunStore(repos.db)
        steps = {s.step: s.status for s in store.get(out.split()[0]).steps}
        assert steps == {"first": "cached", "slow": "succeeded", "last": "succeeded"}
        assert {e.path for e in repos.manifest(repos.resolve("kill-last@main").require_commit())} == {"c"}
        _assert_nothing_complete_without_output(repos)


def test_a_killed_worker_fails_the_run_publishes_nothing_and_a_rerun_resumes(
    make_home: Callable[..., Home],
) -> None:
    home = _prepare(make_home)
    proc = _start(home)
    os.kill(_wait_for(home.root / "marker", proc), signal.SIGKILL)
    out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    assert out.split()[1] == "failed", err
    with home.session() as repos:
        steps = {s.step: s for s in RunStore(repos.db).get(out.split()[0]).steps}
        assert steps["first"].status == "succeeded"
        assert steps["slow"].status == "failed"
        assert steps["slow"].output_commit is None
        assert steps["last"].status == "skipped"
        assert repos.resolve("kill-slow@main").commit is None
        _assert_nothing_complete_without_output(repos)
    _resume(home)


def test_a_killed_run_is_interrupted_and_a_rerun_resumes(make_home: Callable[..., Home]) -> None:
    home = _prepare(make_home)
    proc = _start(home)
    _wait_for(home.root / "marker", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers
    proc.communicate(timeout=CHILD_TIMEOUT)
    with home.session() as repos:
        store = RunStore(repos.db)
        (run,) = store.list()
        assert run.status == "interrupted"
        steps = {s.step: s for s in store.get(run.id).steps}
        assert steps["first"].status == "succeeded"
        assert steps["slow"].status == "running"
        assert steps["slow"].output_commit is None
        assert repos.resolve("kill-slow@main").commit is None
        _assert_nothing_complete_without_output(repos)
    _resume(home)
