"""Opening a Ray executor for a pipeline: what it ships, and the engine check before connecting
(no cluster is started)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from threadline.config import Settings
from threadline.errors import InvalidArgument
from threadline.pipelines.cluster import open_cluster_executor, pipeline_runtime_env
from threadline.pipelines.spec import PipelineSpec, StepSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

LOCAL_ENGINES = Settings(Path("/home/me/.threadline"), "sqlite:////home/me/.threadline/meta.db",
                         "file:///home/me/.threadline/objects", "me")


@pytest.fixture
def steps_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder on sys.path with the step module `shipme_steps` and a package `shipme_pkg`."""
    root = tmp_path / "proj"
    (root / "shipme_pkg").mkdir(parents=True)
    (root / "shipme_pkg" / "__init__.py").write_text("")
    (root / "shipme_steps.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root.resolve()
    for name in ("shipme_steps", "shipme_pkg"):
        sys.modules.pop(name, None)


def _spec(source: dict[str, str]) -> PipelineSpec:
    steps = (StepSpec("py", kind="python", target="shipme_steps:fn"),
             StepSpec("cmd", kind="command", target="", argv=("python", "x.py")))
    return PipelineSpec("p", steps, source)


def test_a_pipeline_ships_its_steps_project_or_its_yaml_folder(steps_root: Path, tmp_path: Path) -> None:
    assert pipeline_runtime_env([_spec({"kind": "module", "module": "shipme_pkg.pipes"})])["working_dir"] == \
        str(steps_root)
    env = pipeline_runtime_env([_spec({"kind": "yaml", "text": "", "base": str(tmp_path)})])
    assert env["working_dir"] == str(tmp_path.resolve())
    assert env["py_modules"] == [str(steps_root / "shipme_steps.py")]


def test_the_engine_check_runs_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_connection(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("connected to the cluster before checking the engines")

    monkeypatch.setattr("threadline.pipelines.cluster.open_executor", no_connection)
    with pytest.raises(InvalidArgument, match="cannot reach a SQLite database"):
        open_cluster_executor([_spec({})], LOCAL_ENGINES, "ray://head.internal:10001")
