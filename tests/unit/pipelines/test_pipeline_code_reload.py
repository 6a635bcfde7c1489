"""A long-lived process (`pipeline watch`, a notebook) runs the step code that is on disk now:
an edited step module is imported again, by the driver and by kept worker processes, so an
output is never recorded under the new code's hash but made by the old code."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from threadline.compute import open_executor
from threadline.pipelines import WORKER_MODULES, reload
from threadline.pipelines.python_api import find_pipelines, load_function

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step
from reload_helpers import greeting

@step
def greet(raw=Input("raw@main"), out=Output()):
    (out / "greeting").write_text(greeting() + " " + (raw / "name").read_text())

pipe = Pipeline("reload", steps=[greet])
'''


def _write(project: Project, name: str, source: str) -> None:
    path = project.root / f"{name}.py"
    stat = path.stat() if path.exists() else None
    path.write_text(source)
    if stat is not None and stat.st_size == len(source) and stat.st_mtime_ns == path.stat().st_mtime_ns:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock


def _greeting(project: Project) -> str:
    return project.read("reload-greet", "greeting").decode()


def test_edited_step_code_runs_in_a_kept_executor_and_in_process(project: Project) -> None:
    project.commit("raw", {"name": b"world"})
    _write(project, "reload_helpers", "def greeting():\n    return 'hello'\n")
    spec = project.module("reload_steps", STEPS).pipe.spec()
    kept = open_executor("local", workers=1, preload=WORKER_MODULES)
    try:
        for executor in (kept, project.executor):  # a worker process, then this process
            project.forget_cache()
            _write(project, "reload_helpers", "def greeting():\n    return 'hello'\n")
            _write(project, "reload_steps", STEPS)
            assert project.run(spec, executor=executor).status == "succeeded"
            assert _greeting(project) == "hello world"

            _write(project, "reload_helpers", "def greeting():\n    return 'howdy'\n")  # a module it calls
            step = project.run(spec, executor=executor).steps["greet"]
            assert step.status == "succeeded", step.error
            assert _greeting(project) == "howdy world"

            source = (project.root / "reload_steps.py").read_text()
            _write(project, "reload_steps", source.replace('" " +', '", " +'))  # the step itself
            step = project.run(spec, executor=executor).steps["greet"]
            assert step.status == "succeeded", step.error
            assert _greeting(project) == "howdy, world"
            assert project.run(spec, executor=executor).steps["greet"].status == "cached"
    finally:
        kept.shutdown()


def test_only_the_changed_projects_modules_are_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    for project in ("one", "two"):
        folder = tmp_path / project
        (folder / f"{project}_pkg").mkdir(parents=True)
        (folder / f"{project}_pkg" / "__init__.py").write_text("")
        (folder / f"{project}_pkg" / "steps.py").write_text(
            f"from threadline.pipelines import Output\nfrom {project}_pkg import util\n\n"
            "def run(out=Output()):\n    return util.VALUE\n")
        (folder / f"{project}_pkg" / "util.py").write_text("VALUE = 1\n")
        monkeypatch.syspath_prepend(str(folder))
    names = [f"{p}_pkg{m}" for p in ("one", "two") for m in ("", ".steps", ".util")]
    try:
        for project in ("one", "two"):
            load_function(f"{project}_pkg.steps:run", fresh=True)
        assert reload.forget_changed("one_pkg.steps") == []  # nothing changed
        assert not any(name.startswith("threadline") for name in reload._STAMPS)
        assert not any(name in reload._STAMPS for name in ("json", "sqlalchemy", "pytest"))

        _write_file(tmp_path / "one" / "one_pkg" / "util.py", "VALUE = 2\n")
        assert reload.forget_changed("one_pkg.steps") == ["one_pkg", "one_pkg.steps", "one_pkg.util"]
        assert "two_pkg.util" in sys.modules  # another project is left alone
        assert load_function("one_pkg.steps:run", fresh=True)[0]() == 2
        assert reload.forget_changed("one_pkg.steps") == []
        assert reload.forget_changed("two_pkg.steps") == []
    finally:
        for name in names:
            sys.modules.pop(name, None)


def _write_file(path: Path, text: str) -> None:
    before = path.stat()
    path.write_text(text)
    if path.stat().st_mtime_ns == before.st_mtime_ns and before.st_size == len(text):
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_an_edit_between_loading_a_pipeline_and_its_first_run_is_noticed(project: Project) -> None:
    _write(project, "reload_helpers", "def greeting():\n    return 'hello'\n")
    _write(project, "reload_steps", STEPS)
    assert list(find_pipelines("reload_steps")) == ["reload"]  # as `pipeline watch` starts
    _write(project, "reload_helpers", "def greeting():\n    return 'howdy'\n")
    fn, _ = load_function("reload_steps:greet", fresh=True)  # the first run's plan
    assert fn.__globals__["greeting"]() == "howdy"


def test_a_module_put_in_place_of_another_under_its_name_is_stamped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    folder = tmp_path / "swap"
    folder.mkdir()
    (folder / "swap_first.py").write_text("VALUE = 1\n")
    (folder / "swap_second.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(folder))
    try:
        import swap_first  # type: ignore[import-not-found]

        reload.remember_imports()
        assert reload._STAMPS["swap_first"][0] == os.path.realpath(folder / "swap_first.py")
        # the same names, one bound to another module (no import, no removal): still seen
        import swap_second  # type: ignore[import-not-found]

        reload.remember_imports()
        sys.modules["swap_first"] = swap_second
        reload.remember_imports()
        assert reload._STAMPS["swap_first"][0] == os.path.realpath(folder / "swap_second.py")
        del swap_first
    finally:
        for name in ("swap_first", "swap_second"):
            sys.modules.pop(name, None)
