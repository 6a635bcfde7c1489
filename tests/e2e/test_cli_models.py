"""`threadline models ...` through the real CLI, on models set up with the Python API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conftest import Shell

SETUP = """
import json, sys
from pathlib import Path
import numpy as np
from sklearn.linear_model import LogisticRegression
from threadline.config import load_settings
from threadline.data import connect
from threadline.registry import ModelRegistry, autolog
from threadline.tracking import start_run

repos = connect(load_settings())
repos.create("sales")
rng = np.random.default_rng(0)
X = rng.normal(size=(80, 3))
y = (X[:, 0] > 0).astype(int)
heads = []
registry = ModelRegistry(repos)
for accuracy, rows in ((0.9, "1\\n2\\n"), (0.7, "1\\n2\\n3\\n")):
    open("t.csv", "w").write("a\\n" + rows)
    heads.append(repos.commit("sales", [Path("t.csv")], "data").commit.id)
    registry.register("churn", LogisticRegression().fit(X, y), data=["sales@main:t.csv"],
                      metrics={"accuracy": accuracy}, example=X[:4], description="churn model")
autolog.autolog()
with start_run("train", inputs=["sales@main:t.csv"]) as run:
    LogisticRegression(C=0.3).fit(X, y)
json.dump({"run": run.id, "c1": heads[0], "c2": heads[1]}, sys.stdout)
"""


def _setup(shell: Shell) -> dict[str, Any]:
    shell.run("init")
    loaded: dict[str, Any] = shell.python_json(SETUP)
    return loaded


def _sales_head(shell: Shell) -> str:
    repos = {r["name"]: r for r in shell.json("data", "list")}
    head: str = repos["sales"]["branches"]["main"]
    return head


def test_register_list_show_alias_and_history(shell: Shell) -> None:
    state = _setup(shell)
    version = shell.json("models", "register", "churn", "--run", state["run"])
    assert version["version"] == 3
    assert version["run_id"] == state["run"]
    assert version["data"][0]["commit"] == state["c2"]
    assert "training_accuracy" in version["metrics"]
    listed = shell.json("models", "list")
    assert [(m["name"], m["latest_version"]) for m in listed] == [("churn", 3)]
    shell.run("models", "alias", "churn", "staging", "3", "-m", "try the autologged one")
    shown = shell.json("models", "show", "churn")
    assert shown["aliases"] == {"staging": 3}
    assert [v["version"] for v in shown["versions"]] == [1, 2, 3]
    assert "churn model" in shell.run("models", "show", "churn").stdout
    shell.run("models", "alias", "churn", "staging", "--delete")
    history = shell.json("models", "history", "churn", "--alias", "staging")
    assert [(h["action"], h["old_version"], h["new_version"]) for h in history] == [
        ("delete", 3, None), ("set", None, 3)]
    assert history[1]["message"] == "try the autologged one"


def test_policy_promote_refusal_and_rollback_with_data(shell: Shell) -> None:
    state = _setup(shell)
    (shell.cwd / "policy.yaml").write_text(
        "production:\n  - {metric: accuracy, min: 0.8}\n  - {approvers: [alice]}\n")
    shell.run("models", "policy", "churn", "--file", "policy.yaml")
    assert shell.json("models", "policy", "churn", "--show")["production"][0] == {
        "metric": "accuracy", "min": 0.8}

    refused = shell.run("models", "promote", "churn", "2", "--to", "production", "--approve",
                        "alice", code=10)
    line = refused.stderr.strip()
    assert line.startswith("error: promotion of churn v2 to production refused by 1 gate(s)")
    assert "metric accuracy: measured 0.7, required >= 0.8" in line
    assert len(line.splitlines()) == 1
    no_approval = shell.run("models", "promote", "churn", "1", "--to", "production", code=10)
    assert "approval" in no_approval.stderr
    gated = shell.run("models", "alias", "churn", "production", "2", code=2)
    assert "has promotion gates" in gated.stderr

    shell.run("models", "promote", "churn", "1", "--to", "production", "--approve", "alice")
    shell.run("models", "alias", "churn", "production", "2", "--force", "-m", "hotfix")
    assert _sales_head(shell) == state["c2"]

    back = shell.json("models", "rollback", "churn", "--alias", "production", "--with-data")
    assert (back["action"], back["old_version"], back["new_version"]) == ("rollback", 2, 1)
    assert _sales_head(shell) == state["c1"]
    assert back["meta"]["data_moves"] == [
        {"repo": "sales", "branch": "main", "old": state["c2"], "new": state["c1"]}]

    shell.run("models", "rollback", "churn", "--undo")
    assert _sales_head(shell) == state["c2"]
    assert shell.json("models", "show", "churn")["aliases"] == {"production": 2}


def test_errors_are_one_line_with_their_exit_codes(shell: Shell) -> None:
    shell.run("init")
    missing = shell.run("models", "show", "nope", code=3)
    assert missing.stderr.startswith("error: model 'nope' is not registered")
    bad = shell.run("models", "history", "nope", "--alias", "3", code=2)
    assert "invalid alias '3'" in bad.stderr
    assert shell.json("models", "list") == []
