"""`threadline serve --backend ray`: the same deployment as Ray Serve replicas on a real local
Ray cluster (started by the command itself), answering like the model, from two replica
processes, and shutting down cleanly on SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import needs
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from threadline.registry import ModelRegistry
from threadline.serving.deployments import Deployments

from .homes import cli_executable

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

FEATURES = ["a", "b", "c"]
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ray_serve_replicas_answer_like_the_model(home: DataRepos) -> None:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        needs.missing("Ray Serve", "pip install 'threadline[ray]'")
    registry = ModelRegistry(home)
    rng = np.random.default_rng(4)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    model = LogisticRegression().fit(x, (x.a + x.c > 0).astype(int))
    registry.register("churn", model, example=x.head(5))
    Deployments(registry).create("web", [{"model": "churn@1"}], {"cache": {"enabled": False}})
    had_token_file = TOKEN_FILE.exists()
    port = _port()
    # a private token: Ray must not read or write the user's ~/.ray/auth_token for this cluster
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([cli_executable(), "serve", "web", "--backend", "ray", "--replicas", "2",
                             "--port", str(port), "--no-log"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Ray Serve did not become ready"
            time.sleep(0.5)
        rows = x.head(8)
        answer = httpx.post(f"{url}/predict", json=rows.to_dict(orient="records"), timeout=30)
        assert answer.status_code == 200
        assert answer.json()["predictions"] == model.predict(rows).tolist()
        assert answer.headers["x-model-version"] == "churn/1"
        pids = set()
        for _ in range(60):
            pids.add(httpx.get(f"{url}/deployments/web/status", timeout=10).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2  # two replica processes answer
        assert httpx.post(f"{url}/predict", json=[{"a": 1}], timeout=30).status_code == 422
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        if not had_token_file:
            TOKEN_FILE.unlink(missing_ok=True)
    assert proc.returncode == 0, out.decode()[-3000:]
