"""The lean ASGI entry for the hot routes (`serving/hotpath.py`) against the Starlette path.

The app is driven as an ASGI callable in process (no HTTP): each request is sent once through
`ServingApp.__call__` (the lean entry) and once straight through `Starlette.__call__`, and the
two replies must be the same status, raw headers and bytes. A spy on `Starlette.__call__`
tells which way a request went.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette

from threadline.registry import ModelRegistry
from threadline.registry.records import ModelVersion
from threadline.registry.signature import SignatureError
from threadline.serving.app import create_app
from threadline.serving.auth import Tokens
from threadline.serving.deployments import Deployments
from threadline.serving.predictor import Predictor
from threadline.serving.protocols import InputSpec, decode_invocations, decode_predict

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from threadline.data.repos import DataRepos
    from threadline.serving.answer import ServingState
    from threadline.serving.hotpath import ServingApp

FEATURES = [f"f{i}" for i in range(4)]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_STARLETTE_CALL = Starlette.__call__


@pytest.fixture
def registry(home: DataRepos) -> ModelRegistry:
    """`churn` versions 1 and 2 (logistic regressions on f0..f3), `production` on 1."""
    registry = ModelRegistry(home)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=FEATURES)
    y = (x.f0 + 0.5 * x.f1 > 0).astype(int)
    for c in (1.0, 0.001):
        registry.register("churn", LogisticRegression(C=c).fit(x, y), example=x.head(5))
    registry.set_alias("churn", "production", 1)
    deployments = Deployments(registry)
    deployments.create("plain", [{"model": "churn@production"}], {"cache": {"enabled": False}})
    deployments.create("cached", [{"model": "churn@production"}], {"max_body": 1024})
    return registry


@pytest.fixture
def starlette_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of HTTP requests that reached Starlette (the lean entry answered the rest)."""
    seen: list[str] = []

    async def spy(self: Starlette, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await _STARLETTE_CALL(self, scope, receive, send)

    monkeypatch.setattr(Starlette, "__call__", spy)
    return seen


@contextlib.asynccontextmanager
async def running(app: ServingApp) -> AsyncIterator[ServingState]:
    """The app between its lifespan's startup and shutdown; yields its serving state."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield app.state.serving
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def send(app: ServingApp, path: str, body: bytes, *, headers: list[tuple[bytes, bytes]] | None = None,
               chunks: int = 1, method: str = "POST", starlette: bool = False,
               kind: bytes | None = b"application/json", length: bool = True) -> Answer:
    """One request through the lean entry (or, with `starlette`, straight through Starlette)."""
    raw = [(b"host", b"test")]
    if kind is not None:
        raw.append((b"content-type", kind))
    if length:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": raw + (headers or [])}
    size = -(-len(body) // chunks) if body else 0
    parts = [body[i:i + size] for i in range(0, len(body), size)] if size else [b""]
    messages = [{"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
                for n, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def out(message: dict[str, Any]) -> None:
        sent.append(message)

    entry: Callable[..., Awaitable[None]] = _STARLETTE_CALL if starlette else type(app).__call__
    await entry(app, scope, receive, out)
    start = sent[0]
    return start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def header(answer: Answer, name: bytes) -> bytes | None:
    return next((v for k, v in answer[1] if k == name), None)


def record(i: int = 0) -> dict[str, float]:
    return {f: (i + k) / 7 for k, f in enumerate(FEATURES)}


def test_lean_and_starlette_paths_give_the_same_replies(registry: ModelRegistry,
                                                        starlette_calls: list[str]) -> None:
    rows = [record(i) for i in range(3)]
    split = {"dataframe_split": {"columns": FEATURES, "data": [list(r.values()) for r in rows]}}
    shuffled = {"dataframe_split": {"columns": FEATURES[::-1],
                                    "data": [list(r.values())[::-1] for r in rows]}}
    cases = [
        ("/predict", orjson.dumps(rows[0])),
        ("/predict", orjson.dumps(rows)),
        ("/predict", orjson.dumps({"records": rows})),
        ("/predict", orjson.dumps([{**rows[0], "f2": None}])),  # null: the general path
        ("/predict", orjson.dumps([{**rows[0], "f2": 3}])),  # an integer in a float column
        ("/deployments/plain/predict", orjson.dumps(rows)),
        ("/invocations", orjson.dumps(split)),
        ("/invocations", orjson.dumps(shuffled)),
        ("/invocations", orjson.dumps({"dataframe_records": rows})),
        ("/deployments/plain/invocations", orjson.dumps({"inputs": [list(rows[0].values())]})),
        ("/predict", b"{not json"),
        ("/predict", b""),
        ("/predict", orjson.dumps([{**rows[0], "f1": "high"}])),
        ("/predict", orjson.dumps([{"f0": 1.0}])),
        ("/predict", orjson.dumps([{**rows[0], "extra": 1.0}])),
        ("/invocations", orjson.dumps({"nothing": []})),
    ]
    model = registry.load_model("churn@1")

    async def main() -> list[tuple[Answer, Answer]]:
        app = create_app(registry, Deployments(registry), ["plain", "cached"], log_predictions=False)
        async with running(app):
            return [(await send(app, path, body, headers=[(b"x-request-id", f"req{n}".encode())]),
                     await send(app, path, body, headers=[(b"x-request-id", f"req{n}".encode())],
                                starlette=True))
                    for n, (path, body) in enumerate(cases)]

    answers = asyncio.run(main())
    assert starlette_calls == []  # every lean request was answered without Starlette
    for (path, body), (lean, slow) in zip(cases, answers, strict=True):
        assert lean == slow, (path, body)
    statuses = [lean[0] for lean, _ in answers]
    assert statuses == [200] * 10 + [400, 400, 422, 422, 422, 400]
    first = orjson.loads(answers[1][0][2])
    assert first["predictions"] == model.predict(pd.DataFrame(rows)).tolist()
    assert (first["model"], first["version"], first["request_id"]) == ("churn", 1, "req1")
    assert header(answers[1][0], b"x-model-version") == b"churn/1"
    assert header(answers[1][0], b"x-cache") == b"miss"
    assert orjson.loads(answers[7][0][2])["predictions"] == first["predictions"]
    assert b"'f1'" in answers[12][0][2]  # the 422 names the column


def test_unusual_requests_go_through_starlette_and_answer_alike(registry: ModelRegistry,
                                                                starlette_calls: list[str]) -> None:
    body = orjson.dumps([record(1)])

    async def main() -> dict[str, Answer]:
        app = create_app(registry, Deployments(registry), ["plain", "cached"], log_predictions=False)
        async with running(app):
            return {
                "plain": await send(app, "/predict", body),
                "chunked": await send(app, "/predict", body, chunks=3),
                "charset": await send(app, "/predict", body, kind=b"application/json; charset=utf-8"),
                "no length": await send(app, "/predict", body, length=False),
                "csv": await send(app, "/invocations", b"f0,f1,f2,f3\n1,2,3,4\n", kind=b"text/csv"),
                "pickle": await send(app, "/predict", b"\x80\x04", kind=b"application/python-pickle"),
                "too large": await send(app, "/deployments/cached/predict", b" " * 2000 + body),
                "get": await send(app, "/predict", b"", method="GET"),
                "unknown": await send(app, "/deployments/nope/predict", body),
            }

    got = asyncio.run(main())
    assert starlette_calls == ["/predict"] * 3 + ["/invocations", "/predict",
                                                  "/deployments/cached/predict", "/predict",
                                                  "/deployments/nope/predict"]
    predictions = orjson.loads(got["plain"][2])["predictions"]
    for name in ("chunked", "charset", "no length"):
        assert got[name][0] == 200
        assert orjson.loads(got[name][2])["predictions"] == predictions
    assert got["csv"][0] == 200
    assert [got[n][0] for n in ("pickle", "too large", "get", "unknown")] == [415, 413, 405, 404]


def test_the_cache_on_the_lean_path_never_answers_for_another_version(
        registry: ModelRegistry, starlette_calls: list[str]) -> None:
    body = orjson.dumps([record(2)])
    path = "/deployments/cached/predict"

    async def main() -> list[Answer]:
        app = create_app(registry, Deployments(registry), ["plain", "cached"], log_predictions=False)
        async with running(app) as state:
            answers = [await send(app, path, body), await send(app, path, body),
                       await send(app, path, body, starlette=True)]
            registry.set_alias("churn", "production", 2)
            assert await state.served["cached"].runtime.refresh()
            answers += [await send(app, path, body), await send(app, path, body)]
            return answers

    answers = asyncio.run(main())
    assert starlette_calls == []
    assert [header(a, b"x-cache") for a in answers] == [b"miss", b"hit", b"hit", b"miss", b"hit"]
    assert [header(a, b"x-model-version") for a in answers] == [b"churn/1"] * 3 + [b"churn/2"] * 2
    v1, v2 = (registry.load_model(f"churn@{v}").predict(pd.DataFrame([record(2)])).tolist()
              for v in (1, 2))
    assert [orjson.loads(a[2])["predictions"] for a in answers] == [v1] * 3 + [v2] * 2
    assert [orjson.loads(a[2])["version"] for a in answers] == [1, 1, 1, 2, 2]


def test_tokens_are_required_on_the_lean_path_when_auth_is_on(registry: ModelRegistry,
                                                              starlette_calls: list[str]) -> None:
    token = Tokens(registry.db).create("ci")
    body = orjson.dumps([record()])

    async def main() -> list[Answer]:
        app = create_app(registry, Deployments(registry), ["plain"], require_auth=True,
                         log_predictions=False)
        async with running(app):
            return [await send(app, "/predict", body),
                    await send(app, "/predict", body, headers=[(b"authorization", b"Bearer tl_nope")]),
                    await send(app, "/predict", body,
                               headers=[(b"authorization", f"Bearer {token}".encode())])]

    missing, wrong, right = asyncio.run(main())
    assert (missing[0], wrong[0], right[0]) == (401, 401, 200)
    assert header(missing, b"www-authenticate") == b"Bearer"
    assert starlette_calls == ["/predict", "/predict"]  # the refusals come from the middleware


def test_admission_refusals_and_metrics_on_the_lean_path(registry: ModelRegistry,
                                                         starlette_calls: list[str]) -> None:
    body = orjson.dumps([record(3)])

    async def main() -> tuple[list[Answer], str]:
        app = create_app(registry, Deployments(registry), ["plain", "cached"], log_predictions=False)
        async with running(app) as state:
            answers = [await send(app, "/predict", body) for _ in range(3)]
            answers += [await send(app, "/deployments/cached/predict", body) for _ in range(2)]
            admission = state.served["plain"].runtime.admission
            assert admission is not None
            admission.admitted += admission.max_concurrency + admission.max_queue  # full
            answers += [await send(app, "/predict", body), await send(app, "/predict", body,
                                                                      starlette=True)]
            admission.admitted -= admission.max_concurrency + admission.max_queue
            admission.draining = True
            answers += [await send(app, "/predict", body), await send(app, "/predict", body,
                                                                      starlette=True)]
            admission.draining = False
            return answers, state.metrics.render()[0].decode()

    answers, text = asyncio.run(main())
    assert starlette_calls == []
    assert [a[0] for a in answers] == [200] * 5 + [503] * 4
    assert answers[5] == answers[6]
    assert answers[7] == answers[8]
    assert header(answers[5], b"retry-after") == b"1"
    assert header(answers[7], b"retry-after") == b"2"
    assert b"overloaded" in answers[5][2]
    assert b"draining" in answers[7][2]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    route = (("deployment", "plain"), ("model", "churn"), ("route", "primary"), ("version", "1"))

    def sample(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return samples[f"threadline_serving_{name}", tuple(sorted(labels))]

    assert sample("requests_total", (*route, ("protocol", "predict"), ("status", "200"))) == 3
    assert sample("request_latency_seconds_count", route) == 3
    assert sample("inflight_requests", (("deployment", "plain"),)) == 0
    cached = (("deployment", "cached"), ("model", "churn"), ("version", "1"))
    assert (sample("cache_misses_total", cached), sample("cache_hits_total", cached)) == (1, 1)
    assert sample("queue_rejections_total", (("deployment", "plain"), ("reason", "503"))) == 4


# --------------------------------------------------------------------- the float fast path
FLOATS = InputSpec.from_signature({"inputs": {"type": "columns", "columns": [
    {"name": f, "dtype": "float"} for f in FEATURES]}})
GENERAL = dataclasses.replace(FLOATS, floats=False)


@pytest.mark.parametrize("rows", [
    [record(1)],
    [record(i) for i in range(5)],
    [{**record(1), "f0": 2}],
    [{"f3": 1.5, "f2": 0.5, "f1": -1.0, "f0": 0.0}],  # any key order
])
def test_float_rows_decode_like_the_general_path_with_their_matrix(rows: list[dict[str, Any]]) -> None:
    assert FLOATS.floats
    body = orjson.dumps(rows)
    fast, general = decode_predict(body, "application/json", FLOATS), decode_predict(
        body, "application/json", GENERAL)
    assert fast == general
    assert fast.columns is not None
    assert list(fast.columns) == FEATURES
    assert fast.matrix is not None
    assert general.matrix is None
    expected = np.array([fast.columns[f] for f in FEATURES], dtype=np.float64).T
    np.testing.assert_array_equal(fast.matrix, expected)
    split = {"dataframe_split": {"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in rows]}}
    via_split = decode_invocations(orjson.dumps(split), "application/json", FLOATS)
    assert via_split == general
    assert via_split.matrix is not None
    np.testing.assert_array_equal(via_split.matrix, expected)


@pytest.mark.parametrize(("value", "error"), [
    (None, None), (True, "column 'f1' takes float values"), ("high", "column 'f1' takes float values"),
    ([1.0], "column 'f1' takes float values"),
])
def test_values_that_are_not_plain_numbers_take_the_general_path(value: Any, error: str | None) -> None:
    body = orjson.dumps([{**record(1), "f1": value}])
    if error is not None:
        with pytest.raises(SignatureError, match=error):
            decode_predict(body, "application/json", FLOATS)
        with pytest.raises(SignatureError, match=error):
            decode_predict(body, "application/json", GENERAL)
        return
    fast = decode_predict(body, "application/json", FLOATS)
    assert fast == decode_predict(body, "application/json", GENERAL)
    assert fast.matrix is None


class FirstColumn:
    """A model answering with the first column it is given."""

    def predict(self, matrix: Any) -> Any:
        return np.asarray(matrix)[:, 0]


def test_a_model_taking_the_columns_in_another_order_never_gets_the_decoders_matrix() -> None:
    """A shadow version gets the rows decoded for the primary; its own column order counts."""
    columns = [{"name": f, "dtype": "float"} for f in reversed(FEATURES)]
    version = ModelVersion("other", 1, "pyfunc", "", "", "", None, {"inputs": {
        "type": "columns", "columns": columns}}, {}, {}, [], "", "", 0)
    reordered = Predictor(version, FirstColumn(), onnx="off")
    same = Predictor(dataclasses.replace(version, signature={"inputs": {
        "type": "columns", "columns": columns[::-1]}}), FirstColumn(), onnx="off")
    inputs = decode_predict(orjson.dumps([record(1), record(2)]), "application/json", FLOATS)
    assert inputs.matrix is not None
    assert reordered.predict(inputs).tolist() == [record(1)["f3"], record(2)["f3"]]
    assert same.predict(inputs).tolist() == [record(1)["f0"], record(2)["f0"]]
