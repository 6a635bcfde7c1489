"""The same pipeline gives the same output trees in-process, on the local process pool and on Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import needs
import pytest

from threadline.pipelines import engine

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def left(raw=Input("raw@main", datums="file"), out=Output()):
    for f in raw.rglob("*.txt"):
        (out / "up").write_bytes(f.read_bytes().upper())

@step
def right(raw=Input("raw@main"), out=Output(), sep="-"):
    (out / "names").write_text(sep.join(sorted(p.name for p in raw.iterdir())))

@step(retries=1, timeout_s=60)
def join(a=Input("step:left"), b=Input("step:right"), out=Output()):
    ups = b"".join(p.read_bytes() for p in sorted(a.rglob("up")))
    (out / "all").write_bytes(ups + (b / "names").read_bytes())

pipe = Pipeline("exe", steps=[left, right, join])
'''


def _trees(project: Project, executor: object) -> dict[str, dict[str, str]]:
    spec = project.module("exe_steps", STEPS).pipe.spec()
    project.forget_cache()
    result = project.run(spec, executor=executor, workers=2)
    assert result.status == "succeeded", [o.error for o in result.steps.values()]
    assert {o.status for o in result.steps.values()} == {"succeeded"}
    return {name: project.tree(f"exe-{name}") for name in ("left", "right", "join")}


def test_local_process_pool_matches_in_process(project: Project) -> None:
    project.commit("raw", {f"{i}.txt": f"file {i}".encode() for i in range(6)})
    inline = _trees(project, project.executor)
    assert _trees(project, "local") == inline


@pytest.fixture
def ray_installed() -> Iterator[None]:
    """Ray must be there in CI; a local cluster's ~/.ray/auth_token is removed afterwards.

    `ray.init()` of a local cluster writes that shared token file, and a later `ray start`
    on the machine would then require it from drivers that connect by address and never
    read it (tests/integration/test_compute_ray.py explains).
    """
    if importlib.util.find_spec("ray") is None:
        needs.missing("Ray", "pip install 'threadline[ray]'")
    token = Path.home() / ".ray" / "auth_token"
    existed = token.exists()
    yield
    if not existed:
        token.unlink(missing_ok=True)


@pytest.mark.usefixtures("ray_installed")
def test_ray_matches_local(project: Project) -> None:
    project.commit("raw", {f"{i}.txt": f"file {i}".encode() for i in range(4)})
    assert _trees(project, "ray") == _trees(project, project.executor)


def test_datum_fan_out_on_the_process_pool_matches_in_process(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "FANOUT_MIN", 8)
    project.commit("raw", {f"{i:02d}.txt": f"file {i}".encode() for i in range(24)})
    inline = _trees(project, project.executor)
    assert _trees(project, "local") == inline
