"""Serving metrics: exposition samples, the label-child cache, snapshots, multi-process mode.

Multi-process mode is chosen by prometheus_client at import, so those tests run in child
processes started with `PROMETHEUS_MULTIPROC_DIR` set.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from threadline.errors import InvalidArgument
from threadline.serving.metrics import NAMESPACE, ServingMetrics, bucket_quantile

if TYPE_CHECKING:
    from pathlib import Path

ROUTE = ("prod", "/v1/churn", "churn", "3")  # deployment, route, model, version


def samples(text: bytes | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from an exposition text."""
    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return parsed[f"{NAMESPACE}_{name}", frozenset(labels.items())]


def route_labels(**extra: str) -> dict[str, str]:
    return dict(zip(("deployment", "route", "model", "version"), ROUTE, strict=True), **extra)


def test_creating_metrics_touches_no_global_registry() -> None:
    before = set(REGISTRY._names_to_collectors)
    first, second = ServingMetrics(), ServingMetrics()
    first.observe_request(*ROUTE, "json", 200, 0.01)
    assert set(REGISTRY._names_to_collectors) == before
    labels = route_labels(protocol="json", status="200")
    assert value(samples(first.render()[0]), "requests_total", **labels) == 1
    assert not any(name.endswith("requests_total") for name, _ in samples(second.render()[0]))


def test_requests_and_latency_are_rendered() -> None:
    metrics = ServingMetrics()
    for seconds in (0.0004, 0.003, 0.003, 2.0):
        metrics.observe_request(*ROUTE, "json", 200, seconds)
    metrics.observe_request(*ROUTE, "v2", 422, 0.0001)
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE_LATEST
    parsed = samples(body)
    assert value(parsed, "requests_total", **route_labels(protocol="json", status="200")) == 4
    assert value(parsed, "requests_total", **route_labels(protocol="v2", status="422")) == 1
    assert value(parsed, "request_latency_seconds_count", **route_labels()) == 5
    assert math.isclose(value(parsed, "request_latency_seconds_sum", **route_labels()), 2.0065)
    bucket = {le: value(parsed, "request_latency_seconds_bucket", **route_labels(le=le))
              for le in ("0.0001", "0.0005", "0.0025", "0.005", "1.0", "10.0", "+Inf")}
    assert bucket == {"0.0001": 1, "0.0005": 2, "0.0025": 2, "0.005": 4, "1.0": 4, "10.0": 5, "+Inf": 5}


def test_every_other_metric_is_rendered() -> None:
    metrics = ServingMetrics()
    deployment, _, model, version = ROUTE
    metrics.observe_batch(deployment, model, version, 1)
    metrics.observe_batch(deployment, model, version, 1000)
    metrics.observe_cache(deployment, model, version, hit=True)
    metrics.observe_cache(deployment, model, version, hit=True)
    metrics.observe_cache(deployment, model, version, hit=False)
    metrics.observe_error(*ROUTE, "timeout")
    for _ in range(3):
        metrics.request_started(deployment)
    metrics.request_finished(deployment)
    metrics.observe_rejection(deployment, "503")
    metrics.observe_rejection(deployment, "413")
    metrics.observe_rejection(deployment, "503")
    metrics.observe_shadow(deployment, model, "4", "ok")
    parsed = samples(metrics.render()[0])
    version_labels = {"deployment": deployment, "model": model, "version": version}
    assert value(parsed, "batch_size_count", **version_labels) == 2
    assert value(parsed, "batch_size_bucket", **version_labels, le="1.0") == 1
    assert value(parsed, "batch_size_bucket", **version_labels, le="512.0") == 1
    assert value(parsed, "batch_size_bucket", **version_labels, le="1024.0") == 2
    assert value(parsed, "cache_hits_total", **version_labels) == 2
    assert value(parsed, "cache_misses_total", **version_labels) == 1
    assert value(parsed, "errors_total", **route_labels(kind="timeout")) == 1
    assert value(parsed, "inflight_requests", deployment=deployment) == 2
    assert value(parsed, "queue_rejections_total", deployment=deployment, reason="503") == 2
    assert value(parsed, "queue_rejections_total", deployment=deployment, reason="413") == 1
    assert value(parsed, "shadow_requests_total", deployment=deployment, model=model, version="4",
                 status="ok") == 1


def test_the_hot_path_creates_each_labelled_child_once(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = ServingMetrics()
    created: list[tuple[object, ...]] = []
    real_labels = type(metrics.requests).labels

    def counting_labels(self: Any, *values: object, **kw: object) -> Any:
        created.append(values)
        return real_labels(self, *values, **kw)

    monkeypatch.setattr(type(metrics.requests), "labels", counting_labels)
    for _ in range(100):
        metrics.observe_request(*ROUTE, "json", 200, 0.01)
        metrics.observe_cache("prod", "churn", "3", hit=True)
    metrics.observe_request(*ROUTE, "json", 500, 0.01)  # new counter child, same latency child
    assert created == [(*ROUTE, "json", "200"), ("prod", "churn", "3"), (*ROUTE, "json", "500")]
    assert value(samples(metrics.render()[0]), "requests_total",
                 **route_labels(protocol="json", status="200")) == 100


def test_snapshot_summarises_each_route() -> None:
    metrics = ServingMetrics()
    for i in range(100):  # latencies 1 ms .. 100 ms
        metrics.observe_request(*ROUTE, "json", 200, (i + 1) / 1000)
    metrics.observe_error(*ROUTE, "model")
    metrics.observe_error(*ROUTE, "timeout")
    for hit in (True, True, True, False):
        metrics.observe_cache("prod", "churn", "3", hit)
    metrics.observe_request("prod", "/v1/churn", "churn", "4", "json", 200, 0.2)
    metrics.observe_rejection("prod", "503")
    snap = metrics.snapshot()
    assert snap["rejections"] == {"prod": {"503": 1}}
    v3, v4 = snap["routes"]
    assert (v3["version"], v3["requests"], v3["errors"], v3["cache_hit_rate"]) == ("3", 100, 2, 0.75)
    # 50th of 100 falls in (0.025, 0.05] holding 25: 0.025 + 0.025 * 25/25
    assert v3["p50_s"] == pytest.approx(0.05)
    # 95th falls in (0.05, 0.1] holding 50 (50 below): 0.05 + 0.05 * 45/50
    assert v3["p95_s"] == pytest.approx(0.095)
    assert (v4["version"], v4["requests"], v4["errors"], v4["cache_hit_rate"]) == ("4", 1, 0, None)
    assert v4["p50_s"] == pytest.approx(0.175)
    json.dumps(snap)  # the status endpoint sends it as is


def test_snapshot_of_nothing_is_empty() -> None:
    assert ServingMetrics().snapshot() == {"routes": [], "rejections": {}}


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [], None),
    (0.5, [(1.0, 0.0), (math.inf, 0.0)], None),
    (0.5, [(1.0, 10.0), (math.inf, 10.0)], 0.5),
    (0.99, [(1.0, 0.0), (2.0, 0.0), (math.inf, 4.0)], 2.0),  # beyond the last finite bound
    (0.5, [(1.0, 2.0), (2.0, 2.0), (math.inf, 4.0)], 1.0),
])
def test_bucket_quantile(q: float, buckets: list[tuple[float, float]], expected: float | None) -> None:
    assert bucket_quantile(q, buckets) == expected


def test_forget_version_drops_its_series() -> None:
    metrics = ServingMetrics()
    for version in ("3", "4"):
        metrics.observe_request("prod", "/v1/churn", "churn", version, "json", 200, 0.01)
        metrics.observe_batch("prod", "churn", version, 8)
        metrics.observe_cache("prod", "churn", version, hit=False)
        metrics.observe_error("prod", "/v1/churn", "churn", version, "model")
        metrics.observe_shadow("prod", "churn", version, "ok")
    metrics.forget_version("churn", "3")
    versions = {dict(labels).get("version") for (_, labels) in samples(metrics.render()[0])}
    assert versions == {"4"}
    metrics.observe_request("prod", "/v1/churn", "churn", "3", "json", 200, 0.01)  # comes back
    assert [r["version"] for r in metrics.snapshot()["routes"]] == ["3", "4"]


def test_multiprocess_variable_set_after_import_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(InvalidArgument, match="missing' is not a folder; create it"):
        ServingMetrics()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(InvalidArgument, match="must be set before prometheus_client is imported"):
        ServingMetrics()  # this process imported prometheus_client without it


WORKER = """
import os, sys
from threadline.serving.metrics import ServingMetrics
m = ServingMetrics()
n = int(sys.argv[1])
for _ in range(n):
    m.observe_request("prod", "/v1/churn", "churn", "3", "json", 200, 0.01)
    m.request_started("prod")
m.observe_cache("prod", "churn", "3", hit=n > 2)
print(os.getpid())
"""

READER = """
import json, sys
from threadline.serving.metrics import ServingMetrics
m = ServingMetrics()
before = m.render()[0].decode()
snapshot = m.snapshot()
m.mark_process_dead(int(sys.argv[1]))
print(json.dumps({"before": before, "after": m.render()[0].decode(), "snapshot": snapshot}))
"""


def test_multiprocess_render_adds_up_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def python(code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    workers = [python(WORKER, "2"), python(WORKER, "3")]  # run at the same time
    pids = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        pids.append(out.strip())
    reader = python(READER, pids[0])
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    result = json.loads(out)
    before, after = samples(result["before"]), samples(result["after"])
    labels = route_labels(protocol="json", status="200")
    assert value(before, "requests_total", **labels) == 5
    assert value(before, "request_latency_seconds_count", **route_labels()) == 5
    assert value(before, "request_latency_seconds_bucket", **route_labels(le="0.01")) == 5
    assert value(before, "inflight_requests", deployment="prod") == 5  # livesum of both
    assert value(after, "inflight_requests", deployment="prod") == 3  # the first worker died
    assert value(after, "requests_total", **labels) == 5  # counters outlive their worker
    (route,) = result["snapshot"]["routes"]
    assert (route["requests"], route["cache_hit_rate"]) == (5, 0.5)
