"""threadline.yaml: command steps without a shell, and the built-in preparation steps."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from threadline.data.repos import commit_node
from threadline.data.tables import open_file
from threadline.lineage.graph import LineageGraph
from threadline.pipelines.yaml_spec import load_file

if TYPE_CHECKING:
    from pipeline_helpers import Project

SCRIPT = """
import pathlib, sys
src, out, factor = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
for f in sorted(src.rglob("*.txt")):
    (out / f.name).write_text(f.read_text() * factor)
print("made", len(list(out.iterdir())))
"""


def _yaml(project: Project, text: str) -> object:
    path = project.root / "threadline.yaml"
    path.write_text(text)
    return load_file(path)


def test_command_steps_fill_placeholders_and_cache_on_the_script(project: Project) -> None:
    (project.root / "repeat.py").write_text(SCRIPT)
    project.commit("raw", {"a.txt": b"ab", "b.txt": b"c", "skip.bin": b"x"})
    text = f"""
pipeline: cmd
steps:
  repeat:
    run: {sys.executable} repeat.py {{inputs.raw}} {{output}} {{params.factor}}
    inputs: {{raw: "raw@main"}}
    params: {{factor: 2}}
  each:
    run: ["{sys.executable}", repeat.py, "{{inputs.src}}", "{{output}}", "1"]
    inputs: {{src: {{ref: "step:repeat", datums: "glob:*.txt"}}}}
"""
    spec = _yaml(project, text)
    first = project.run(spec)  # type: ignore[arg-type]
    assert first.status == "succeeded", first.to_dict()
    assert project.tree("cmd-repeat").keys() == {"a.txt", "b.txt"}
    assert project.read("cmd-repeat", "a.txt") == b"abab"
    assert project.tree("cmd-each").keys() == {"a.txt/a.txt", "b.txt/b.txt"}
    assert first.steps["each"].processed == 2

    assert {o.status for o in project.run(spec).steps.values()} == {"cached"}  # type: ignore[arg-type]
    tripled = project.run(spec, params={"factor": 3})  # type: ignore[arg-type]
    assert tripled.steps["repeat"].status == "succeeded"
    assert project.read("cmd-repeat", "b.txt") == b"ccc"

    (project.root / "repeat.py").write_text(SCRIPT + "\n# edited\n")
    edited = project.run(_yaml(project, text), params={"factor": 3}, dry_run=True)  # type: ignore[arg-type]
    assert edited.steps["repeat"].reasons == ["code changed"]


def test_builtin_prep_steps_chain_with_lineage(project: Project) -> None:
    rows = "id,city,amount\n" + "".join(f"{i % 40},c{i % 3},{i % 40}\n" for i in range(120))
    (project.root / "data").mkdir()
    (project.root / "data" / "sales.csv").write_text(rows)
    spec = _yaml(project, """
pipeline: prep
steps:
  load:
    uses: threadline.prep.ingest
    with: {sources: [data/sales.csv]}
  unique:
    uses: threadline.prep.dedupe
    inputs: {table: "step:load"}
    with: {spec: {keys: [id]}, output: sales.parquet}
  parts:
    uses: threadline.prep.split
    inputs: {table: "step:unique:sales.parquet"}
    with: {fractions: {train: 0.75, test: 0.25}, by: [id]}
""")
    result = project.run(spec)  # type: ignore[arg-type]
    assert result.status == "succeeded", [o.error for o in result.steps.values()]
    tree = project.tree("prep-load")
    assert any(p.endswith(".parquet") for p in tree)
    with open_file(project.repos, "prep-unique@main:sales.parquet") as fh:
        assert pq.read_table(fh).num_rows == 40
    parts = project.tree("prep-parts")
    assert {"train.parquet", "test.parquet"} <= parts.keys()
    unique = project.repos.resolve("prep-unique@main").require_commit()
    relations = {e.relation for e in LineageGraph(project.repos.db).direct(commit_node(unique.id))}
    assert {"prep.dedupe", "pipeline.unique", "produced"} <= relations

    again = project.run(spec)  # type: ignore[arg-type]
    assert {o.status for o in again.steps.values()} == {"cached"}
    (project.root / "data" / "sales.csv").write_text(rows + "99,c1,5\n")
    changed = project.run(spec, dry_run=True)  # type: ignore[arg-type]
    assert changed.steps["load"].reasons == ["code changed"]  # the sources are part of its code


def test_builtin_train_step_commits_the_model_of_a_tracked_run(project: Project) -> None:
    import json

    from threadline.tracking import TrackingStore

    rows = "x1,x2,label\n" + "".join(f"{i % 17},{(i * 7) % 13},{int(i % 17 > 8)}\n" for i in range(400))
    (project.root / "data").mkdir()
    (project.root / "data" / "points.csv").write_text(rows)
    text = """
pipeline: fit
steps:
  load:
    uses: threadline.prep.ingest
    with: {sources: [data/points.csv]}
  model:
    uses: threadline.train
    inputs: {table: "step:load"}
    with: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: C_ITER},
           target: label, workers: 1, seed: 3}
"""
    result = project.run(_yaml(project, text.replace("C_ITER", "300")))  # type: ignore[arg-type]
    assert result.status == "succeeded", [o.error for o in result.steps.values()]
    tree = project.tree("fit-model")
    assert {"training.json", "model/model.skops", "model/threadline-model.json"} <= tree.keys()
    summary = json.loads(project.read("fit-model", "training.json"))
    assert summary["strategy"] in ("combine", "single")
    assert summary["metrics"]["train_score"] > 0.9
    store = TrackingStore(project.repos)
    run = store.get_run(summary["run_id"])
    assert run.params["estimator.max_iter"] == "300"
    load_commit = project.repos.resolve("fit-load@main").require_commit().id
    assert any(load_commit in json.dumps(item) for item in run.inputs)  # the run points at the data commit

    again = project.run(_yaml(project, text.replace("C_ITER", "300")))  # type: ignore[arg-type]
    assert again.steps["model"].status == "cached"
    more = project.run(_yaml(project, text.replace("C_ITER", "400")))  # type: ignore[arg-type]
    assert more.steps["model"].status == "succeeded"
    assert more.steps["load"].status == "cached"
    assert json.loads(project.read("fit-model", "training.json"))["run_id"] != summary["run_id"]


def test_builtin_train_step_refuses_unknown_keys_before_training(project: Project) -> None:
    (project.root / "data").mkdir()
    (project.root / "data" / "p.csv").write_text("x,label\n1,0\n2,1\n")
    spec = _yaml(project, """
pipeline: bad
steps:
  load:
    uses: threadline.prep.ingest
    with: {sources: [data/p.csv]}
  model:
    uses: threadline.train
    inputs: {table: "step:load"}
    with: {estimator: sklearn.linear_model.LogisticRegression, target: label, wokers: 2}
""")
    result = project.run(spec)  # type: ignore[arg-type]
    assert result.status == "failed"
    assert "unknown `with:` keys ['wokers']" in (result.steps["model"].error or "")
    assert project.repos.resolve("bad-model@main").commit is None
