"""The uvicorn runner and the `threadline server` command: defaults, checks, the auth warning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from threadline.api import server as api_server
from threadline.api.app import create_app
from threadline.cli import server as server_cli
from threadline.errors import InvalidArgument, NotInitialized
from threadline.serving.auth import Tokens

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.api.http import Stores


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert api_server.is_loopback(host) is loopback


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"port": 0}, "port must be between 1 and 65535"),
    ({"workers": 0}, "workers must be at least 1"),
    ({"max_upload": 0}, "max upload must be a positive number"),
])
def test_serve_refuses_bad_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        api_server.serve(**kwargs)


def test_serve_needs_a_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THREADLINE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotInitialized):
        api_server.serve(home=tmp_path)


def _capture_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.delenv(api_server.ENV_MAX_UPLOAD, raising=False)  # serve() sets it: undo afterwards
    monkeypatch.setattr(api_server.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


@pytest.mark.usefixtures("home")
def test_serve_defaults_loopback_no_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_run(monkeypatch)
    api_server.serve()
    (_app, options), = calls
    assert (options["host"], options["port"], options["access_log"]) == ("127.0.0.1", 5000, False)


@pytest.mark.usefixtures("home")
def test_serve_with_workers_uses_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_run(monkeypatch)
    api_server.serve(workers=3, max_upload=1234)
    (app, options), = calls
    assert (app, options["factory"], options["workers"]) == ("threadline.api.server:build_app", True, 3)
    assert api_server.build_app().state.limits.max_upload == 1234


@pytest.mark.usefixtures("home")
def test_binding_beyond_loopback_needs_a_token_and_then_requires_it(
        monkeypatch: pytest.MonkeyPatch, stores: Stores, test_client: Any) -> None:
    calls = _capture_run(monkeypatch)
    monkeypatch.delenv(api_server.ENV_AUTH, raising=False)
    with pytest.raises(InvalidArgument, match="threadline token create"):
        server_cli.server(host="0.0.0.0", port=5001)
    assert calls == []  # refused before binding
    token = Tokens(stores.repos.db).create("ci")
    server_cli.server(host="0.0.0.0", port=5001)
    assert calls[0][1]["host"] == "0.0.0.0"
    app = create_app(stores, require_auth=True)
    with test_client(app) as client:
        assert client.get("/api/v1/health").status_code == 200
        refused = client.get("/api/v1/repos")
        assert refused.status_code == 401
        assert "threadline token create" in refused.json()["error"]["message"]
        mlflow = client.get("/api/2.0/mlflow/experiments/search", params={"max_results": 1})
        assert mlflow.json()["error_code"] == "UNAUTHENTICATED"
        ok = client.get("/api/v1/repos", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        Tokens(stores.repos.db).revoke("ci")
        monkeypatch.setattr("threadline.serving.auth.time.monotonic", lambda: float("inf"))
        assert client.get("/api/v1/repos", headers={"Authorization": f"Bearer {token}"}).status_code == 401
