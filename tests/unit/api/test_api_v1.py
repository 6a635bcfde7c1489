"""Threadline's own read API under /api/v1/."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from starlette.testclient import TestClient

    from threadline.api.http import Stores
    from threadline.data.handles import Repo
    from threadline.tracking.model import Metric


def _ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def tracked(stores: Stores, make_repo: Callable[..., Repo],
            make_tree: Callable[[str, Mapping[str, bytes]], Path]) -> dict[str, Any]:
    """A data repo with two commits, and a run that read it and logged a metric series."""
    from threadline.tracking.model import Metric

    make_repo("sales")
    first = stores.repos.commit("sales@main", [make_tree("v1", {"a.csv": b"x\n1\n"}) / "a.csv"], "one")
    second = stores.repos.commit("sales@main", [make_tree("v2", {"a.csv": b"x\n2\n"}) / "a.csv"], "two")
    exp = stores.tracking.experiment("e")
    run = stores.tracking.create_run(exp.id, name="train")
    points: list[Metric] = [Metric("loss", 1.0 / (i + 1), 1000 + i, i) for i in range(3)]
    stores.tracking.log_batch(run.id, metrics=points, params={"lr": "0.1"})
    stores.tracking.log_inputs(run.id, ["sales@main"])
    return {"run": run.id, "experiment": exp.id, "commits": [first.commit.id, second.commit.id]}


def test_health(client: TestClient) -> None:
    assert _ok(client.get("/api/v1/health")) == {"status": "ok"}
    assert client.get("/health").text == "OK"


def test_repos_and_log(client: TestClient, tracked: dict[str, Any]) -> None:
    repos = _ok(client.get("/api/v1/repos"))["repos"]
    assert "sales" in [r["name"] for r in repos]
    log = _ok(client.get("/api/v1/repos/sales/log", params={"ref": "main"}))["commits"]
    assert [c["id"] for c in log] == tracked["commits"][::-1]
    assert [c["message"] for c in _ok(client.get("/api/v1/repos/sales/log", params={"limit": 1}))["commits"]
            ] == ["two"]
    missing = client.get("/api/v1/repos/nope/log")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    bad = client.get("/api/v1/repos/sales/log", params={"limit": "x"})
    assert bad.status_code == 400
    assert bad.json()["error"] == {"code": "invalid_argument", "message": "limit must be an integer, not 'x'"}


def test_runs_search_get_and_history(client: TestClient, tracked: dict[str, Any]) -> None:
    found = _ok(client.get("/api/v1/runs", params={"filter": "params.lr = '0.1'",
                                                   "order_by": "metrics.loss DESC"}))
    assert [r["info"]["id"] for r in found["runs"]] == [tracked["run"]]
    assert found["next_page_token"] is None
    none = _ok(client.get("/api/v1/runs", params={"experiment_ids": str(tracked["experiment"]),
                                                  "filter": "metrics.loss > 5"}))
    assert none["runs"] == []
    run = _ok(client.get(f"/api/v1/runs/{tracked['run'][:8]}"))
    assert run["params"] == {"lr": "0.1"}
    assert run["metrics"]["loss"]["step"] == 2
    assert run["inputs"][0]["commit"] == tracked["commits"][1]
    history = _ok(client.get(f"/api/v1/runs/{tracked['run']}/metrics/loss"))
    assert [p["step"] for p in history["points"]] == [0, 1, 2]
    bad = client.get("/api/v1/runs", params={"filter": "metrics.loss >>> 1"})
    assert bad.status_code == 400


def test_lineage_of_a_run(client: TestClient, tracked: dict[str, Any]) -> None:
    up = _ok(client.get(f"/api/v1/lineage/run/{tracked['run']}", params={"direction": "up"}))
    edges = [{k: e[k] for k in ("from", "relation", "to")} for e in up["edges"]]
    assert {"from": f"data_commit:{tracked['commits'][1]}", "relation": "input",
            "to": f"run:{tracked['run']}"} in edges
    bad = client.get(f"/api/v1/lineage/run/{tracked['run']}", params={"direction": "sideways"})
    assert bad.status_code == 400
    assert "direction must be 'up' or 'down'" in bad.json()["error"]["message"]


def test_models(client: TestClient, stores: Stores, tmp_path: Path) -> None:
    run = stores.tracking.create_run(stores.tracking.experiment("e").id)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    stores.tracking.log_artifacts(run.id, folder, "model")
    stores.registry.create_model("churn", "d")
    stores.registry.register_external("churn", run.id, f"runs:/{run.id}/model", path="model")
    stores.registry.set_alias("churn", "production", 1)
    models = _ok(client.get("/api/v1/models"))["models"]
    assert [(m["name"], m["aliases"]) for m in models] == [("churn", {"production": 1})]
    model = _ok(client.get("/api/v1/models/churn"))
    assert [v["version"] for v in model["versions"]] == [1]
    assert [(e["alias"], e["new_version"]) for e in model["alias_history"]] == [("production", 1)]
    assert _ok(client.get("/api/v1/models/churn/versions/production"))["version"] == 1
    assert client.get("/api/v1/models/nope").status_code == 404
