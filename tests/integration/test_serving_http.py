"""The serving app over real HTTP on loopback: protocols, refusals, overload, deadlines, routing,
hot swap under load, the version-aware cache, auth, the prediction log and feedback.

The server is uvicorn in a thread of the test process, so a test model (pyfunc) can be held
inside a call by a gate the test controls: tests synchronise on the gate's events, not sleeps.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
import types
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from threadline.errors import InvalidArgument
from threadline.registry import ModelRegistry
from threadline.serving.app import create_app
from threadline.serving.auth import Tokens
from threadline.serving.deployments import Deployments
from threadline.serving.feedback import read_feedback
from threadline.serving.predlog import read_log
from threadline.serving.server import serve

from .servers import Running, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from threadline.data.repos import DataRepos

FEATURES = [f"f{i}" for i in range(4)]
GATE = "tl_serving_test_gate"
SLOW_MODEL = f'''
import sys, time
import numpy as np

def predict(data):
    gate = sys.modules.get("{GATE}")
    time.sleep(0.002)  # slow enough to run on the version's thread, not the event loop
    if gate is not None:
        gate.calls.append(len(data))
        if gate.hold.is_set():
            gate.entered.set()
            gate.release.wait(20)
    return np.asarray(data, dtype=float)[:, 0] * 10
'''


class Gate(types.ModuleType):
    """What the slow test model reads: its calls, and events that hold it inside a call."""

    def __init__(self) -> None:
        super().__init__(GATE)
        self.calls: list[int] = []
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate()
    sys.modules[GATE] = made
    yield made
    made.release.set()
    sys.modules.pop(GATE, None)


@pytest.fixture
def registry(home: DataRepos, tmp_path: Path) -> ModelRegistry:
    """Versions 1-3 of `churn` (logistic regressions) and `slow` (the gated pyfunc)."""
    registry = ModelRegistry(home)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=FEATURES)
    y = (x.f0 + 0.5 * x.f1 > 0).astype(int)
    for c in (1.0, 0.05, 0.001):
        registry.register("churn", LogisticRegression(C=c).fit(x, y), example=x.head(5))
    registry.set_alias("churn", "production", 1)
    code = tmp_path / "slow_model.py"
    code.write_text(SLOW_MODEL)
    registry.register("slow", flavor="pyfunc", code=str(code), entry="predict",
                      example=np.zeros((2, 3)))
    return registry


@pytest.fixture
def start(registry: ModelRegistry) -> Iterator[Callable[..., Running]]:
    """`start(name, routes, settings)`: create a deployment and serve it."""
    running: list[Running] = []
    deployments = Deployments(registry)

    def go(name: str, routes: list[dict[str, Any]], settings: dict[str, Any] | None = None, *,
           require_auth: bool = False) -> Running:
        deployments.create(name, routes, settings)
        server = Running(create_app(registry, deployments, [name], require_auth=require_auth))
        running.append(server)
        return server

    yield go
    for server in running:
        server.stop()


def _row(i: int = 0) -> dict[str, float]:
    return {f: float(i + k) / 7 for k, f in enumerate(FEATURES)}


def test_three_protocols_answer_like_the_model(start: Callable[..., Running],
                                               registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@production"}], {"cache": {"enabled": False}})
    model = registry.load_model("churn@1")
    rows = [_row(i) for i in range(5)]
    expected = model.predict(pd.DataFrame(rows)).tolist()
    got = server.client.post("/predict", json=rows)
    assert got.status_code == 200
    assert got.json()["predictions"] == expected
    assert got.headers["x-model-version"] == "churn/1"
    split = {"dataframe_split": {"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in rows]}}
    assert server.client.post("/invocations", json=split).json() == {"predictions": expected}
    records = {"dataframe_records": rows}
    assert server.client.post("/invocations", json=records).json() == {"predictions": expected}
    csv = ",".join(FEATURES) + "\n" + "\n".join(",".join(str(r[f]) for f in FEATURES) for r in rows)
    answer = server.client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.json() == {"predictions": expected}
    v2 = {"inputs": [{"name": f, "shape": [5], "datatype": "FP64", "data": [r[f] for r in rows]}
                     for f in FEATURES]}
    out = server.client.post("/v2/models/web/infer", json=v2).json()
    assert out["outputs"][0]["data"] == expected
    assert out["model_version"] == "1"
    assert server.client.get("/v2/models/web").json()["inputs"][0]["name"] == "f0"
    assert server.client.get("/v2/health/ready").status_code == 200
    assert server.client.post("/v2/models/web/versions/7/infer", json=v2).status_code == 404


def test_bad_requests_get_4xx_and_never_reach_the_model(start: Callable[..., Running], gate: Gate,
                                                        tmp_path: Path) -> None:
    server = start("slow", [{"model": "slow@1"}], {"allow_code": True, "max_body": 4096})
    gate.calls.clear()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    cases = [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'[{"a": 1}]', "application/json", 422, "tensor"),
        (b'{"instances": [[1, 2]]}', "application/json", 422, "shape"),
        (b'{"instances": [["a", "b", "c"]]}', "application/json", 422, None),
        (pickle.dumps(Exploit()), "application/python-pickle", 415, "pickle"),
        (pickle.dumps(Exploit()), "application/octet-stream", 415, None),
        (b"x" * 5000, "application/json", 413, "limit"),
    ]
    for body, kind, status, words in cases:
        answer = server.client.post("/predict", content=body, headers={"content-type": kind})
        assert answer.status_code == status, (body[:30], answer.text)
        if words:
            assert words in answer.json()["error"]["message"]
    assert not marker.exists()
    assert gate.calls == []  # none of them reached the model
    good = server.client.post("/predict", json={"instances": [[1, 2, 3]]})
    assert good.json()["predictions"] == [10.0]


def test_overload_gives_503_with_retry_after_and_no_other_5xx(start: Callable[..., Running],
                                                              gate: Gate) -> None:
    server = start("slow", [{"model": "slow@1"}],
                   {"allow_code": True, "max_concurrency": 1, "max_queue": 1,
                    "deadline_ms": 60_000, "cache": {"enabled": False}})
    gate.hold.set()
    statuses: list[int] = []

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            statuses.append(c.post("/predict", json={"instances": [[i, 0, 0]]}).status_code)

    first = threading.Thread(target=send, args=(1,))
    first.start()
    assert gate.entered.wait(20)  # the only slot is taken, inside the model
    queued = threading.Thread(target=send, args=(2,))
    queued.start()
    deadline = time.monotonic() + 20
    while server.client.get("/deployments/slow/status").json()["admitted"] < 2:
        assert time.monotonic() < deadline, "the second request was never admitted"
        time.sleep(0.01)
    refused = server.client.post("/predict", json={"instances": [[3, 0, 0]]})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert server.client.get("/metrics").status_code == 200  # metrics bypass admission
    gate.hold.clear()
    gate.release.set()
    first.join(30)
    queued.join(30)
    assert sorted(statuses) == [200, 200]


def test_deadline_gives_504_and_leaks_no_task(start: Callable[..., Running], gate: Gate) -> None:
    server = start("slow", [{"model": "slow@1"}],
                   {"allow_code": True, "deadline_ms": 300, "cache": {"enabled": False}})
    threads_before = threading.active_count()
    gate.hold.set()
    answer = server.client.post("/predict", json={"instances": [[1, 0, 0]]})
    assert answer.status_code == 504
    assert "deadline" in answer.json()["error"]["message"]
    gate.hold.clear()
    gate.release.set()
    assert server.client.post("/predict", json={"instances": [[2, 0, 0]]}).json()["predictions"] == [20.0]
    status = server.client.get("/deployments/slow/status").json()
    assert status["admitted"] == 0
    assert all(r["inflight"] == 0 for r in status["routes"])
    assert threading.active_count() <= threads_before + 1


def test_canary_share_is_sticky_and_shadow_answers_are_never_returned(
        start: Callable[..., Running]) -> None:
    server = start("web", [{"model": "churn@1", "weight": 80},
                           {"model": "churn@2", "weight": 20, "mode": "canary"},
                           {"model": "churn@3", "mode": "shadow"}], {"cache": {"enabled": False}})
    seen: dict[str, str] = {}
    for i in range(400):
        answer = server.client.post("/predict", json=[_row(i)], headers={"x-threadline-key": f"user{i}"})
        assert answer.status_code == 200
        seen[f"user{i}"] = answer.headers["x-model-version"]
    versions = list(seen.values())
    assert set(versions) == {"churn/1", "churn/2"}  # never the shadow's
    assert 0.12 < versions.count("churn/2") / len(versions) < 0.28
    for key in list(seen)[:40]:
        again = server.client.post("/predict", json=[_row(1)], headers={"x-threadline-key": key})
        assert again.headers["x-model-version"] == seen[key]
    status = server.client.get("/deployments/web/status").json()
    assert {r["route"] for r in status["routes"]} == {"primary", "canary", "shadow"}


def test_alias_move_under_load_fails_no_request(start: Callable[..., Running],
                                                registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@production"}], {"refresh_s": 0.1})
    stop = threading.Event()
    answers: list[tuple[int, str]] = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                r = c.post("/predict", json=[_row(i % 50)])
                answers.append((r.status_code, r.headers.get("x-model-version", "")))
                i += 1

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    while len(answers) < 50:
        time.sleep(0.01)
    registry.set_alias("churn", "production", 2)
    deadline = time.monotonic() + 30
    while not any(v == "churn/2" for _, v in answers[-20:]) and time.monotonic() < deadline:
        time.sleep(0.01)
    mark = len(answers)
    while len(answers) < mark + 50:
        time.sleep(0.01)
    stop.set()
    for w in workers:
        w.join(30)
    assert {s for s, _ in answers} == {200}
    assert answers[0][1] == "churn/1"
    assert all(v == "churn/2" for _, v in answers[mark + 10:])
    status = server.client.get("/deployments/web/status").json()
    assert [r["version"] for r in status["routes"]] == ["churn/2"]


def test_cache_never_answers_with_another_versions_result(start: Callable[..., Running],
                                                          registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@production"}], {"refresh_s": 0.1})
    row = [_row(3)]
    first = server.client.post("/predict", json=row)
    again = server.client.post("/predict", json=row)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.json()["predictions"] == first.json()["predictions"]
    registry.set_alias("churn", "production", 3)
    deadline = time.monotonic() + 30
    answer = server.client.post("/predict", json=row)
    while answer.headers["x-model-version"] != "churn/3" and time.monotonic() < deadline:
        answer = server.client.post("/predict", json=row)
    assert answer.headers["x-model-version"] == "churn/3"
    assert answer.headers["x-cache"] == "miss"
    v3 = registry.load_model("churn@3").predict(pd.DataFrame(row)).tolist()
    assert answer.json()["predictions"] == v3


def test_tokens_are_required_when_auth_is_on(start: Callable[..., Running],
                                             registry: ModelRegistry) -> None:
    token = Tokens(registry.db).create("ci")
    server = start("web", [{"model": "churn@1"}], require_auth=True)
    assert server.client.post("/predict", json=[_row()]).status_code == 401
    wrong = server.client.post("/predict", json=[_row()], headers={"authorization": "Bearer tl_nope"})
    assert wrong.status_code == 401
    right = server.client.post("/predict", json=[_row()], headers={"authorization": f"Bearer {token}"})
    assert right.status_code == 200
    assert server.client.get("/metrics").status_code == 200
    assert server.client.get("/v2/health/ready").status_code == 200
    stored = registry.db.engine.connect().exec_driver_sql("select token_hash from api_tokens").all()
    assert token not in str(stored)


def test_binding_beyond_loopback_needs_a_token(registry: ModelRegistry) -> None:
    Deployments(registry).create("web", [{"model": "churn@1"}])
    with pytest.raises(InvalidArgument, match="token create"):
        serve(["web"], host="0.0.0.0", port=free_port())  # refused before binding


def test_predictions_are_logged_and_feedback_joins(start: Callable[..., Running],
                                                   registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@1"}], {"cache": {"enabled": False}})
    ids = []
    for i in range(3):
        answer = server.client.post("/predict", json=[_row(i), _row(i + 1)])
        ids.append(answer.headers["x-request-id"])
    stored = server.client.post("/feedback", json={"items": [{"request_id": ids[0], "label": [1, 0]}]})
    assert stored.json() == {"stored": 2}  # one label per row of the request
    assert server.client.post("/feedback", json={"items": [{"label": 1}]}).status_code == 400
    server.stop()  # shutdown flushes the log
    log = read_log(registry.repos, "web").to_pylist()
    assert sorted({r["request_id"] for r in log}) == sorted(ids)
    assert len(log) == 6
    assert {r["version"] for r in log} == {1}
    assert read_feedback(registry.repos, "web").num_rows == 2


def test_a_version_that_cannot_load_never_gets_traffic(start: Callable[..., Running],
                                                       registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@1"}], {"refresh_s": 0.1})
    deployments = Deployments(registry)
    # the pyfunc version needs allow_code, which this deployment does not give: it cannot load
    deployments.change("web", routes=[{"model": "slow@1"}])
    deadline = time.monotonic() + 30
    status = server.client.get("/deployments/web/status").json()
    while status["last_error"] is None:
        assert time.monotonic() < deadline, "the failed load was never reported"
        status = server.client.get("/deployments/web/status").json()
    assert "allow_code" in status["last_error"]
    assert [r["version"] for r in status["routes"]] == ["churn/1"]
    answer = server.client.post("/predict", json=[_row()])
    assert answer.status_code == 200
    assert answer.headers["x-model-version"] == "churn/1"


def test_canary_ramp_under_load_fails_no_request(start: Callable[..., Running],
                                                 registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@1"}], {"refresh_s": 0.1, "cache": {"enabled": False}})
    deployments = Deployments(registry)
    stop = threading.Event()
    answers: list[tuple[int, str]] = []

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                r = c.post("/predict", json=[_row(i % 50)], headers={"x-threadline-key": f"{worker}-{i}"})
                answers.append((r.status_code, r.headers.get("x-model-version", "")))
                i += 1

    workers = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    for w in workers:
        w.start()
    for revision, percent in enumerate((10, 50, 90), start=2):
        deployments.set_canary("web", "churn@2", percent)
        deadline = time.monotonic() + 30
        while server.client.get("/deployments/web/status").json()["revision"] != revision:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        mark = len(answers)
        while len(answers) < mark + 30:
            time.sleep(0.01)
    deployments.promote_canary("web")
    while server.client.get("/deployments/web/status").json()["revision"] != 5:
        time.sleep(0.02)
    mark = len(answers)
    while len(answers) < mark + 30:
        time.sleep(0.01)
    stop.set()
    for w in workers:
        w.join(30)
    assert {s for s, _ in answers} == {200}
    assert {v for _, v in answers} == {"churn/1", "churn/2"}
    assert all(v == "churn/2" for _, v in answers[mark + 10:])


def test_a_client_over_its_rate_gets_429_with_retry_after(start: Callable[..., Running]) -> None:
    server = start("web", [{"model": "churn@1"}], {"rate_limit": 1, "rate_burst": 2})
    statuses = [server.client.post("/predict", json=[_row()]) for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1
    assert "rate limit" in statuses[2].json()["error"]["message"]
    assert server.client.get("/metrics").status_code == 200  # not limited


def test_answers_from_the_cache_are_logged_with_their_inputs(start: Callable[..., Running],
                                                             registry: ModelRegistry) -> None:
    server = start("web", [{"model": "churn@1"}], {"log_flush_s": 0.1})
    answers = [server.client.post("/predict", json=[_row(2), _row(3)]) for _ in range(3)]
    assert [a.headers["x-cache"] for a in answers] == ["miss", "hit", "hit"]
    assert len({a.json()["predictions"][0] for a in answers}) == 1
    server.stop()
    log = read_log(registry.repos, "web").to_pylist()
    assert len(log) == 6  # two rows per request, the cached ones decoded by the log
    assert {round(r["in.f0"], 6) for r in log} == {round(_row(2)["f0"], 6), round(_row(3)["f0"], 6)}
    assert len({r["request_id"] for r in log}) == 3
