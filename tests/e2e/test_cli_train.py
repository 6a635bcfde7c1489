"""`threadline train run` and `train resume` as a user runs them, then the model registered."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from integration.homes import cli_executable

if TYPE_CHECKING:
    from conftest import Shell

TIMEOUT = 120


def _train(shell: Shell, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([cli_executable(), "train", *args], cwd=shell.cwd,
                            env=shell.env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == code, (f"exit {result.returncode}\nstdout: {result.stdout}\n"
                                       f"stderr: {result.stderr}")
    return result


def _json(shell: Shell, *args: str) -> Any:
    return json.loads(_train(shell, *args, "--json").stdout)


def _commit_training_table(shell: Shell, X: np.ndarray, y: np.ndarray) -> None:
    """A new home with `churn@main:train.parquet`: columns f0..f3 and `label`."""
    (shell.cwd / "src").mkdir()
    columns = {f"f{i}": X[:, i] for i in range(4)}
    pq.write_table(pa.table({**columns, "label": y}), shell.cwd / "src/train.parquet")
    shell.run("init")
    shell.run("data", "create", "churn")
    shell.run("data", "commit", "churn", "src", "-m", "training data")


def test_train_a_config_then_register_the_model(shell: Shell) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    _commit_training_table(shell, X, y)
    (shell.cwd / "train.yaml").write_text(
        "estimator: sklearn.linear_model.SGDClassifier\nparams: {tol: null}\n"
        "data: churn@main:train.parquet\ntarget: label\nstrategy: sync\nepochs: 3\nworkers: 2\nseed: 4\n")
    trained = _json(shell, "run", "--config", "train.yaml")
    assert trained["strategy"] == "sync"
    assert trained["metrics"]["train_score"] > 0.95
    run = shell.json("runs", "show", trained["run_id"])
    assert run["params"]["estimator"] == "sklearn.linear_model.SGDClassifier"
    human = _train(shell, "run", "--config", "train.yaml").stdout
    assert "model logged as artifact 'model'" in human
    assert "train_score" in human
    resumed = _json(shell, "resume", trained["run_id"][:10])
    assert resumed["run_id"] != trained["run_id"]
    assert resumed["metrics"]["epochs_run"] == 0  # it had finished: nothing left to run
    version = shell.json("models", "register", "churn", "--run", trained["run_id"])
    assert (version["version"], version["run_id"], version["flavor"]) == (1, trained["run_id"], "sklearn")


def test_a_refused_estimator_is_one_line_and_exit_code_2(shell: Shell) -> None:
    shell.run("init")
    (shell.cwd / "bad.yaml").write_text("estimator: os.system\ndata: x@main:t.parquet\ntarget: y\n")
    result = _train(shell, "run", "--config", "bad.yaml", code=2)
    assert result.stderr.strip().startswith("error: estimator 'os.system' is not allowed")
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_a_torch_config_with_ddp_then_resume_it(shell: Shell) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(800, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    _commit_training_table(shell, X, y)
    (shell.cwd / "train.yaml").write_text(
        "estimator: threadline.train.TorchModel\n"
        "params: {factory: 'threadline.train.torch_nets:mlp', params: {features: 4, classes: 2, hidden: 8},\n"
        "         lr: 0.1, momentum: 0.9, batch_size: 32}\n"
        "data: churn@main:train.parquet\ntarget: label\nstrategy: ddp\nepochs: 2\nworkers: 2\nseed: 4\n")
    trained = _json(shell, "run", "--config", "train.yaml")
    assert trained["strategy"] == "ddp"
    assert trained["metrics"]["train_score"] > 0.9
    run = shell.json("runs", "show", trained["run_id"])
    assert run["params"]["estimator"] == "threadline.train.torch_model.TorchModel"
    resumed = _json(shell, "resume", trained["run_id"][:10])
    assert resumed["strategy"] == "ddp"
    assert resumed["metrics"]["epochs_run"] == 0  # it had finished: nothing left to run
