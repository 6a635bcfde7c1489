"""MLflow 3's logged-models endpoints, their artifact locations and registering them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from threadline.api.http import Stores

ML = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def run(stores: Stores) -> tuple[str, int]:
    """(run id, experiment id) of a new run."""
    info = stores.tracking.create_run(stores.tracking.experiment("e").id)
    return info.id, info.experiment_id


def _create(client: TestClient, run: tuple[str, int], **extra: Any) -> dict[str, Any]:
    body = {"experiment_id": str(run[1]), "source_run_id": run[0], "name": "model", **extra}
    info: dict[str, Any] = _ok(client.post(f"{ML}/logged-models", json=body))["model"]["info"]
    return info


def test_create_get_finalize_tags_params_delete(client: TestClient, run: tuple[str, int]) -> None:
    info = _create(client, run, params=[{"key": "C", "value": "1.0"}],
                   tags=[{"key": "mlflow.source.type", "value": "LOCAL"}], model_type="sk")
    model_id = info["model_id"]
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{run[1]}/models/{model_id}/artifacts"
    assert (info["experiment_id"], info["source_run_id"], info["model_type"]) == (str(run[1]), run[0], "sk")
    url = f"{ML}/logged-models/{model_id}"
    done = _ok(client.patch(url, json={"model_id": model_id, "status": "LOGGED_MODEL_READY"}))
    assert done["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    _ok(client.patch(f"{url}/tags", json={"tags": [{"key": "a/b", "value": "1"}]}))
    _ok(client.request("DELETE", f"{url}/tags/mlflow.source.type"))
    _ok(client.post(f"{url}/params", json={"params": [{"key": "D", "value": "2"}]}))
    got = _ok(client.get(url))["model"]
    assert got["info"]["tags"] == [{"key": "a/b", "value": "1"}]
    assert got["data"] == {"params": [{"key": "C", "value": "1.0"}, {"key": "D", "value": "2"}],
                           "metrics": []}
    changed = client.post(f"{url}/params", json={"params": [{"key": "D", "value": "3"}]})
    assert changed.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    _ok(client.request("DELETE", f"{url}/tags/a/b"))  # a key with a slash is one key
    _ok(client.request("DELETE", url))
    assert client.get(url).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert _ok(client.get(url, params={"allow_deleted": "true"}))["model"]["info"]["tags"] == []


def test_models_without_a_run_are_refused_with_the_fix(client: TestClient, run: tuple[str, int]) -> None:
    got = client.post(f"{ML}/logged-models", json={"experiment_id": str(run[1]), "name": "m"})
    assert got.status_code == 400
    assert "inside `with mlflow.start_run():`" in got.json()["message"]
    bad = client.patch(f"{ML}/logged-models/{_create(client, run)['model_id']}", json={"status": "DONE"})
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_search_and_run_outputs(client: TestClient, stores: Stores, run: tuple[str, int]) -> None:
    first = _create(client, run)["model_id"]
    _create(client, run, name="other")
    found = _ok(client.post(f"{ML}/logged-models/search", json={
        "experiment_ids": [str(run[1])], "filter": "name = 'model'",
        "order_by": [{"field_name": "creation_timestamp", "ascending": False}]}))
    assert [m["info"]["model_id"] for m in found["models"]] == [first]
    page = _ok(client.post(f"{ML}/logged-models/search", json={
        "experiment_ids": [str(run[1])], "max_results": 1}))
    assert len(page["models"]) == 1
    assert page["next_page_token"] == "1"
    bad = client.post(f"{ML}/logged-models/search", json={
        "experiment_ids": [str(run[1])], "datasets": [{"dataset_name": "d"}]})
    assert "by dataset is not supported" in bad.json()["message"]

    _ok(client.post(f"{ML}/runs/outputs",
                    json={"run_id": run[0], "models": [{"model_id": first, "step": 2}]}))
    got = _ok(client.get(f"{ML}/runs/get", params={"run_id": run[0]}))["run"]
    assert got["outputs"] == {"model_outputs": [{"model_id": first, "step": 2}]}
    assert not any(t["key"].startswith("threadline.model.") for t in got["data"]["tags"])
    missing = client.post(f"{ML}/runs/outputs", json={"run_id": run[0], "models": [{"model_id": "m-x"}]})
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_artifacts_at_the_model_location_are_the_runs(client: TestClient, stores: Stores,
                                                      run: tuple[str, int]) -> None:
    info = _create(client, run)
    location = info["artifact_uri"].removeprefix("mlflow-artifacts:/")
    assert client.put(f"{ART}/{location}/MLmodel", content=b"flavors: {}\n").status_code == 200
    assert client.put(f"{ART}/{location}/data/w.bin", content=b"\x00w").status_code == 200
    listed = _ok(client.get(ART, params={"path": location}))["files"]
    assert listed == [{"path": "MLmodel", "is_dir": False, "file_size": 12},
                      {"path": "data", "is_dir": True}]
    assert client.get(f"{ART}/{location}/data/w.bin").content == b"\x00w"
    assert stores.tracking.read_artifact(run[0], f"logged_models/{info['model_id']}/data/w.bin") == b"\x00w"


@pytest.mark.parametrize("rest", ["../x.txt", "a/../../x.txt", "%2e%2e/x.txt", "C:/x.txt"])
def test_model_location_traversal_is_refused(client: TestClient, stores: Stores,
                                             run: tuple[str, int], rest: str) -> None:
    location = _create(client, run)["artifact_uri"].removeprefix("mlflow-artifacts:/")
    got = client.put(f"{ART}/{location}/{rest}", content=b"x")
    assert got.status_code == 400, got.text
    assert stores.tracking.list_artifacts(run[0]) == []


def test_model_location_under_another_experiment_or_id_is_not_found(
        client: TestClient, stores: Stores, run: tuple[str, int]) -> None:
    model_id = _create(client, run)["model_id"]
    other = stores.tracking.experiment("other").id
    got = client.put(f"{ART}/{other}/models/{model_id}/artifacts/a.txt", content=b"x")
    assert got.status_code == 404
    assert f"not in experiment {other}" in got.json()["message"]
    unknown = client.put(f"{ART}/{run[1]}/models/m-{'0' * 40}/artifacts/a.txt", content=b"x")
    assert unknown.status_code == 404


def test_register_a_logged_model(client: TestClient, stores: Stores, run: tuple[str, int]) -> None:
    info = _create(client, run)
    model_id, location = info["model_id"], info["artifact_uri"]
    _ok(client.post(f"{ML}/registered-models/create", json={"name": "churn"}))
    empty = client.post(f"{ML}/model-versions/create",
                        json={"name": "churn", "source": f"models:/{model_id}"})
    assert "has no artifacts" in empty.json()["message"]  # nothing uploaded yet
    client.put(f"{ART}/{location.removeprefix('mlflow-artifacts:/')}/MLmodel", content=b"flavors: {}\n")
    version = _ok(client.post(f"{ML}/model-versions/create", json={
        "name": "churn", "source": f"models:/{model_id}", "run_id": run[0],
        "model_id": model_id}))["model_version"]
    assert (version["version"], version["source"], version["run_id"], version["model_id"]) == (
        "1", f"models:/{model_id}", run[0], model_id)
    uri = _ok(client.get(f"{ML}/model-versions/get-download-uri", params={"name": "churn", "version": "1"}))
    assert uri["artifact_uri"] == location
    by_location = _ok(client.post(f"{ML}/model-versions/create", json={"name": "churn", "source": location}))
    assert by_location["model_version"]["run_id"] == run[0]
    registered = stores.registry.get_version("churn", 1)
    assert (registered.flavor, registered.run_id, registered.external_source) == (
        "mlflow", run[0], f"models:/{model_id}")
    other = client.post(f"{ML}/model-versions/create", json={
        "name": "churn", "source": f"models:/{model_id}", "model_id": f"m-{'1' * 40}"})
    assert "does not match source" in other.json()["message"]
    wrong_run = stores.tracking.create_run(run[1]).id
    refused = client.post(f"{ML}/model-versions/create", json={
        "name": "churn", "source": f"models:/{model_id}", "run_id": wrong_run})
    assert refused.json()["message"] == (
        f"run_id {wrong_run} does not match the run {run[0]} of source 'models:/{model_id}'")
    assert [v.version for v in stores.registry.list_versions("churn")] == [1, 2]
