"""Demo section 16: the closed loop on live traffic.

A deployment serves `churn-live@production` while client threads send traffic and, a little
later, the true labels. Halfway the customers change (monthly spend shifts up). The monitoring
policy sees the drift on its next pass, moves traffic to the `fallback` alias at once, retrains
on the labelled production traffic (examples/churn_retrain.py), puts the new version on a
canary, and on a later pass promotes it because it held against the primary on live traffic.
No request fails along the way, and the lineage runs from the raw export to the last served
prediction.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.markup import escape

import threadline as tl
from threadline.errors import NotFound
from threadline.lineage import LineageGraph, Node
from threadline.monitor.loop import Monitor, Pass
from threadline.serving.app import create_app
from threadline.serving.deployments import Deployments
from threadline.serving.predlog import read_log

console = Console()
NAME = "churn-live"


class LabelledTraffic:
    """Client threads posting rows, then their labels as feedback; answers counted by version."""

    def __init__(self, url: str, rows: list[dict[str, Any]], labels: list[int], threads: int = 3) -> None:
        self.url = url
        self.rows, self.labels = rows, labels
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.by_version: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._run, args=(i, threads)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def use(self, rows: list[dict[str, Any]], labels: list[int]) -> None:
        """Send these rows from now on."""
        with self.lock:
            self.rows, self.labels = rows, labels

    def _run(self, offset: int, step: int) -> None:
        pending: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = offset
            while not self.stop.is_set():
                with self.lock:
                    rows, labels = self.rows, self.labels
                row, label = rows[i % len(rows)], labels[i % len(rows)]
                answer = client.post("/predict", json=[row], headers={"x-threadline-key": f"c{i}"})
                with self.lock:
                    self.sent += 1
                    if answer.status_code != 200:
                        self.failed += 1
                    else:
                        version = answer.headers["x-model-version"]
                        self.by_version[version] = self.by_version.get(version, 0) + 1
                if answer.status_code == 200:
                    pending.append({"request_id": answer.headers["x-request-id"], "label": label})
                if len(pending) >= 50:  # the labels arrive later, in batches
                    client.post("/feedback", json={"items": pending})
                    pending = []
                i += step

    def until(self, more: int) -> None:
        """Block until `more` further requests were answered."""
        goal = self.sent + more
        while self.sent < goal:
            time.sleep(0.02)

    def counts(self) -> dict[str, int]:
        """Answers by version since the last call."""
        with self.lock:
            seen, self.by_version = self.by_version, {}
            return seen

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _show(done: Pass) -> None:
    check = done.check
    console.print(f"  pass {check.id[:8]}: {check.rows} rows -> [bold]{check.verdict}[/]")
    for vid, found in check.versions.items():
        drift = found.get("drift") or {}
        estimated = (found.get("estimated_accuracy") or {}).get("value")
        accuracy = found["accuracy"]["value"]
        console.print(escape(
            f"    {vid}: {found['rows']} rows, drifted {drift.get('drifted') or '-'}, accuracy "
            f"{'-' if accuracy is None else f'{accuracy:.3f}'}, estimated "
            f"{'-' if estimated is None else f'{estimated:.3f}'}"))
    for event in done.alerts:
        console.print(escape(f"    alert {event.kind}: {event.alert.rule} ({event.alert.message})"))
    for action in done.actions:
        shown = {k: v for k, v in action.items() if k in ("to", "challenger", "promoted", "reason")}
        console.print(escape(f"    action #{action['id']} {action['action']} ({action['status']}) {shown}"))


def _settle(traffic: LabelledTraffic, registry: Any, answered: int) -> None:
    """Wait until the log holds every answered request (the log commits every half second)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            logged = len(set(read_log(registry.repos, NAME)["request_id"].to_pylist()))
        except NotFound:
            logged = 0
        if logged >= answered:
            return
        time.sleep(0.2)


def closed_loop(test_ref: str, train_ref: str, features: list[str]) -> None:
    """Serve, shift the traffic, and let the policy fall back, retrain, canary and promote."""
    console.rule("16. monitoring: drift, fallback, retraining, canary and promotion on live traffic")
    registry = tl.registry.ModelRegistry.open()
    for version in (1, 2):  # the production model and its alternative
        registry.register(NAME, registry.load_model(f"churn@{version}"),
                          example=tl.data.read_table(test_ref, pandas=True)[features].astype(float).head(20),
                          data=[train_ref], description=f"churn v{version}, served live")
    registry.set_alias(NAME, "production", 1)
    registry.set_alias(NAME, "fallback", 2)
    deployments = Deployments(registry)
    deployments.create(NAME, [{"model": f"{NAME}@production"}],
                       {"refresh_s": 0.2, "log_flush_s": 0.5, "cache": {"enabled": False}})
    monitor = Monitor(registry)
    monitor.set_policy(NAME, {
        "key_columns": ["monthly_spend"],
        "alerts": [{"name": "spend-drift", "metric": "drift.share", "op": "above", "threshold": 0.2}],
        "on_drift": ["fallback", "retrain"],
        "retrain": {"module": "churn_retrain", "pipeline": "churn-retrain", "canary_percent": 30},
        "canary": {"min_requests": 100, "promote_after": 1, "max_accuracy_drop": 0.05},
    })
    frame = tl.data.read_table(test_ref, pandas=True)
    rows = frame[features].astype(float).to_dict(orient="records")
    labels = frame["churned"].astype(int).tolist()
    shifted = [{**r, "monthly_spend": r["monthly_spend"] * 1.6 + 25} for r in rows]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(registry, deployments, [NAME]),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    traffic = LabelledTraffic(f"http://127.0.0.1:{port}", rows, labels)
    try:
        traffic.until(1500)
        _settle(traffic, registry, 1400)
        console.print(f"steady traffic {traffic.counts()}; a monitoring pass:")
        _show(monitor.run_once(NAME))
        console.print("the customers change: monthly spend up 60% + 25")
        traffic.use(shifted, labels)
        traffic.until(1500)
        _settle(traffic, registry, traffic.sent - 100)
        _show(monitor.run_once(NAME))
        console.print(f"  traffic meanwhile: {traffic.counts()}")
        traffic.until(1500)
        _settle(traffic, registry, traffic.sent - 100)
        _show(monitor.run_once(NAME))
        traffic.until(300)
        console.print(f"  traffic after the last pass: {traffic.counts()}")
    finally:
        traffic.close()
        server.should_exit = True
        thread.join()
    console.print(f"requests sent {traffic.sent:,}, failed {traffic.failed} "
                  "(through the fallback switch, the canary and the promotion)")
    if traffic.failed:
        raise SystemExit("requests failed while the policy acted")
    for change in deployments.history(NAME):
        console.print(escape(f"  revision {change.revision} {change.action:8} by {change.actor:8} "
                             f"{[(r['model'], round(r['weight'])) for r in change.spec['routes']]}"))
    production = registry.get_version(f"{NAME}@production")
    console.print(f"{NAME}@production is now v{production.version}: {production.description}")
    last_log = tl.data.repo(f"predictions-{NAME}").log()[0]
    chain = LineageGraph(registry.db).edges(Node("data_commit", last_log.id), "up")
    kinds = sorted({e.relation for e in chain})
    raw = [e for e in chain if e.relation == "prep.cleanse"]
    console.print(escape(f"lineage of the last served predictions ({last_log.short_id}): {len(chain)} "
                         f"edges through {', '.join(kinds)}"))
    if not raw:
        raise SystemExit("the lineage of the served predictions does not reach the raw export")
