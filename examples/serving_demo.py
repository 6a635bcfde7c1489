"""Demo section 15: serve the production model, canary the next version, promote it.

Used by demo.py after the model lifecycle sections (the home holds `churn` v1-v3 with
`production` on v1). The server is the real serving app under uvicorn on loopback; traffic
comes from four client threads while the canary starts, and keeps flowing while it is promoted,
so the figures show that no request failed during either change.
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
from threadline.lineage import LineageGraph, Node
from threadline.serving.app import create_app
from threadline.serving.deployments import Deployments
from threadline.serving.predlog import read_log

console = Console()


class Traffic:
    """Client threads posting rows to /predict until stopped; answers counted by version."""

    def __init__(self, url: str, rows: list[dict[str, Any]], threads: int = 4) -> None:
        self.url, self.rows = url, rows
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.by_version: dict[str, int] = {}
        self.failed = 0
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = offset
            while not self.stop.is_set():
                row = self.rows[i % len(self.rows)]
                # the customer id pins a caller to one version while the canary runs
                answer = client.post("/predict", json=[row], headers={"x-threadline-key": f"c{i}"})
                with self.lock:
                    if answer.status_code != 200:
                        self.failed += 1
                    else:
                        version = answer.headers["x-model-version"]
                        self.by_version[version] = self.by_version.get(version, 0) + 1
                i += len(self.threads)

    def count(self) -> int:
        with self.lock:
            return sum(self.by_version.values()) + self.failed

    def until(self, more: int) -> None:
        """Block until `more` further answers came back."""
        goal = self.count() + more
        while self.count() < goal:
            time.sleep(0.01)

    def reset(self) -> dict[str, int]:
        with self.lock:
            seen, self.by_version = self.by_version, {}
            return seen


def serving(test_ref: str, features: list[str]) -> None:
    """Deploy churn@production, send traffic, canary v2 at 10%, promote it under load."""
    console.rule("15. serve the model: traffic, a 10% canary, promotion without a failed request")
    registry = tl.registry.ModelRegistry.open()
    deployments = Deployments(registry)
    deployments.create("churn-web", [{"model": "churn@production"}], {"refresh_s": 0.2})
    table = tl.data.read_table(test_ref, pandas=True)
    rows = table[features].astype(float).head(500).to_dict(orient="records")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(registry, deployments, ["churn-web"]),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    console.print(f"serving churn-web (churn@production) on {url}")
    traffic = Traffic(url, rows)
    for t in traffic.threads:
        t.start()
    try:
        traffic.until(400)
        console.print(f"steady traffic: {traffic.reset()}")
        deployments.set_canary("churn-web", "churn@2", 10, message="try the retrained model")
        while httpx.get(f"{url}/deployments/churn-web/status").json()["revision"] != 2:
            time.sleep(0.05)
        traffic.reset()
        traffic.until(1000)
        seen = traffic.reset()
        share = seen.get("churn/2", 0) / max(sum(seen.values()), 1)
        console.print(f"canary at 10%: {seen} -> churn/2 answered {share:.1%}")
        status = httpx.get(f"{url}/deployments/churn-web/status").json()
        for r in status["metrics"]["routes"]:
            p50 = f"{r['p50_s'] * 1000:.2f} ms" if r["p50_s"] else "-"
            console.print(f"  route {r['route']:8} churn v{r['version']}: {r['requests']} requests, "
                          f"{r['errors']} errors, p50 {p50}")
        deployments.promote_canary("churn-web", message="canary held")
        while httpx.get(f"{url}/deployments/churn-web/status").json()["revision"] != 3:
            time.sleep(0.05)
        traffic.until(300)
    finally:
        traffic.stop.set()
        for t in traffic.threads:
            t.join()
        server.should_exit = True
        thread.join()
    console.print(f"after promotion: {traffic.reset()}; failed requests during both changes: "
                  f"{traffic.failed}")
    if traffic.failed:
        raise SystemExit("requests failed during a route change")
    for change in deployments.history("churn-web"):
        console.print(f"  revision {change.revision} {change.action:7} "
                      f"{[(r['model'], r['weight']) for r in change.spec['routes']]}")
    log = read_log(registry.repos, "churn-web")
    console.print(f"prediction log: {log.num_rows:,} rows committed to repo predictions-churn-web")
    served = [e for e in LineageGraph(registry.db).edges(Node("model_version", "churn/2"), "down")
              if e.relation == "served"]
    console.print(escape(f"lineage: churn/2 -[served]-> {len(served)} prediction-log commit(s)"))
