"""`threadline serve` as a real process: clients nobody here wrote (Triton's HTTP client for the
Open Inference Protocol V2, MLflow's scoring-server client), two worker processes, and a
SIGTERM that lets an in-flight request finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import needs
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from threadline.registry import ModelRegistry
from threadline.serving.deployments import Deployments

from .homes import cli_executable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from threadline.data.repos import DataRepos

FEATURES = [f"f{i}" for i in range(5)]
SLEEPY = ("import time\nimport numpy as np\n\ndef predict(data):\n"
          "    time.sleep(float(np.asarray(data)[0, 0]))\n    return np.asarray(data)[:, 0] * 2\n")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(home: DataRepos, tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(home)
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(200, 5)), columns=FEATURES)
    y = (x.f0 - x.f2 > 0).astype(int)
    registry.register("churn", LogisticRegression().fit(x, y), example=x.head(5))
    registry.set_alias("churn", "production", 1)
    code = tmp_path / "sleepy.py"
    code.write_text(SLEEPY)
    registry.register("sleepy", flavor="pyfunc", code=str(code), entry="predict",
                      example=np.full((1, 2), 0.01))
    return registry


class Served:
    """`threadline serve NAME` in a child process."""

    def __init__(self, names: list[str], *extra: str) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [cli_executable(), "serve", *names, "--port", str(self.port), *extra],
            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read().decode() if self.proc.stdout else ""
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return out.decode() if out else ""


@pytest.fixture
def serve_process() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


def test_triton_client_speaks_v2_to_threadline(registry: ModelRegistry,
                                               serve_process: list[Served]) -> None:
    tritonclient_http = needs.module("tritonclient.http", "pip install -e '.[dev]'")
    Deployments(registry).create("churn", [{"model": "churn@production"}])
    server = Served(["churn"], "--no-log")
    serve_process.append(server)
    client = tritonclient_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    meta = client.get_model_metadata("churn")
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    rows = np.random.default_rng(2).normal(size=(4, 5))
    inputs = []
    for i, name in enumerate(FEATURES):
        item = tritonclient_http.InferInput(name, [4], "FP64")
        item.set_data_from_numpy(rows[:, i].copy(), binary_data=False)
        inputs.append(item)
    outputs = [tritonclient_http.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer("churn", inputs, outputs=outputs)
    expected = registry.load_model("churn@1").predict(pd.DataFrame(rows, columns=FEATURES))
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)
    assert result.get_response()["model_version"] == "1"


def test_mlflow_scoring_client_format_is_answered(registry: ModelRegistry,
                                                  serve_process: list[Served]) -> None:
    Deployments(registry).create("churn", [{"model": "churn@production"}])
    server = Served(["churn"], "--no-log")
    serve_process.append(server)
    rows = pd.DataFrame(np.random.default_rng(3).normal(size=(3, 5)), columns=FEATURES)
    # the client runs in its own interpreter, as `mlflow models predict` would
    script = (
        "import io, json, sys\nimport pandas as pd\n"
        "from mlflow.pyfunc.scoring_server.client import ScoringServerClient\n"
        "rows = pd.read_json(io.StringIO(sys.argv[2]), orient='split')\n"
        "print(json.dumps(ScoringServerClient('127.0.0.1', int(sys.argv[1])).invoke(rows).get_predictions()"
        ".iloc[:, 0].tolist()))\n")
    done = subprocess.run([sys.executable, "-c", script, str(server.port), rows.to_json(orient="split")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = registry.load_model("churn@1").predict(rows).tolist()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_two_workers_answer_and_sigterm_lets_inflight_requests_finish(
        registry: ModelRegistry, serve_process: list[Served]) -> None:
    Deployments(registry).create("sleepy", [{"model": "sleepy@1"}],
                                 {"allow_code": True, "cache": {"enabled": False}})
    server = Served(["sleepy"], "--workers", "2", "--no-log")
    serve_process.append(server)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(6):
            assert client.post("/predict", json={"instances": [[0.0, 1.0]]}).status_code == 200
        metrics = client.get("/metrics").text
    served = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("threadline_serving_requests_total{"))
    assert served >= 6  # both workers' counts meet in one exposition
    # a request that takes 1.5 s is in flight when SIGTERM arrives: it still gets its answer
    answer: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answer.append(
        httpx.post(f"{server.url}/predict", json={"instances": [[1.5, 0.0]]}, timeout=30)))
    slow.start()
    deadline = time.monotonic() + 10
    while "threadline_serving_inflight_requests{deployment=\"sleepy\"} 1.0" not in \
            httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    slow.join(30)
    assert answer
    assert answer[0].status_code == 200
    assert answer[0].json()["predictions"] == [3.0]
    server.proc.wait(60)
    assert server.proc.returncode == 0
