"""`--dry-run`: what would re-run and which part of its cache key changed; nothing is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.pipelines.runs import RunStore

if TYPE_CHECKING:
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def features(raw=Input("raw@main"), out=Output(), threshold=0.5):
    (out / "f").write_bytes(b"".join(p.read_bytes() for p in sorted(raw.iterdir())) + b"{tag}")

@step
def train(f=Input("step:features"), out=Output()):
    (out / "model").write_bytes((f / "f").read_bytes()[::-1])

@step
def report(raw=Input("raw@main"), out=Output()):
    (out / "n").write_text(str(len(list(raw.iterdir()))))

pipe = Pipeline("dry", steps=[features, train, report])
'''


def _why(result: object) -> dict[str, tuple[str, list[str]]]:
    return {n: (o.status, o.reasons) for n, o in result.steps.items()}  # type: ignore[attr-defined]


def test_a_dry_run_of_a_new_pipeline_records_nothing(project: Project) -> None:
    project.commit("raw", {"a": b"1"})
    spec = project.module("dry_steps", STEPS.format(tag="")).pipe.spec()
    result = project.run(spec, dry_run=True)
    assert result.run_id is None
    assert result.status == "dry-run"
    assert _why(result) == {
        "features": ("would run", ["never run with these inputs and parameters"]),
        "train": ("would run", ["upstream features would re-run"]),
        "report": ("would run", ["never run with these inputs and parameters"]),
    }
    assert RunStore(project.repos.db).list() == []
    assert "dry-features" not in {r.name for r in project.repos.list()}
    assert project.executor.submitted == []


def test_dry_run_names_the_changed_part_of_each_key(project: Project) -> None:
    first = project.commit("raw", {"a": b"1"})
    spec = project.module("dry_steps", STEPS.format(tag="")).pipe.spec()
    project.run(spec)
    assert {s for s, (status, _) in _why(project.run(spec, dry_run=True)).items() if status == "cached"} == {
        "features", "train", "report"}

    second = project.commit("raw", {"a": b"2"})
    why = _why(project.run(spec, dry_run=True))
    assert why["features"] == ("would run", [f"input raw changed ({first[:8]} → {second[:8]})"])
    assert why["report"][1] == [f"input raw changed ({first[:8]} → {second[:8]})"]
    assert why["train"] == ("would run", ["upstream features would re-run"])
    project.commit("raw", {"a": b"1"})  # back to the first content: everything is cached again
    assert {status for status, _ in _why(project.run(spec, dry_run=True)).values()} == {"cached"}

    why = _why(project.run(spec, dry_run=True, params={"threshold": 0.7}))
    assert why["features"] == ("would run", ["param threshold changed (0.5 → 0.7)"])
    assert why["report"][0] == "cached"

    spec = project.module("dry_steps", STEPS.format(tag="v2")).pipe.spec()
    why = _why(project.run(spec, dry_run=True))
    assert why["features"] == ("would run", ["code changed"])
    assert why["train"][0] == "would run"
    assert why["report"][0] == "cached"
    assert sorted(project.executor.submitted) == ["dry.features", "dry.report", "dry.train"]  # only real runs
