"""The MLflow artifact proxy: upload, list, download, limits and path traversal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.api.mlflow_artifacts import split_location
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from threadline.api.http import Stores

ART = "/api/2.0/mlflow-artifacts/artifacts"
MAX_UPLOAD = 64 * 1024  # the client fixture's limit


@pytest.fixture
def location(stores: Stores) -> str:
    """`<exp>/<run>/artifacts` of a new run."""
    info = stores.tracking.create_run(stores.tracking.experiment("e").id)
    return f"{info.experiment_id}/{info.id}/artifacts"


def test_upload_list_download(client: TestClient, stores: Stores, location: str) -> None:
    assert client.put(f"{ART}/{location}/model/a.txt", content=b"alpha").status_code == 200
    assert client.put(f"{ART}/{location}/b.bin", content=b"\x00beta").status_code == 200
    run_id = location.split("/")[1]
    assert stores.tracking.read_artifact(run_id, "model/a.txt") == b"alpha"
    root = client.get(ART, params={"path": location}).json()
    assert root == {"files": [{"path": "b.bin", "is_dir": False, "file_size": 5},
                              {"path": "model", "is_dir": True}]}
    inner = client.get(ART, params={"path": f"{location}/model"}).json()
    assert inner == {"files": [{"path": "a.txt", "is_dir": False, "file_size": 5}]}
    got = client.get(f"{ART}/{location}/model/a.txt")
    assert (got.status_code, got.content) == (200, b"alpha")
    missing = client.get(f"{ART}/{location}/model/none.txt")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_upload_over_the_limit_is_413_and_stores_nothing(
        client: TestClient, stores: Stores, location: str) -> None:
    got = client.put(f"{ART}/{location}/big.bin", content=b"x" * (MAX_UPLOAD + 1))
    assert got.status_code == 413
    assert stores.tracking.list_artifacts(location.split("/")[1]) == []


def test_streamed_upload_over_the_limit_is_413(client: TestClient, location: str) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(MAX_UPLOAD // 1024 + 2):
            yield b"x" * 1024

    assert client.put(f"{ART}/{location}/big.bin", content=chunks()).status_code == 413


@pytest.mark.parametrize("rest", [
    "../x.txt", "a/../../x.txt", "%2e%2e/x.txt", "a\\..\\x.txt", "C:/x.txt", "a%00.txt",
    "%252e%252e/x.txt",
])
def test_traversal_is_refused(client: TestClient, stores: Stores, location: str, rest: str) -> None:
    got = client.put(f"{ART}/{location}/{rest}", content=b"x")
    assert got.status_code == 400, got.text
    assert stores.tracking.list_artifacts(location.split("/")[1]) == []


@pytest.mark.parametrize("rest", ["..", "a/../..", "/etc"])
def test_listing_outside_the_run_is_refused(client: TestClient, location: str, rest: str) -> None:
    got = client.get(ART, params={"path": f"{location}/{rest}"})
    assert got.status_code == 400, got.text


@pytest.mark.parametrize("rest", ["%2e%2e/x", "a%2Fb", "a%5c..%5cx", "a%00b", "..", "/abs", "a/../../x"])
def test_split_location_refuses_what_a_second_decoding_would_turn_into_traversal(rest: str) -> None:
    # the transport decodes once; what is still encoded after that is refused, never decoded again
    with pytest.raises(InvalidArgument, match=r"artifact path|escapes|absolute|NUL"):
        split_location(f"1/{'a' * 32}/artifacts/{rest}")


def test_an_encoded_slash_is_a_folder_inside_the_run(client: TestClient, stores: Stores,
                                                     location: str) -> None:
    assert client.put(f"{ART}/{location}/a%2fb.txt", content=b"x").status_code == 200
    assert stores.tracking.read_artifact(location.split("/")[1], "a/b.txt") == b"x"


def test_a_run_under_another_experiment_is_not_found(client: TestClient, stores: Stores,
                                                     location: str) -> None:
    other = stores.tracking.experiment("other").id
    run_id = location.split("/")[1]
    got = client.put(f"{ART}/{other}/{run_id}/artifacts/a.txt", content=b"x")
    assert got.status_code == 404
    assert f"is not in experiment {other}" in got.json()["message"]


def test_malformed_location_is_400(client: TestClient) -> None:
    got = client.get(ART, params={"path": "1/notarun/artifacts"})
    assert got.status_code == 400
    assert "<experiment_id>/<run_id>/artifacts/<path>" in got.json()["message"]


def test_server_info_disables_multipart(client: TestClient) -> None:
    got = client.get("/api/3.0/mlflow/server-info").json()
    assert got["multipart_uploads_enabled"] is False


def test_large_upload_round_trips_byte_for_byte(stores: Stores, location: str) -> None:
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    from threadline.api.app import create_app
    from threadline.api.http import Limits

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated",
                                category=StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    data = bytes(range(256)) * (10 * 1024 + 7)  # ~2.5 MiB: several write batches
    with TestClient(create_app(stores, limits=Limits(max_upload=4 << 20))) as big:
        assert big.put(f"{ART}/{location}/data.bin", content=data).status_code == 200
        got = big.get(f"{ART}/{location}/data.bin")
    assert got.content == data
