"""A failing step publishes nothing, fails the run, skips its descendants; a re-run resumes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from threadline.meta.models import PipelineCacheRow
from threadline.pipelines.runs import RunStore

if TYPE_CHECKING:
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def good(raw=Input("raw@main"), out=Output()):
    (out / "ok").write_text("fine")

@step
def flaky(raw=Input("raw@main"), out=Output(), fail=True):
    (out / "half-written").write_text("partial")
    print("about to fail")
    if fail:
        raise RuntimeError("boom in flaky")
    (out / "done").write_text("done")

@step
def after(x=Input("step:flaky"), out=Output()):
    (out / "after").write_text("after")

pipe = Pipeline("fails", steps=[good, flaky, after])
'''


def test_a_failing_step_fails_the_run_and_publishes_nothing(project: Project) -> None:
    project.commit("raw", {"a.txt": b"a"})
    spec = project.module("fail_steps", STEPS).pipe.spec()
    result = project.run(spec)
    assert result.status == "failed"
    steps = result.steps
    assert steps["good"].status == "succeeded"
    assert steps["flaky"].status == "failed"
    assert "boom in flaky" in steps["flaky"].error
    assert steps["after"].status == "skipped"
    assert steps["after"].reasons == ["upstream flaky failed"]
    assert project.repos.resolve("fails-flaky@main").commit is None  # nothing published
    assert project.repos.resolve("fails-after@main").commit is None
    with project.repos.db.session() as session:
        cached = set(session.scalars(select(PipelineCacheRow.step)))
    assert cached == {"good"}

    stored = RunStore(project.repos.db).get(str(result.run_id))
    assert stored.status == "failed"
    assert "flaky: RuntimeError: boom in flaky" in stored.error
    by_step = {s.step: s for s in stored.steps}
    assert by_step["flaky"].status == "failed"
    assert by_step["flaky"].output_commit is None
    assert by_step["after"].status == "skipped"

    resumed = project.run(spec, params={"fail": False})
    assert resumed.status == "succeeded"
    assert {n: o.status for n, o in resumed.steps.items()} == {
        "good": "cached", "flaky": "succeeded", "after": "succeeded"}
    assert set(project.tree("fails-flaky")) == {"half-written", "done"}


def test_a_failing_command_reports_its_exit_status_and_stderr(project: Project) -> None:
    import sys

    from threadline.pipelines.yaml_spec import load_text

    project.commit("raw", {"a.txt": b"a"})
    spec = load_text(f"""
pipeline: cmdfail
steps:
  bad:
    run: ["{sys.executable}", "-c", "import sys; sys.stderr.write('no way'); sys.exit(3)", "{{inputs.raw}}"]
    inputs: {{raw: "raw@main"}}
""", str(project.root))
    result = project.run(spec)
    assert result.status == "failed"
    assert "command exited 3: no way" in result.steps["bad"].error
    assert project.repos.resolve("cmdfail-bad@main").commit is None
