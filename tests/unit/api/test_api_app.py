"""The app factory: stores opened by the lifespan, and blocking store calls off the event loop."""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any

from starlette.exceptions import StarletteDeprecationWarning

from threadline.api import app as app_module
from threadline.api.app import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated",
                            category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

if TYPE_CHECKING:
    import pytest

    from threadline.api.http import Stores
    from threadline.data.repos import DataRepos


def test_lifespan_opens_the_home_and_closes_it(home: DataRepos, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[Stores] = []
    real_close = app_module.close_stores
    monkeypatch.setattr(app_module, "close_stores", lambda found: (closed.append(found), real_close(found)))
    app = create_app()  # THREADLINE_HOME points at the test's home
    with TestClient(app) as client:
        assert client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}).status_code == 200
        opened = app.state.stores
        assert opened.repos is not home  # its own connection, not the test's
        assert closed == []
    assert closed == [opened]


def test_a_blocked_store_call_does_not_block_other_requests(
        client: TestClient, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    real = stores.tracking.get_run

    def slow(run_id: str) -> Any:
        entered.set()
        assert release.wait(30), "never released"
        return real(run_id)

    monkeypatch.setattr(stores.tracking, "get_run", slow)
    result: dict[str, int] = {}

    def request() -> None:
        result["status"] = client.get("/api/2.0/mlflow/runs/get", params={"run_id": "a" * 32}).status_code

    worker = threading.Thread(target=request)
    worker.start()
    try:
        assert entered.wait(30)
        # the slow call holds a pool thread; the event loop still answers
        assert client.get("/api/v1/health").json() == {"status": "ok"}
    finally:
        release.set()
        worker.join(30)
    assert result["status"] == 404
