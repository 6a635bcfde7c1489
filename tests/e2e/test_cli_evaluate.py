"""`threadline evaluate` through the real CLI, on models registered with the Python API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conftest import Shell

SETUP = """
import json, sys
from pathlib import Path
import numpy as np
import pyarrow as pa, pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from threadline.config import load_settings
from threadline.data import connect
from threadline.registry import ModelRegistry

repos = connect(load_settings())
rng = np.random.default_rng(0)
x = rng.normal(size=(500, 2))
y = (x[:, 0] + 0.3 * rng.normal(size=500) > 0).astype(int)
plan = np.array(["basic", "pro"], dtype=object)[np.arange(500) % 2]
frame = pa.table({"a": x[:, 0], "b": x[:, 1], "plan": plan, "churned": y}).to_pandas()
registry = ModelRegistry(repos)
registry.register("churn", LogisticRegression().fit(frame[["b"]].assign(a=0.0)[["a", "b"]], y),
                  example=frame[["a", "b"]].head(3))
registry.register("churn", LogisticRegression().fit(frame[["a", "b"]], y),
                  example=frame[["a", "b"]].head(3))
registry.set_alias("churn", "production", 1)
Path("splits").mkdir()
pq.write_table(pa.Table.from_pandas(frame), "splits/validation.parquet")
repos.create("churn-splits")
commit = repos.commit("churn-splits", [Path("splits")], "validation").commit.id
json.dump({"commit": commit}, sys.stdout)
"""

REF = "churn-splits@main:validation.parquet"


def _setup(shell: Shell) -> dict[str, Any]:
    shell.run("init")
    loaded: dict[str, Any] = shell.python_json(SETUP)
    return loaded


def test_evaluate_against_the_champion_with_json_report_and_run(shell: Shell) -> None:
    state = _setup(shell)
    out = shell.json("evaluate", "churn@2", REF, "--target", "churned", "--slice", "plan",
                     "--against", "churn@production", "--report", "report.html",
                     "--replicates", "200")
    assert out["model"] == {"uri": "churn@2", "name": "churn", "version": 2, "flavor": "sklearn"}
    assert out["against"]["version"] == 1
    assert out["data"]["commit"] == state["commit"]
    assert out["rows"] == 500
    assert out["task"] == "classification"
    assert out["metrics"]["accuracy"] > 0.8
    verdicts = {c["metric"]: c["verdict"] for c in out["comparison"]}
    assert verdicts["accuracy"] == "challenger better"
    assert sorted((s["value"], s["rows"]) for s in out["slices"]) == [("basic", 250), ("pro", 250)]
    page = (shell.cwd / "report.html").read_text()
    assert "<h2>Champion/challenger</h2>" in page
    assert "<svg" in page

    runs = shell.json("runs", "list", "--experiment", "evaluations")
    assert [r["info"]["id"] for r in runs] == [out["run_id"]]

    shown = shell.run("evaluate", "churn@production", REF, "--target", "churned", "--no-record")
    assert "accuracy" in shown.stdout
    assert "95% CI" in shown.stdout
    assert "Recorded as run" not in shown.stderr


def test_evaluate_errors_are_one_line(shell: Shell) -> None:
    _setup(shell)
    missing = shell.run("evaluate", "churn@2", REF, "--target", "nope", code=2)
    line = missing.stderr.strip()
    assert line.startswith(f"error: {REF} has no target column 'nope'")
    assert len(line.splitlines()) == 1
    bad_task = shell.run("evaluate", "churn@2", REF, "--target", "churned", "--task", "ranking", code=2)
    assert "--task must be classification or regression" in bad_task.stderr
    unknown = shell.run("evaluate", "nope@1", REF, "--target", "churned", code=3)
    assert "model 'nope' is not registered" in unknown.stderr
