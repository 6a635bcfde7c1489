"""`threadline pipeline ...` through the real CLI on a threadline.yaml: run, cached re-run,
dry run, new commits, a failing step, runs, show, impact, watch."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from integration.homes import cli_executable

from .conftest import CLI_TIMEOUT

if TYPE_CHECKING:
    from .conftest import Shell

YAML = f"""
pipeline: words
steps:
  count:
    run: {sys.executable} count.py {{inputs.docs}} {{output}} {{params.min_len}}
    inputs:
      docs: {{ref: "docs@main", datums: "glob:*.txt"}}
    params: {{min_len: 3}}
  total:
    run: ["{sys.executable}", total.py, "{{inputs.counts}}", "{{output}}"]
    inputs: {{counts: "step:count"}}
"""
COUNT = """
import pathlib, sys
src, out, min_len = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
for f in src.rglob("*.txt"):
    words = [w for w in f.read_text().split() if len(w) >= min_len]
    (out / "count").write_text(str(len(words)))
    if "FAIL" in words:
        sys.exit("refusing " + f.name)
"""
TOTAL = """
import pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(out / "total").write_text(str(sum(int(p.read_text()) for p in src.rglob("count"))))
"""


def pipe(shell: Shell, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """`threadline pipeline ARGS`, checked for the expected exit code."""
    result = subprocess.run([cli_executable(), "pipeline", *args], cwd=shell.cwd, env=shell.env,
                            capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    assert result.returncode == code, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def pipe_json(shell: Shell, *args: str, code: int = 0) -> Any:
    return json.loads(pipe(shell, *args, "--json", code=code).stdout)


def _docs(shell: Shell, files: dict[str, str]) -> None:
    docs = shell.cwd / "docs"
    if docs.exists():
        for old in docs.iterdir():
            old.unlink()
    docs.mkdir(exist_ok=True)
    for name, text in files.items():
        (docs / name).write_text(text)
    shell.run("data", "commit", "docs", "docs", "-m", "docs")


def test_a_yaml_pipeline_through_the_cli(shell: Shell) -> None:
    shell.run("init")
    shell.run("data", "create", "docs")
    (shell.cwd / "threadline.yaml").write_text(YAML)
    (shell.cwd / "count.py").write_text(COUNT)
    (shell.cwd / "total.py").write_text(TOTAL)
    _docs(shell, {"a.txt": "the cat sat on a mat", "b.txt": "dogs bark loudly"})

    first = pipe_json(shell, "run")
    assert first["status"] == "succeeded"
    assert {s["step"]: (s["status"], s["processed"]) for s in first["steps"]} == {
        "count": ("succeeded", 2), "total": ("succeeded", 1)}
    assert shell.raw("data", "cat", "words-total@main:total") == b"7"

    again = pipe_json(shell, "run")
    assert {s["status"] for s in again["steps"]} == {"cached"}

    _docs(shell, {"a.txt": "the cat sat on a mat", "b.txt": "dogs bark loudly", "c.txt": "one more"})
    dry = pipe_json(shell, "run", "--dry-run")
    count = next(s for s in dry["steps"] if s["step"] == "count")
    assert dry["run"] is None
    assert count["status"] == "would run"
    assert count["reasons"][0].startswith("input docs changed (")
    assert (count["processed"], count["skipped"]) == (1, 2)
    human = pipe(shell, "run", "--dry-run").stdout
    assert "would run" in human
    assert "input docs changed" in human

    third = pipe_json(shell, "run", "--param", "min_len=4")
    count = next(s for s in third["steps"] if s["step"] == "count")
    assert (count["processed"], count["skipped"]) == (3, 0)  # a parameter changes every datum
    assert shell.raw("data", "cat", "words-total@main:total") == b"4"

    _docs(shell, {"a.txt": "the cat sat on a mat", "bad.txt": "FAIL here"})
    failed = pipe(shell, "run", "--param", "min_len=4", code=1)
    assert "pipeline words failed: count:" in failed.stderr
    assert "refusing bad.txt" in failed.stderr
    assert "nothing was published" in failed.stderr

    runs = pipe_json(shell, "runs")
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded", "succeeded"]
    shown = pipe_json(shell, "show", runs[0]["id"][:10])
    assert {s["step"]: s["status"] for s in shown["steps"]} == {"count": "failed", "total": "skipped"}
    assert "count" in pipe(shell, "show", runs[1]["id"]).stdout
    assert "words" in pipe(shell, "runs").stdout

    impact = pipe_json(shell, "impact", "docs@main")
    assert [s["step"] for s in impact["steps"]] == ["count", "total"]
    assert [s["step"] for s in pipe_json(shell, "impact", "params.min_len")["steps"]] == ["count", "total"]
    bad = pipe(shell, "impact", "ghost@main", code=3)
    assert bad.stderr.count("\n") == 1
    assert "is no step, parameter or existing data ref" in bad.stderr

    _docs(shell, {"a.txt": "the cat sat on a mat"})
    watched = pipe_json(shell, "watch", "--once")
    assert [(w["trigger"], w["status"]) for w in watched] == [("watch", "succeeded")]
    assert pipe_json(shell, "watch", "--once") == []


def test_cli_errors_are_one_line(shell: Shell) -> None:
    shell.run("init")
    missing = pipe(shell, "run", code=3)
    assert missing.stderr.strip().count("\n") == 0
    assert "no pipeline file" in missing.stderr
    (shell.cwd / "threadline.yaml").write_text("pipeline: p\nsteps: {a: {run: 'x {inputs.nope}'}}\n")
    bad = pipe(shell, "run", code=2)
    assert "step 'a': the command uses {inputs.nope}" in bad.stderr
    (shell.cwd / "threadline.yaml").write_text("pipeline: p\nsteps: {a: {run: echo}}\n")
    typo = pipe(shell, "run", "--param", "x=1", code=2)
    assert "no step of pipeline 'p' has a parameter 'x'" in typo.stderr


def test_a_ray_cluster_of_other_machines_needs_shared_engines(shell: Shell) -> None:
    shell.run("init")
    (shell.cwd / "threadline.yaml").write_text("pipeline: p\nsteps: {a: {run: echo}}\n")
    # Refused before connecting. 0.0.0.0 is not a loopback address, so the cluster counts as
    # one that may span machines; were the check skipped, a connection would stay on this host.
    for command in (["run"], ["watch", "--once"]):
        remote = pipe(shell, *command, "--executor", "ray", "--address", "0.0.0.0:6379", code=2)
        assert remote.stderr.strip().count("\n") == 0
        assert "cannot reach a SQLite database" in remote.stderr
        assert "THREADLINE_DATABASE_URL" in remote.stderr
        assert "--shared-filesystem" in remote.stderr
        local = pipe(shell, *command, "--address", "0.0.0.0:6379", code=2)
        assert "add --executor ray" in local.stderr
