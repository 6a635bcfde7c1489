"""Deployments and monitoring over the control-plane API: the same records the CLI prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from threadline.monitor.alerts import Alerts, parse_rules
from threadline.serving.deployments import Deployments

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from threadline.api.http import Stores


def test_deployments_checks_alerts_and_ack(client: TestClient, stores: Stores) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    stores.registry.register("m", LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), example=x[:3])
    deployments = Deployments(stores.registry)
    deployments.create("web", [{"model": "m@1"}])
    deployments.set_canary("web", "m@1", 10)
    listed = client.get("/api/v1/deployments").json()["deployments"]
    assert [(d["name"], d["revision"]) for d in listed] == [("web", 2)]
    one = client.get("/api/v1/deployments/web").json()
    assert [h["action"] for h in one["history"]] == ["canary", "create"]
    assert client.get("/api/v1/deployments/nope").status_code == 404
    assert client.get("/api/v1/deployments/web/checks").json() == {"checks": []}
    rule: dict[str, Any] = {"name": "slow", "metric": "latency.p95_ms", "op": "above", "threshold": 5}
    Alerts(stores.repos.db, rules=parse_rules([rule])).evaluate("web", {"latency.p95_ms": 9.0})
    (alert,) = client.get("/api/v1/deployments/web/alerts", params={"status": "firing"}).json()["alerts"]
    assert alert["rule"] == "slow"
    assert client.get("/api/v1/deployments/web/alerts", params={"status": "odd"}).status_code == 400
    acked = client.post(f"/api/v1/alerts/{alert['id']}/ack", json={"by": "oncall"}).json()["alert"]
    assert acked["acked_by"] == "oncall"
    assert client.post(f"/api/v1/alerts/{alert['id']}/ack", json={}).status_code == 400
    assert client.post("/api/v1/alerts/999/ack", json={"by": "x"}).status_code == 404
    assert client.get("/api/v1/deployments/web/actions").json() == {"actions": []}
