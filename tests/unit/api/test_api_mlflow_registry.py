"""MLflow model-registry endpoints over the Threadline registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.testclient import TestClient

    from threadline.api.http import Stores

ML = "/api/2.0/mlflow"


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def logged_run(stores: Stores, tmp_path: Path) -> tuple[str, int]:
    """A run that logged an MLflow model folder at `model/`; returns (run id, experiment id)."""
    exp = stores.tracking.experiment("e")
    info = stores.tracking.create_run(exp.id)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    stores.tracking.log_artifacts(info.id, folder, "model")
    return info.id, exp.id


def test_model_and_versions(client: TestClient, stores: Stores, logged_run: tuple[str, int]) -> None:
    run_id, exp_id = logged_run
    created = _ok(client.post(f"{ML}/registered-models/create", json={
        "name": "churn", "description": "d", "tags": [{"key": "team", "value": "ml"}]}))
    assert created["registered_model"]["tags"] == [{"key": "team", "value": "ml"}]
    v1 = _ok(client.post(f"{ML}/model-versions/create", json={
        "name": "churn", "source": f"runs:/{run_id}/model", "run_id": run_id}))["model_version"]
    assert (v1["version"], v1["source"], v1["status"], v1["run_id"]) == (
        "1", f"runs:/{run_id}/model", "READY", run_id)
    source = f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/model"
    v2 = _ok(client.post(f"{ML}/model-versions/create", json={"name": "churn", "source": source}))
    assert v2["model_version"]["version"] == "2"
    version = stores.registry.get_version("churn", 1)
    assert (version.flavor, version.run_id) == ("mlflow", run_id)

    _ok(client.post(f"{ML}/registered-models/alias", json={"name": "churn", "alias": "prod", "version": "1"}))
    got = _ok(client.get(f"{ML}/registered-models/alias", params={"name": "churn", "alias": "prod"}))
    assert got["model_version"]["aliases"] == ["prod"]
    model = _ok(client.get(f"{ML}/registered-models/get", params={"name": "churn"}))["registered_model"]
    assert model["aliases"] == [{"alias": "prod", "version": "1"}]
    assert [v["version"] for v in model["latest_versions"]] == ["2"]
    latest = _ok(client.post(f"{ML}/registered-models/get-latest-versions", json={"name": "churn"}))
    assert [v["version"] for v in latest["model_versions"]] == ["2"]
    uri = _ok(client.get(f"{ML}/model-versions/get-download-uri", params={"name": "churn", "version": "1"}))
    assert uri["artifact_uri"] == source

    _ok(client.patch(f"{ML}/model-versions/update",
                     json={"name": "churn", "version": "1", "description": "x"}))
    assert stores.registry.get_version("churn", 1).description == "x"
    found = _ok(client.get(f"{ML}/model-versions/search", params={"filter": f"run_id = '{run_id}'"}))
    assert [v["version"] for v in found["model_versions"]] == ["2", "1"]
    _ok(client.request("DELETE", f"{ML}/registered-models/alias", json={"name": "churn", "alias": "prod"}))
    assert stores.registry.get_model("churn").aliases == {}
    _ok(client.request("DELETE", f"{ML}/model-versions/delete", json={"name": "churn", "version": "2"}))
    missing = client.get(f"{ML}/model-versions/get", params={"name": "churn", "version": "2"})
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_model_update_rename_search_delete(client: TestClient, stores: Stores) -> None:
    for name in ("alpha", "beta", "delta"):
        _ok(client.post(f"{ML}/registered-models/create", json={"name": name}))
    _ok(client.patch(f"{ML}/registered-models/update", json={"name": "alpha", "description": "new"}))
    _ok(client.post(f"{ML}/registered-models/set-tag", json={"name": "alpha", "key": "k", "value": "v"}))
    renamed = _ok(client.post(f"{ML}/registered-models/rename", json={"name": "alpha", "new_name": "gamma"}))
    assert renamed["registered_model"]["description"] == "new"
    found = _ok(client.get(f"{ML}/registered-models/search", params={"filter": "name LIKE 'g%'"}))
    assert [m["name"] for m in found["registered_models"]] == ["gamma"]
    # the MLflow client leaves prompts out with this filter: a missing tag passes `!=`
    no_prompts = "tags.`mlflow.prompt.is_prompt` != 'true'"
    found = _ok(client.get(f"{ML}/registered-models/search", params={"filter": no_prompts}))
    assert [m["name"] for m in found["registered_models"]] == ["beta", "delta", "gamma"]
    _ok(client.request("DELETE", f"{ML}/registered-models/delete-tag", json={"name": "gamma", "key": "k"}))
    _ok(client.request("DELETE", f"{ML}/registered-models/delete", json={"name": "gamma"}))
    assert [m.name for m in stores.registry.list_models()] == ["beta", "delta"]
    taken = client.post(f"{ML}/registered-models/rename", json={"name": "beta", "new_name": "delta"})
    assert taken.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.parametrize("source", ["s3://bucket/model", "runs:/nothex/model", "file:///etc/passwd"])
def test_version_sources_outside_this_server_are_refused(client: TestClient, source: str) -> None:
    _ok(client.post(f"{ML}/registered-models/create", json={"name": "m"}))
    got = client.post(f"{ML}/model-versions/create", json={"name": "m", "source": source})
    assert got.status_code == 400
    assert "is not served here" in got.json()["message"]


def test_version_whose_run_id_is_not_the_sources_run_is_refused(
        client: TestClient, stores: Stores, logged_run: tuple[str, int]) -> None:
    run_id, exp_id = logged_run
    other = stores.tracking.create_run(exp_id).id  # exists, but did not log the files
    _ok(client.post(f"{ML}/registered-models/create", json={"name": "m"}))
    for source in (f"runs:/{run_id}/model", f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/model"):
        got = client.post(f"{ML}/model-versions/create",
                          json={"name": "m", "source": source, "run_id": other})
        assert got.status_code == 400
        assert got.json() == {"error_code": "INVALID_PARAMETER_VALUE",
                              "message": f"run_id {other} does not match the run {run_id} of "
                                         f"source {source!r}"}
    assert stores.registry.list_versions("m") == []  # nothing was registered


def test_version_of_a_run_without_the_model_is_refused(client: TestClient, stores: Stores) -> None:
    run_id = stores.tracking.create_run(stores.tracking.experiment("e").id).id
    _ok(client.post(f"{ML}/registered-models/create", json={"name": "m"}))
    got = client.post(f"{ML}/model-versions/create", json={"name": "m", "source": f"runs:/{run_id}/model"})
    assert got.status_code == 404
    assert "has no artifacts at 'model'" in got.json()["message"]


def test_stages_and_version_tags_are_refused_with_the_reason(client: TestClient) -> None:
    got = client.post(f"{ML}/model-versions/transition-stage",
                      json={"name": "m", "version": "1", "stage": "Production"})
    assert got.status_code == 400
    assert "use aliases instead of stages" in got.json()["message"]
