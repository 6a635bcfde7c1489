"""`threadline runs ...` through the real CLI on runs logged by a training script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

from .conftest import CLI_TIMEOUT

if TYPE_CHECKING:
    from .conftest import Shell

TRAIN = textwrap.dedent(
    """
    from pathlib import Path
    from threadline.tracking import start_run

    Path("model.bin").write_bytes(b"weights")
    for name, c, aucs in (("lr-a", "1.0", [0.7, 0.8, 0.91]), ("lr-b", "0.1", [0.6, 0.75]),
                          ("lr-c", "1.0", [0.5])):
        with start_run(name, experiment="churn", inputs=["splits@main:train.csv"]) as run:
            run.log_params({"C": c, "penalty": "l2"})
            for step, auc in enumerate(aucs):
                run.log_metric("auc", auc, step=step)
            run.set_tag("team", "ml")
            run.log_artifact("model.bin", "model")
            print(run.id)
    """
)


def _train(shell: Shell) -> list[str]:
    shell.run("init")
    shell.run("data", "create", "splits")
    (shell.cwd / "src").mkdir()
    (shell.cwd / "src" / "train.csv").write_text("a,b\n1,2\n")
    shell.run("data", "commit", "splits", "src", "-m", "splits")
    done = subprocess.run([sys.executable, "-c", TRAIN], cwd=shell.cwd, env=shell.env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_list_show_compare_history(shell: Shell) -> None:
    a, b, c = _train(shell)
    experiments = shell.json("runs", "experiments")
    assert [e["name"] for e in experiments] == ["churn"]

    listed = shell.json("runs", "list", "--experiment", "churn")
    assert [r["info"]["id"] for r in listed] == [c, b, a]
    best = shell.json("runs", "list", "--filter", "metrics.auc > 0.7 and params.C = '1.0'",
                      "--order-by", "metrics.auc DESC")
    assert [r["info"]["name"] for r in best] == ["lr-a"]
    ordered = shell.json("runs", "list", "--order-by", "metrics.auc", "--max", "2")
    assert [r["info"]["name"] for r in ordered] == ["lr-c", "lr-b"]
    table = shell.run("runs", "list").stdout
    assert "lr-a" in table
    assert a[:12] in table

    shown = shell.json("runs", "show", a[:8])
    assert shown["info"]["id"] == a
    assert shown["info"]["status"] == "FINISHED"
    assert shown["params"] == {"C": "1.0", "penalty": "l2"}
    assert shown["metrics"]["auc"]["value"] == 0.91
    assert shown["metrics"]["auc"]["step"] == 2
    assert shown["tags"]["team"] == "ml"
    assert shown["inputs"][0]["ref"] == "splits@main:train.csv"
    assert shown["artifacts"] == [{"path": "model/model.bin", "is_dir": False, "size": 7}]
    human = shell.run("runs", "show", a).stdout
    assert "model/model.bin" in human
    assert "penalty" in human

    diff = shell.json("runs", "compare", a, b, c[:10])
    assert diff["runs"] == [a, b, c]
    assert diff["rows"] == [
        {"kind": "param", "key": "C", "values": ["1.0", "0.1", "1.0"]},
        {"kind": "metric", "key": "auc", "values": [0.91, 0.75, 0.5]},
    ]
    everything = shell.json("runs", "compare", a, b, "--all")
    assert {"kind": "param", "key": "penalty", "values": ["l2", "l2"]} in everything["rows"]
    assert "penalty" not in shell.run("runs", "compare", a, b).stdout

    history = shell.json("runs", "history", a[:6], "auc")
    assert [(p["step"], p["value"]) for p in history] == [(0, 0.7), (1, 0.8), (2, 0.91)]


def test_errors_are_one_line_with_exit_codes(shell: Shell) -> None:
    a, _b, _c = _train(shell)
    cases = [
        (["runs", "list", "--filter", "metrics.auc >"], 2, "expected a number"),
        (["runs", "list", "--filter", "params.C > 1"], 2, "at position 9 found '>'"),
        (["runs", "show", "abc"], 2, "at least 6 of its hex digits"),
        (["runs", "show", "ffffffffff" if not a.startswith("ffffffffff") else "0000000000"], 3,
         "no run id starts with"),
        (["runs", "list", "--experiment", "nope"], 3, "experiment 'nope' does not exist"),
        (["runs", "compare", a], 2, "at least two runs"),
    ]
    for args, code, message in cases:
        result = shell.run(*args, code=code)
        assert result.stderr.startswith("error:"), result.stderr
        assert message in result.stderr.replace("\n", " ")
