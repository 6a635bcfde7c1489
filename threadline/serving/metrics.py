"""Prometheus metrics of one serving app, cheap enough to record on every request.

`ServingMetrics` owns its own `CollectorRegistry` (importing this module registers nothing
anywhere), so two apps in one process, or a test and an app, never share or clash on series.
The `observe_*` methods keep each labelled child in a dict keyed by its label tuple:
prometheus_client's `.labels()` validates and stringifies every value on each call, and the
cached path skips that (see `benchmarks`/the report for the measured gain).

One process: observations are added to plain numbers next to each child (a counter's count, a
histogram's per-bucket counts and sum, the in-flight level) and written into the children by
`flush()`, which `render()` and `snapshot()` call first, so every reader sees every
observation made before it. A prometheus_client `inc` takes a lock and a histogram `observe`
walks its buckets; at tens of thousands of requests a second that was several microseconds a
request. Several processes: every observation is written through at once, as each worker's
files must hold its values for the others to read.

Several uvicorn workers: the server sets `PROMETHEUS_MULTIPROC_DIR` to a fresh folder before it
forks them, and prometheus_client then keeps every value in per-process memory-mapped files
there. `render()` and `snapshot()` read all of those files (`MultiProcessCollector`), so any
worker answers for all of them; the in-flight gauge sums live processes only, and the server
calls `mark_process_dead(pid)` when a worker exits so its gauge file is dropped.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Generic, TypedDict, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "NAMESPACE", "RouteStats", "ServingMetrics",
           "Snapshot"]

NAMESPACE = "threadline_serving"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# 0.1 ms (a cache hit) .. 10 s (a slow model behind a long queue), about 2.5x apart.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1, 2, 4, ... 1024 rows per model call

_RouteKey = tuple[str, str, str, str]  # deployment, route, model, version
_Child = TypeVar("_Child", Counter, Gauge, Histogram)


class _Pending(Generic[_Child]):
    """A labelled child and what was observed for it but not yet written to it.

    `count`: a counter's increments, a gauge's level, or a histogram's observations;
    `total` and `buckets`: a histogram's sum and per-bucket counts (not cumulative, as
    prometheus_client keeps them).
    """

    __slots__ = ("buckets", "child", "count", "total")

    def __init__(self, child: _Child, buckets: int = 0) -> None:
        self.child: _Child = child
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * buckets


def _flush_counter(pending: _Pending[Counter]) -> None:
    if pending.count:
        pending.child.inc(pending.count)
        pending.count = 0


def _flush_histogram(pending: _Pending[Histogram]) -> None:
    if not pending.count:
        return
    child = pending.child
    # prometheus_client has no public "observe many"; its buckets and sum are value objects
    # with `inc`, the same ones `observe` increments (the render tests check the result)
    child._sum.inc(pending.total)
    for index, count in enumerate(pending.buckets):
        if count:
            child._buckets[index].inc(count)
            pending.buckets[index] = 0
    pending.count, pending.total = 0, 0.0


def _observe(pending: _Pending[Histogram], bounds: tuple[float, ...], value: float) -> None:
    pending.count += 1
    pending.total += value
    pending.buckets[bisect_left(bounds, value)] += 1  # the first bound >= value (+Inf: the last)


class RouteStats(TypedDict):
    """One (deployment, route, model, version)'s totals since the server started."""

    deployment: str
    route: str
    model: str
    version: str
    requests: int
    errors: int
    p50_s: float | None
    p95_s: float | None
    cache_hit_rate: float | None


class Snapshot(TypedDict):
    """What `threadline deploy status` shows: per-route rows and admission rejections."""

    routes: list[RouteStats]
    rejections: dict[str, dict[str, int]]


class ServingMetrics:
    """The serving metrics of one app (all workers' together in multi-process mode).

    Multi-process mode is on when `PROMETHEUS_MULTIPROC_DIR` is set, read once here (the app
    factory creates this object at start, never per request). It is an environment variable
    rather than an argument because prometheus_client itself reads it: at import, to pick its
    value storage, and whenever a labelled child is created, to find the folder.

    Raises:
        InvalidArgument: the variable names no folder, or prometheus_client was imported
            before the variable was set (so this process would write no files).
    """

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir is not None:
            if not os.path.isdir(self.multiprocess_dir):
                raise InvalidArgument(
                    f"{MULTIPROC_ENV}={self.multiprocess_dir!r} is not a folder; create it "
                    "(empty) before starting the workers")
            if values.ValueClass is values.MutexValue:
                raise InvalidArgument(
                    f"{MULTIPROC_ENV} must be set before prometheus_client is imported (it picks "
                    "its storage at import); set it in the environment that starts the server")
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        route_labels = ("deployment", "route", "model", "version")
        version_labels = ("deployment", "model", "version")
        self.requests = Counter("requests", "Prediction requests answered, by status.",
                                (*route_labels, "protocol", "status"), namespace=ns, registry=r)
        self.latency = Histogram("request_latency_seconds", "Request latency, admission to answer.",
                                 route_labels, namespace=ns, registry=r, buckets=LATENCY_BUCKETS)
        self.batch_size = Histogram("batch_size", "Rows per model call after micro-batching.",
                                    version_labels, namespace=ns, registry=r, buckets=BATCH_BUCKETS)
        self.cache_hits = Counter("cache_hits", "Results served from the result cache.",
                                  version_labels, namespace=ns, registry=r)
        self.cache_misses = Counter("cache_misses", "Results the cache had to compute.",
                                    version_labels, namespace=ns, registry=r)
        self.errors = Counter("errors", "Failed requests, by kind of failure.",
                              (*route_labels, "kind"), namespace=ns, registry=r)
        # livesum: the sum over live workers; a dead worker's file goes in mark_process_dead.
        self.inflight = Gauge("inflight_requests", "Requests admitted and not yet answered.",
                              ("deployment",), namespace=ns, registry=r,
                              multiprocess_mode="livesum")
        self.rejections = Counter("queue_rejections", "Requests refused by admission control.",
                                  ("deployment", "reason"), namespace=ns, registry=r)
        self.shadow = Counter("shadow_requests", "Requests mirrored to a shadow version.",
                              (*version_labels, "status"), namespace=ns, registry=r)
        # Label tuple -> labelled children (with what is pending for them), so the hot path is
        # one dict lookup per metric.
        self._request_children: dict[tuple[str, str, str, str, str, int],
                                     tuple[_Pending[Counter], _Pending[Histogram]]] = {}
        self._latency_children: dict[_RouteKey, _Pending[Histogram]] = {}
        self._batch_children: dict[tuple[str, str, str], _Pending[Histogram]] = {}
        self._counter_children: dict[tuple[Counter, tuple[str, ...]], _Pending[Counter]] = {}
        self._inflight_children: dict[str, _Pending[Gauge]] = {}
        #: write every observation at once (several processes) rather than on `flush`
        self._write_through = self.multiprocess_dir is not None
        self._render_registry = self.registry
        if self.multiprocess_dir is not None:
            # Metrics above still write their files; exposition reads every worker's files
            # instead of this process's registry (which would show this worker alone).
            self._render_registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._render_registry, path=self.multiprocess_dir)

    def observe_request(self, deployment: str, route: str, model: str, version: str,
                        protocol: str, status: int, seconds: float) -> None:
        """Count one answered request and record its latency."""
        key = (deployment, route, model, version, protocol, status)
        children = self._request_children.get(key)
        if children is None:
            route_key = (deployment, route, model, version)
            latency = self._latency_children.get(route_key)
            if latency is None:
                latency = self._latency_children[route_key] = _Pending(
                    self.latency.labels(*route_key), len(LATENCY_BUCKETS) + 1)
            children = self._request_children[key] = (
                _Pending(self.requests.labels(*route_key, protocol, str(status))), latency)
        count, latency = children
        count.count += 1
        _observe(latency, LATENCY_BUCKETS, seconds)
        if self._write_through:
            _flush_counter(count)
            _flush_histogram(latency)

    def observe_batch(self, deployment: str, model: str, version: str, rows: int) -> None:
        """Record the rows of one model call."""
        key = (deployment, model, version)
        pending = self._batch_children.get(key)
        if pending is None:
            pending = self._batch_children[key] = _Pending(self.batch_size.labels(*key),
                                                           len(BATCH_BUCKETS) + 1)
        _observe(pending, BATCH_BUCKETS, rows)
        if self._write_through:
            _flush_histogram(pending)

    def observe_cache(self, deployment: str, model: str, version: str, hit: bool) -> None:
        """Count one cache lookup."""
        self._count(self.cache_hits if hit else self.cache_misses, (deployment, model, version))

    def observe_error(self, deployment: str, route: str, model: str, version: str,
                      kind: str) -> None:
        """Count one failed request (`kind`: e.g. "timeout", "model", "invalid_input")."""
        self._count(self.errors, (deployment, route, model, version, kind))

    def observe_rejection(self, deployment: str, reason: str) -> None:
        """Count one request refused before it ran (`reason`: e.g. "503", "504", "413")."""
        self._count(self.rejections, (deployment, reason))

    def observe_shadow(self, deployment: str, model: str, version: str, status: str) -> None:
        """Count one request mirrored to a shadow version and how it ended."""
        self._count(self.shadow, (deployment, model, version, status))

    def request_started(self, deployment: str) -> None:
        """One more request in flight (pair with `request_finished` in a `finally`)."""
        self._inflight(deployment, 1)

    def request_finished(self, deployment: str) -> None:
        """One request fewer in flight."""
        self._inflight(deployment, -1)

    def flush(self) -> None:
        """Write what was observed since the last flush into the Prometheus children (one
        process; with several, every observation was written at once)."""
        for count, _ in self._request_children.values():
            _flush_counter(count)
        for histogram in (*self._latency_children.values(), *self._batch_children.values()):
            _flush_histogram(histogram)
        for counter in self._counter_children.values():
            _flush_counter(counter)
        if not self._write_through:
            for level in self._inflight_children.values():
                level.child.set(level.count)

    def forget_version(self, model: str, version: str) -> None:
        """Drop an unloaded version's cached children (and, in one process, its series)."""
        self.flush()
        removable = self.multiprocess_dir is None  # prometheus_client cannot remove across processes
        doomed_requests = [k for k in self._request_children if k[2:4] == (model, version)]
        for rkey in doomed_requests:
            del self._request_children[rkey]
            if removable:
                self.requests.remove(*rkey[:5], str(rkey[5]))
        for lkey in [k for k in self._latency_children if k[2:4] == (model, version)]:
            del self._latency_children[lkey]
            if removable:
                self.latency.remove(*lkey)
        for bkey in [k for k in self._batch_children if k[1:3] == (model, version)]:
            del self._batch_children[bkey]
            if removable:
                self.batch_size.remove(*bkey)
        positions = {self.errors: 2, self.cache_hits: 1, self.cache_misses: 1, self.shadow: 1}
        for metric, labels in list(self._counter_children):
            at = positions.get(metric)
            if at is not None and labels[at:at + 2] == (model, version):
                del self._counter_children[metric, labels]
                if removable:
                    metric.remove(*labels)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every worker's metrics, and its content type."""
        self.flush()
        return generate_latest(self._render_registry), CONTENT_TYPE_LATEST

    def mark_process_dead(self, pid: int) -> None:
        """Forget a dead worker's live gauges (no-op in one process)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def snapshot(self) -> Snapshot:
        """Per (deployment, route, model, version): requests, errors, p50/p95 latency
        estimated from the histogram buckets, cache hit rate; and rejections by reason."""
        self.flush()
        rows: dict[_RouteKey, RouteStats] = {}
        buckets: dict[_RouteKey, dict[float, float]] = {}
        cache: dict[tuple[str, str, str], list[float]] = {}
        rejections: dict[str, dict[str, int]] = {}

        def row(labels: dict[str, str]) -> RouteStats:
            key = (labels["deployment"], labels["route"], labels["model"], labels["version"])
            if key not in rows:
                rows[key] = RouteStats(deployment=key[0], route=key[1], model=key[2],
                                       version=key[3], requests=0, errors=0, p50_s=None,
                                       p95_s=None, cache_hit_rate=None)
            return rows[key]

        for family in self._render_registry.collect():
            for sample in _samples(family, f"{NAMESPACE}_requests_total"):
                row(sample.labels)["requests"] += int(sample.value)
            for sample in _samples(family, f"{NAMESPACE}_errors_total"):
                row(sample.labels)["errors"] += int(sample.value)
            for sample in _samples(family, f"{NAMESPACE}_request_latency_seconds_bucket"):
                lb = sample.labels
                key = (lb["deployment"], lb["route"], lb["model"], lb["version"])
                per_key = buckets.setdefault(key, {})
                bound = float(lb["le"])
                per_key[bound] = per_key.get(bound, 0.0) + sample.value
            for index, name in enumerate(("cache_hits_total", "cache_misses_total")):
                for sample in _samples(family, f"{NAMESPACE}_{name}"):
                    vkey = (sample.labels["deployment"], sample.labels["model"],
                            sample.labels["version"])
                    cache.setdefault(vkey, [0.0, 0.0])[index] += sample.value
            for sample in _samples(family, f"{NAMESPACE}_queue_rejections_total"):
                per_deployment = rejections.setdefault(sample.labels["deployment"], {})
                reason = sample.labels["reason"]
                per_deployment[reason] = per_deployment.get(reason, 0) + int(sample.value)
        for key, cumulative in buckets.items():
            stats = rows.get(key)
            if stats is not None:
                ordered = sorted(cumulative.items())
                stats["p50_s"] = bucket_quantile(0.5, ordered)
                stats["p95_s"] = bucket_quantile(0.95, ordered)
        for stats in rows.values():
            hits, misses = cache.get((stats["deployment"], stats["model"], stats["version"]),
                                     (0.0, 0.0))
            if hits + misses:
                stats["cache_hit_rate"] = hits / (hits + misses)
        return Snapshot(routes=[rows[k] for k in sorted(rows)], rejections=rejections)

    def _count(self, metric: Counter, labels: tuple[str, ...]) -> None:
        key = (metric, labels)
        pending = self._counter_children.get(key)
        if pending is None:
            pending = self._counter_children[key] = _Pending(metric.labels(*labels))
        pending.count += 1
        if self._write_through:
            _flush_counter(pending)

    def _inflight(self, deployment: str, step: int) -> None:
        level = self._inflight_children.get(deployment)
        if level is None:
            level = self._inflight_children[deployment] = _Pending(self.inflight.labels(deployment))
        level.count += step
        if self._write_through:
            level.child.inc(step)


def bucket_quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative (upper bound, count) buckets sorted by bound, as
    Prometheus's `histogram_quantile` estimates it: linear within the bucket holding the rank;
    a rank in the +Inf bucket gives the largest finite bound. None when nothing was counted."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _samples(family: Metric, name: str) -> Iterable[Sample]:
    return (s for s in family.samples if s.name == name)
