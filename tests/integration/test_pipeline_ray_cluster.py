"""A pipeline on a running Ray cluster imports its steps from the code shipped with the job.

The cluster is the one `test_compute_ray` starts (a 2-CPU head node on loopback with a private
auth token; its fixture skips without Ray, and fails instead where the CI variable is set).
Its workers run on this machine, where the driver's project folder exists; the job is handed
over as it would be on another machine, where that folder does not exist, so the step can
only come from the copy Ray unpacked under its `runtime_resources`.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from integration.test_compute_ray import ray_address
from threadline.compute import Executor, RayExecutor, Task, TaskHandle
from threadline.config import load_settings
from threadline.data.tables import open_file
from threadline.pipelines.cluster import open_cluster_executor
from threadline.pipelines.engine import run_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos

__all__ = ["ray_address"]  # the module-scoped cluster fixture, shared with test_compute_ray

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def where(raw=Input("raw@main"), out=Output()):
    (out / "module_file").write_text(__file__)
    (out / "count").write_text(str(len(list(raw.iterdir()))))

pipe = Pipeline("shipped", steps=[where])
'''
ELSEWHERE = "/nonexistent/driver-machine/proj"


class OtherMachine(Executor):
    """Hands tasks to a Ray executor as a driver on another machine would: the project folder
    the job names for `sys.path` does not exist on the workers' machine."""

    kind = "ray"

    def __init__(self, inner: RayExecutor) -> None:
        self.inner, self.workers = inner, inner.workers

    def submit(self, task: Task) -> TaskHandle:
        job = task.args[0]
        moved = {**job, "step": {**job["step"], "path": ELSEWHERE}}
        return self.inner.submit(dataclasses.replace(task, args=(moved, *task.args[1:])))

    def shutdown(self, wait: bool = True) -> None:
        self.inner.shutdown(wait)


@pytest.fixture
def project(home: DataRepos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder, on the driver's sys.path only, holding the step module `shipped_steps`."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "shipped_steps.py").write_text(textwrap.dedent(STEPS))
    (root / "unrelated.parquet").write_bytes(b"x" * 1000)  # excluded from the upload
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    sys.modules.pop("shipped_steps", None)


def test_python_steps_run_from_the_code_shipped_to_the_cluster(
        home: DataRepos, project: Path, ray_address: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        (raw / f"{i}.txt").write_text(str(i))
    home.create("raw")
    home.commit("raw@main", [raw], "inputs")
    spec = importlib.import_module("shipped_steps").pipe.spec()
    settings = load_settings()
    pool = open_cluster_executor([spec], settings, ray_address, workers=1)
    assert isinstance(pool, RayExecutor)
    with OtherMachine(pool) as remote:
        result = run_pipeline(spec, settings, home, executor=remote)
    assert result.status == "succeeded", [o.error for o in result.steps.values()]
    with open_file(home, "shipped-where@main:module_file") as fh:
        ran_from = Path(fh.read().decode())
    with open_file(home, "shipped-where@main:count") as fh:
        assert fh.read() == b"3"
    assert ran_from.name == "shipped_steps.py"
    assert "runtime_resources" in ran_from.parts  # Ray's unpacked copy of the working_dir
    assert project not in ran_from.parents
    assert not (ran_from.parent / "unrelated.parquet").exists()
