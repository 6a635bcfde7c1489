"""Routing and error shapes: 404/405 as JSON, malformed bodies, limits, internal errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

ML = "/api/2.0/mlflow"
MAX_BODY = 4096  # the client fixture's limit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.testclient import TestClient

    from threadline.api.http import Stores


def test_unknown_route_is_json_404_in_each_shape(client: TestClient) -> None:
    own = client.get("/api/v1/nope")
    assert own.status_code == 404
    assert own.json() == {"error": {"code": "not_found", "message": "no such endpoint: GET /api/v1/nope"}}
    mlflow = client.post(f"{ML}/runs/nope", json={})
    assert mlflow.status_code == 404
    assert mlflow.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_wrong_method_is_405_naming_the_allowed_ones(client: TestClient) -> None:
    got = client.post(f"{ML}/runs/get", json={})
    assert got.status_code == 405
    assert "GET" in got.headers["allow"]
    assert got.json()["error_code"] == "BAD_REQUEST"
    assert "allowed: " in got.json()["message"]
    own = client.delete("/api/v1/health")
    assert own.status_code == 405
    assert own.json()["error"]["code"] == "method_not_allowed"


def test_malformed_json_is_400_with_the_reason(client: TestClient) -> None:
    got = client.post(f"{ML}/experiments/create", content=b"{bad",
                      headers={"content-type": "application/json"})
    assert got.status_code == 400
    assert got.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert got.json()["message"].startswith("malformed JSON in request body: ")


def test_json_that_is_not_an_object_is_400(client: TestClient) -> None:
    got = client.post(f"{ML}/experiments/create", json=[1, 2])
    assert got.status_code == 400
    assert "must be a JSON object, not list" in got.json()["message"]


def test_undeclared_content_type_is_415(client: TestClient) -> None:
    got = client.post(f"{ML}/experiments/create", content=b"name=x",
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert got.status_code == 415
    assert "must be application/json" in got.json()["message"]


def test_missing_required_parameter_is_named(client: TestClient) -> None:
    got = client.post(f"{ML}/experiments/create", json={})
    assert got.status_code == 400
    assert got.json()["message"] == "missing value for required parameter 'name'"


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    got = client.post(f"{ML}/experiments/create", json={"name": "x" * (MAX_BODY + 10)})
    assert got.status_code == 413
    assert "over the limit" in got.json()["message"]


def test_streamed_body_over_the_limit_is_413_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1024

    got = client.post(f"{ML}/experiments/create", content=chunks(),
                      headers={"content-type": "application/json"})
    assert got.status_code == 413


def test_missing_entities_map_to_resource_does_not_exist(client: TestClient) -> None:
    got = client.get(f"{ML}/runs/get", params={"run_id": "0" * 32})
    assert got.status_code == 404
    assert got.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    own = client.get(f"/api/v1/runs/{'0' * 32}")
    assert own.status_code == 404
    assert own.json()["error"]["code"] == "not_found"


def test_duplicate_names_map_to_resource_already_exists(client: TestClient) -> None:
    assert client.post(f"{ML}/experiments/create", json={"name": "a"}).status_code == 200
    got = client.post(f"{ML}/experiments/create", json={"name": "a"})
    assert got.status_code == 409
    assert got.json() == {"error_code": "RESOURCE_ALREADY_EXISTS",
                          "message": "an experiment named 'a' exists already"}


def test_unexpected_errors_are_500_json_without_details(
        client: TestClient, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret path /etc/x")

    monkeypatch.setattr(stores.tracking, "get_run", boom)
    got = client.get(f"{ML}/runs/get", params={"run_id": "a" * 32})
    assert got.status_code == 500
    assert got.json() == {"error_code": "INTERNAL_ERROR",
                          "message": "internal error (RuntimeError); see the server log"}


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"])
def test_both_mlflow_prefixes_are_served(client: TestClient, prefix: str) -> None:
    got = client.get(f"{prefix}/experiments/get", params={"experiment_id": "0"})
    assert got.status_code == 200
    assert got.json()["experiment"]["name"] == "Default"
