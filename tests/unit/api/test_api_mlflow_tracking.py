"""MLflow tracking endpoints, request and response JSON as the MLflow client sends and reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from threadline.api.http import Stores

ML = "/api/2.0/mlflow"


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _experiment(client: TestClient, name: str = "exp", **tags: str) -> str:
    body = {"name": name, "tags": [{"key": k, "value": v} for k, v in tags.items()]}
    exp_id: str = _ok(client.post(f"{ML}/experiments/create", json=body))["experiment_id"]
    return exp_id


def _run(client: TestClient, exp_id: str, **tags: str) -> str:
    body = {"experiment_id": exp_id, "start_time": 1000, "user_id": "ann",
            "tags": [{"key": k, "value": v} for k, v in tags.items()]}
    run_id: str = _ok(client.post(f"{ML}/runs/create", json=body))["run"]["info"]["run_id"]
    return run_id


def test_experiment_lifecycle(client: TestClient) -> None:
    exp_id = _experiment(client, "exp", team="ml")
    got = _ok(client.get(f"{ML}/experiments/get", params={"experiment_id": exp_id}))["experiment"]
    assert got["name"] == "exp"
    assert got["artifact_location"] == f"mlflow-artifacts:/{exp_id}"
    assert got["tags"] == [{"key": "team", "value": "ml"}]
    assert _ok(client.get(f"{ML}/experiments/get-by-name",
                          params={"experiment_name": "exp"}))["experiment"]["experiment_id"] == exp_id
    _ok(client.post(f"{ML}/experiments/update", json={"experiment_id": exp_id, "new_name": "exp2"}))
    _ok(client.post(f"{ML}/experiments/set-experiment-tag",
                    json={"experiment_id": exp_id, "key": "k", "value": "v"}))
    _ok(client.post(f"{ML}/experiments/delete-experiment-tag", json={"experiment_id": exp_id, "key": "team"}))
    got = _ok(client.get(f"{ML}/experiments/get", params={"experiment_id": exp_id}))["experiment"]
    assert (got["name"], got["tags"]) == ("exp2", [{"key": "k", "value": "v"}])
    _ok(client.post(f"{ML}/experiments/delete", json={"experiment_id": exp_id}))
    assert _ok(client.get(f"{ML}/experiments/get", params={"experiment_id": exp_id})
               )["experiment"]["lifecycle_stage"] == "deleted"
    _ok(client.post(f"{ML}/experiments/restore", json={"experiment_id": exp_id}))


def test_experiment_search_filters_orders_and_pages(client: TestClient) -> None:
    for name in ("alpha", "beta", "alps"):
        _experiment(client, name, team="x" if name != "beta" else "y")
    body = {"filter": "name LIKE 'al%' AND tags.team = 'x'", "order_by": ["name ASC"], "max_results": 1}
    page = _ok(client.post(f"{ML}/experiments/search", json=body))
    assert [e["name"] for e in page["experiments"]] == ["alpha"]
    page2 = _ok(client.post(f"{ML}/experiments/search", json={**body, "page_token": page["next_page_token"]}))
    assert [e["name"] for e in page2["experiments"]] == ["alps"]
    assert "next_page_token" not in page2
    got = _ok(client.get(f"{ML}/experiments/search", params={"filter": "name = 'beta'"}))
    assert [e["name"] for e in got["experiments"]] == ["beta"]
    bad = client.post(f"{ML}/experiments/search", json={"filter": "creation_time > 5"})
    assert bad.status_code == 400
    assert "unsupported experiment filter clause" in bad.json()["message"]


def test_run_logging_and_reading(client: TestClient) -> None:
    exp_id = _experiment(client)
    run_id = _run(client, exp_id)
    _ok(client.post(f"{ML}/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": 0.5,
                                                   "timestamp": 5, "step": 1}))
    _ok(client.post(f"{ML}/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": "NaN",
                                                   "timestamp": 6, "step": 2}))
    _ok(client.post(f"{ML}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}))
    _ok(client.post(f"{ML}/runs/set-tag", json={"run_id": run_id, "key": "team", "value": "ml"}))
    _ok(client.post(f"{ML}/runs/log-batch", json={
        "run_id": run_id, "metrics": [{"key": "auc", "value": 0.9, "timestamp": 7, "step": 0}],
        "params": [{"key": "depth", "value": "3"}], "tags": [{"key": "t", "value": "1"}]}))
    run = _ok(client.get(f"{ML}/runs/get", params={"run_id": run_id}))["run"]
    assert run["info"]["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"
    assert run["info"]["user_id"] == "ann"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"auc": 0.9, "loss": "NaN"}
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"depth": "3", "lr": "0.1"}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["team"] == "ml"
    assert tags["mlflow.runName"] == run["info"]["run_name"]
    history = _ok(client.get(f"{ML}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}))
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(1, 0.5), (2, "NaN")]
    changed = client.post(f"{ML}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.2"})
    assert changed.status_code == 400
    assert changed.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    _ok(client.post(f"{ML}/runs/delete-tag", json={"run_id": run_id, "key": "team"}))
    gone = client.post(f"{ML}/runs/delete-tag", json={"run_id": run_id, "key": "team"})
    assert gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_update_rename_delete_restore(client: TestClient, stores: Stores) -> None:
    run_id = _run(client, _experiment(client))
    info = _ok(client.post(f"{ML}/runs/update", json={"run_id": run_id, "status": "FINISHED",
                                                      "end_time": 2000, "run_name": "renamed"}))["run_info"]
    assert (info["status"], info["end_time"], info["run_name"]) == ("FINISHED", 2000, "renamed")
    assert stores.tracking.get_run(run_id).tags["mlflow.runName"] == "renamed"
    _ok(client.post(f"{ML}/runs/delete", json={"run_id": run_id}))
    assert stores.tracking.get_run(run_id).info.lifecycle_stage == "deleted"
    _ok(client.post(f"{ML}/runs/restore", json={"run_id": run_id}))
    bad = client.post(f"{ML}/runs/update", json={"run_id": run_id, "status": "DONE"})
    assert bad.status_code == 400


def test_parent_tag_makes_a_child_run(client: TestClient, stores: Stores) -> None:
    exp_id = _experiment(client)
    parent = _run(client, exp_id)
    child = _run(client, exp_id, **{"mlflow.parentRunId": parent})
    assert stores.tracking.get_run(child).info.parent_id == parent


def test_default_experiment_zero(client: TestClient, stores: Stores) -> None:
    run = _ok(client.post(f"{ML}/runs/create", json={"experiment_id": "0"}))["run"]
    assert stores.tracking.get_experiment(int(run["info"]["experiment_id"])).name == "Default"


def test_search_runs_filter_order_and_pages(client: TestClient) -> None:
    exp_id = _experiment(client)
    ids = []
    for auc in (0.5, 0.9, 0.7):
        run_id = _run(client, exp_id)
        _ok(client.post(f"{ML}/runs/log-metric", json={"run_id": run_id, "key": "auc", "value": auc,
                                                       "timestamp": 1}))
        ids.append(run_id)
    body = {"experiment_ids": [exp_id], "filter": "metrics.auc > 0.6", "order_by": ["metrics.auc DESC"],
            "max_results": 1}
    page = _ok(client.post(f"{ML}/runs/search", json=body))
    assert [r["info"]["run_id"] for r in page["runs"]] == [ids[1]]
    page2 = _ok(client.post(f"{ML}/runs/search", json={**body, "page_token": page["next_page_token"]}))
    assert [r["info"]["run_id"] for r in page2["runs"]] == [ids[2]]
    bad = client.post(f"{ML}/runs/search", json={"experiment_ids": [exp_id], "filter": "metrics.auc >"})
    assert bad.status_code == 400


def test_log_inputs_keeps_datasets(client: TestClient) -> None:
    run_id = _run(client, _experiment(client))
    dataset = {"name": "train", "digest": "abc", "source_type": "local", "source": "{}"}
    _ok(client.post(f"{ML}/runs/log-inputs", json={
        "run_id": run_id, "datasets": [{"dataset": dataset, "tags": [{"key": "mlflow.data.context",
                                                                      "value": "training"}]}]}))
    run = _ok(client.get(f"{ML}/runs/get", params={"run_id": run_id}))["run"]
    assert run["inputs"]["dataset_inputs"] == [
        {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "training"}]}]
    assert not any(t["key"].startswith("mlflow.dataset.") for t in run["data"]["tags"])


def test_logged_models_search_of_an_experiment_without_models_is_empty(client: TestClient) -> None:
    # the client searches whenever it resolves runs:/<run>/<path>; no models means no match
    got = _ok(client.post(f"{ML}/logged-models/search", json={"experiment_ids": ["0"]}))
    assert got == {"models": []}


def test_metric_history_bulk_interval(client: TestClient) -> None:
    run_id = _run(client, _experiment(client))
    metrics = [{"key": "m", "value": float(i), "timestamp": i, "step": i} for i in range(10)]
    _ok(client.post(f"{ML}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}))
    got = _ok(client.get(f"{ML}/metrics/get-history-bulk-interval", params={
        "run_ids": run_id, "metric_key": "m", "start_step": 2, "end_step": 8, "max_results": 3}))
    assert [m["step"] for m in got["metrics"]] == [2, 5, 8]
    assert {m["run_id"] for m in got["metrics"]} == {run_id}
