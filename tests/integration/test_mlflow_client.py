"""The unmodified MLflow client against `threadline server`, both real processes on loopback.

The server runs as `threadline server` in a fresh home; the client runs in its
own interpreter with MLFLOW_TRACKING_URI pointing at it (so MLflow's process-wide state and
warnings stay out of pytest). What the client logged is then read back through Threadline's
own TrackingStore and ModelRegistry.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from typing import TYPE_CHECKING

import httpx
import pytest

from threadline.registry.registry import ModelRegistry
from threadline.tracking.store import TrackingStore

from .homes import CHILD_TIMEOUT, Home, cli_executable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

STARTUP_TIMEOUT = 60

CLIENT = r'''
import json, os, sys, tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

out = {}
exp_id = mlflow.create_experiment("exp-a")
mlflow.set_experiment("exp-a")
client = MlflowClient()
with mlflow.start_run(run_name="parent") as parent:
    run_id = parent.info.run_id
    mlflow.log_param("alpha", 0.5)
    mlflow.log_params({"beta": "x", "gamma": 3})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"auc": 0.91, "acc": 0.8})
    mlflow.set_tag("team", "ml")
    client.log_batch(run_id, metrics=[Metric("batch", float(i), 1000 + i, i) for i in range(5)],
                     params=[Param("p1", "v1")], tags=[RunTag("t1", "x")])
    src = Path(tempfile.mkdtemp())
    (src / "model.txt").write_text("hello model")
    mlflow.log_artifact(str(src / "model.txt"), artifact_path="model")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metric("auc", 0.7)
    try:
        mlflow.log_param("alpha", 0.6)
    except MlflowException as exc:
        out["param_change"] = exc.error_code
out["parent"], out["child"], out["experiment"] = run_id, child.info.run_id, exp_id
got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/model.txt",
                                         dst_path=tempfile.mkdtemp())
out["download"] = Path(got).read_text()
folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model",
                                            dst_path=tempfile.mkdtemp())
out["folder"] = sorted(os.listdir(folder))
out["listed"] = [f.path for f in client.list_artifacts(run_id, "model")]
out["text"] = mlflow.artifacts.load_text(f"runs:/{run_id}/model/model.txt")
runs = client.search_runs([exp_id], filter_string="metrics.auc > 0.5", order_by=["metrics.auc DESC"])
out["search"] = [r.info.run_id for r in runs]
out["search_none"] = len(client.search_runs([exp_id], filter_string="metrics.auc > 0.95"))
out["history"] = [[m.step, m.value] for m in client.get_metric_history(run_id, "loss")]
finished = client.get_run(run_id)
out["status"] = finished.info.status
out["end_time"] = finished.info.end_time
out["params"] = finished.data.params
out["child_parent"] = client.get_run(child.info.run_id).data.tags.get("mlflow.parentRunId")
client.create_registered_model("churn", description="churn model")
version = client.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
out["version"] = version.version
client.set_registered_model_alias("churn", "production", version.version)
out["by_alias"] = client.get_model_version_by_alias("churn", "production").version
out["aliases"] = client.get_registered_model("churn").aliases
out["download_uri"] = client.get_model_version_download_uri("churn", version.version)

# MLflow 3's notebook path: log_model -> register_model -> alias -> load by alias
import numpy as np
import mlflow.pyfunc
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 3.0]])
y = np.array([0, 0, 1, 1, 0, 1])
sk = LogisticRegression().fit(X, y)
with mlflow.start_run(run_name="train") as train:
    mlflow.log_param("C", 1.0)
    info = mlflow.sklearn.log_model(sk, name="model", pip_requirements=["scikit-learn"])
out["train"], out["model_id"], out["model_uri"] = train.info.run_id, info.model_id, info.model_uri
registered = mlflow.register_model(f"runs:/{train.info.run_id}/model", "churn-sk")
out["sk_version"] = registered.version
out["sk_source"] = registered.source
again = mlflow.register_model(info.model_uri, "churn-sk")
out["sk_version2"] = again.version
client.set_registered_model_alias("churn-sk", "production", registered.version)
loaded = mlflow.pyfunc.load_model("models:/churn-sk@production")
out["predict_equal"] = loaded.predict(X).tolist() == sk.predict(X).tolist()
out["predict_by_number"] = mlflow.pyfunc.load_model("models:/churn-sk/2").predict(X).tolist()
out["expected"] = sk.predict(X).tolist()
out["predict_by_run"] = mlflow.pyfunc.load_model(f"runs:/{train.info.run_id}/model").predict(X).tolist()
logged = client.get_logged_model(info.model_id)
out["logged"] = {"status": str(logged.status), "name": logged.name,
                 "run": logged.source_run_id, "params": logged.params,
                 "location": logged.artifact_location}
found = mlflow.search_logged_models(experiment_ids=[exp_id], filter_string="name = 'model'",
                                    output_format="list")
out["searched"] = [m.model_id for m in found]
out["outputs"] = [o.model_id for o in client.get_run(train.info.run_id).outputs.model_outputs]
try:
    client.create_model_version("churn-sk", info.model_uri, run_id=run_id)
except MlflowException as exc:
    out["wrong_run"] = exc.error_code
try:
    client.get_run("0" * 32)
except MlflowException as exc:
    out["missing_run"] = exc.error_code
try:
    client.create_registered_model("churn")
except MlflowException as exc:
    out["duplicate_model"] = exc.error_code
print(json.dumps(out))
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: uvicorn drains and runs the lifespan's shutdown
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=CHILD_TIMEOUT)


@pytest.fixture
def server(make_home: Callable[..., Home]) -> Iterator[tuple[Home, str]]:
    """A `threadline server` child on a free loopback port of a fresh home; stopped afterwards."""
    home = make_home()
    port = _free_port()
    proc = subprocess.Popen(
        [cli_executable(), "server", "--port", str(port)],
        cwd=home.root, env=home.env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = threading.Event()
    log: list[str] = []

    def watch() -> None:  # uvicorn logs to stderr; reading it also keeps the pipe from filling
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if "Application startup complete" in line:
                ready.set()
        ready.set()  # the process ended: wake the waiter, which then sees it

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert ready.wait(STARTUP_TIMEOUT), "server did not start:\n" + "".join(log)
        assert proc.poll() is None, "server exited:\n" + "".join(log)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/api/v1/health", timeout=10).json() == {"status": "ok"}
        yield home, url
    finally:
        _stop(proc)
        watcher.join(timeout=15)
        assert proc.stderr is not None
        proc.stderr.close()
    assert "Application shutdown complete" in "".join(log)


def test_mlflow_client_round_trip(server: tuple[Home, str]) -> None:
    home, url = server
    client = home.python(CLIENT, extra_env={
        "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "PYTHONWARNINGS": "ignore",
        "GIT_PYTHON_REFRESH": "quiet"})
    stdout, stderr = client.communicate(timeout=CHILD_TIMEOUT)
    assert client.returncode == 0, stderr[-4000:]
    got = json.loads(stdout.strip().splitlines()[-1])

    assert got["download"] == "hello model"
    assert got["folder"] == ["model.txt"]
    assert got["listed"] == ["model/model.txt"]
    assert got["text"] == "hello model"
    assert got["search"] == [got["parent"], got["child"]]  # auc 0.91 before 0.7
    assert got["search_none"] == 0
    assert got["history"] == [[0, 1.0], [1, 0.5], [2, pytest.approx(1 / 3)]]
    assert got["status"] == "FINISHED"
    assert got["end_time"] is not None
    assert got["params"] == {"alpha": "0.5", "beta": "x", "gamma": "3", "p1": "v1"}
    assert got["param_change"] == "INVALID_PARAMETER_VALUE"
    assert got["child_parent"] == got["parent"]
    assert got["version"] == "1"
    assert got["by_alias"] == "1"
    assert got["aliases"] == {"production": "1"}
    assert got["download_uri"] == f"mlflow-artifacts:/{got['experiment']}/{got['parent']}/artifacts/model"
    assert got["missing_run"] == "RESOURCE_DOES_NOT_EXIST"
    assert got["duplicate_model"] == "RESOURCE_ALREADY_EXISTS"

    # the same data, read through Threadline's own stores
    repos = home.open()
    store = TrackingStore(repos)
    parent = store.get_run(got["parent"])
    assert parent.info.name == "parent"
    assert parent.info.status == "FINISHED"
    assert parent.params["alpha"] == "0.5"
    assert parent.metrics["auc"].value == pytest.approx(0.91)
    assert parent.metrics["batch"].step == 4
    assert parent.tags["team"] == "ml"
    assert [m.value for m in store.metric_history(got["parent"], "loss")] == pytest.approx([1, 0.5, 1 / 3])
    assert store.read_artifact(got["parent"], "model/model.txt") == b"hello model"
    child = store.get_run(got["child"])
    assert child.info.parent_id == got["parent"]
    assert store.get_experiment(int(got["experiment"])).name == "exp-a"
    registry = ModelRegistry(repos, store)
    version = registry.get_version("churn", "production")
    assert (version.version, version.flavor, version.run_id) == (1, "mlflow", got["parent"])
    assert registry.get_model("churn").description == "churn model"

    # MLflow 3 logged models: logged, registered twice, loaded by alias and by number
    model_id = got["model_id"]
    assert got["model_uri"] == f"models:/{model_id}"
    assert (got["sk_version"], got["sk_version2"]) == ("1", "2")
    assert got["sk_source"] == f"models:/{model_id}"
    assert got["predict_equal"] is True
    assert got["predict_by_number"] == got["expected"]
    assert got["predict_by_run"] == got["expected"]
    assert got["logged"] == {
        "status": "READY", "name": "model", "run": got["train"], "params": {"C": "1.0"},
        "location": f"mlflow-artifacts:/{got['experiment']}/models/{model_id}/artifacts"}
    assert got["searched"] == [model_id]
    assert got["outputs"] == [model_id]
    assert got["wrong_run"] == "INVALID_PARAMETER_VALUE"
    sk_version = registry.get_version("churn-sk", "production")
    assert (sk_version.flavor, sk_version.run_id, sk_version.external_source) == (
        "mlflow", got["train"], f"models:/{model_id}")
    mlmodel = store.read_artifact(got["train"], f"logged_models/{model_id}/MLmodel").decode()
    assert f"model_id: {model_id}" in mlmodel
    assert "sklearn:" in mlmodel
