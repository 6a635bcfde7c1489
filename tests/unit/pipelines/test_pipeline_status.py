"""Run status, impact analysis and triggers (branch watch and cron)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.pipelines.cache import KeyParts
from threadline.pipelines.impact import impact
from threadline.pipelines.runs import _LAST_PARTS, RunStore
from threadline.pipelines.triggers import changed_inputs, cron_due, cron_matches, parse_cron, watch

if TYPE_CHECKING:
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def clean(raw=Input("raw@main"), out=Output(), threshold=0.5):
    print("cleaning with", threshold)
    (out / "c").write_bytes(b"".join(p.read_bytes() for p in sorted(raw.iterdir())))

@step
def train(c=Input("step:clean"), out=Output(), lr=0.1):
    (out / "m").write_bytes((c / "c").read_bytes()[::-1])

@step
def audit(logs=Input("logs@main"), out=Output()):
    (out / "n").write_text(str(len(list(logs.iterdir()))))

pipe = Pipeline("churn", steps=[clean, train, audit], schedule="0 3 * * *")
'''


def _setup(project: Project) -> object:
    project.commit("raw", {"a": b"1"})
    project.commit("logs", {"l": b"x"})
    return project.module("status_steps", STEPS).pipe.spec()


def test_runs_are_listed_and_shown_with_steps_datums_and_logs(project: Project) -> None:
    spec = _setup(project)
    first = project.run(spec)  # type: ignore[arg-type]
    second = project.run(spec, params={"lr": 0.2})  # type: ignore[arg-type]
    store = RunStore(project.repos.db)
    runs = store.list()
    assert [r.id for r in runs] == [second.run_id, first.run_id]
    assert runs[0].params == {"lr": 0.2}
    assert runs[0].status == "succeeded"
    shown = store.get(str(second.run_id)[:8])
    steps = {s.step: s for s in shown.steps}
    assert steps["clean"].status == "cached"
    assert steps["train"].status == "succeeded"
    assert steps["train"].reason == "param lr changed (0.1 → 0.2)"
    first_steps = {s.step: s for s in store.get(str(first.run_id)).steps}
    assert "cleaning with 0.5" in first_steps["clean"].log_tail
    assert shown.to_dict()["steps"][0]["key_parts"]["params"]
    with pytest.raises(NotFound, match="no pipeline run ffff"):
        store.get("ffff")
    with pytest.raises(InvalidArgument, match="too short"):
        store.get("ab")


def test_a_steps_newest_run_is_found_by_index_however_many_runs_there_are(project: Project) -> None:
    store = RunStore(project.repos.db)
    assert store.last_parts("p", "s") is None
    for n, pipeline in enumerate(["p", "p", "other"]):
        run = store.start(pipeline, trigger="watch", executor="local", params={}, inputs={}, steps=["s"])
        store.succeed(run, pipeline, "s", key=f"k{n}", base_key="b", repo="r", commit=f"{n}" * 64,
                      key_parts=KeyParts({}, {}, f"code{n}", {}, "env", None, {}).to_dict(),
                      ended_at=datetime(2026, 1, 1 + n, tzinfo=UTC))
    newest = store.last_parts("p", "s")
    assert newest is not None
    assert (newest[0].code, newest[1]) == ("code1", "1" * 64)  # not the other pipeline's
    # a watch makes thousands of runs: the look-up must not read (and sort) every one of them
    with project.repos.db.connect() as conn:
        query = _LAST_PARTS.params(pipeline="p", step="s").compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plan = " / ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "ix_pipeline_step_runs_step_ended" in plan
    assert "TEMP B-TREE" not in plan


def test_impact_lists_downstream_steps_and_latest_outputs(project: Project) -> None:
    spec = _setup(project)
    result = project.run(spec)  # type: ignore[arg-type]
    of_ref = impact(spec, project.repos, "raw@main")  # type: ignore[arg-type]
    assert of_ref.kind == "ref"
    assert [(s.step, s.reason) for s in of_ref.steps] == [
        ("clean", "reads raw@main as raw"), ("train", "downstream of a changed step")]
    assert of_ref.steps[1].latest_commit == result.steps["train"].commit
    assert any(n.startswith("data_commit:") for n in of_ref.lineage)  # outputs, via lineage
    assert [s.step for s in impact(spec, project.repos, "clean").steps] == ["clean", "train"]  # type: ignore[arg-type]
    of_param = impact(spec, project.repos, "params.lr")  # type: ignore[arg-type]
    assert of_param.kind == "param"
    assert [s.step for s in of_param.steps] == ["train"]
    assert [s.step for s in impact(spec, project.repos, "churn-clean@main").steps] == ["train"]  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="is no step, parameter or existing data ref"):
        impact(spec, project.repos, "nothing@main")  # type: ignore[arg-type]


def test_watch_runs_on_new_commits_only(project: Project) -> None:
    spec = _setup(project)
    started: list[tuple[str, str]] = []

    def once() -> int:
        return watch([spec], project.settings, project.repos, once=True,  # type: ignore[list-item]
                     executor=project.executor, on_run=lambda p, t, r: started.append((t, r.status)))

    assert once() == 1
    assert started == [("watch", "succeeded")]
    assert once() == 0
    assert changed_inputs(spec, project.repos) == {}
    old = project.repos.resolve("logs@main").require_commit().id
    new = project.commit("logs", {"l": b"x", "m": b"y"})
    assert changed_inputs(spec, project.repos) == {"logs@main": (old, new)}  # type: ignore[arg-type]
    assert once() == 1
    runs = RunStore(project.repos.db).list()
    assert runs[0].trigger == "watch"
    assert {s.step: s.status for s in RunStore(project.repos.db).get(runs[0].id).steps} == {
        "clean": "cached", "train": "cached", "audit": "succeeded"}


@pytest.mark.parametrize(("expr", "when", "expected"), [
    ("0 3 * * *", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), True),
    ("0 3 * * *", datetime(2026, 1, 5, 3, 1, tzinfo=UTC), False),
    ("*/15 * * * *", datetime(2026, 1, 5, 7, 45, tzinfo=UTC), True),
    ("*/15 * * * *", datetime(2026, 1, 5, 7, 46, tzinfo=UTC), False),
    ("0 9-17/4 * * 1-5", datetime(2026, 1, 5, 13, 0, tzinfo=UTC), True),   # a Monday
    ("0 9-17/4 * * 1-5", datetime(2026, 1, 4, 13, 0, tzinfo=UTC), False),  # a Sunday
    ("0 0 * * 7", datetime(2026, 1, 4, 0, 0, tzinfo=UTC), True),           # 7 is Sunday too
    ("0 0 1 * 1", datetime(2026, 1, 5, 0, 0, tzinfo=UTC), True),           # either day field
    ("30 2 1,15 6 *", datetime(2026, 6, 15, 2, 30, tzinfo=UTC), True),
])
def test_cron_expressions(expr: str, when: datetime, expected: bool) -> None:
    assert cron_matches(expr, when) is expected


def test_cron_due_and_bad_expressions() -> None:
    since = datetime(2026, 1, 5, 2, 59, 30, tzinfo=UTC)
    assert cron_due("0 3 * * *", since, datetime(2026, 1, 5, 3, 0, 5, tzinfo=UTC))
    assert not cron_due("0 3 * * *", since, datetime(2026, 1, 5, 2, 59, 59, tzinfo=UTC))
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "a * * * *"):
        with pytest.raises(InvalidArgument, match="cron expression"):
            parse_cron(bad)
