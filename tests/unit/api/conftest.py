"""Fixtures for API tests: the app on a fresh home, driven in-process by Starlette's TestClient."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork; httpx (a dev dependency) works the same for these
    # tests. Only this one warning, only at this import, is silenced.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated",
                            category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from threadline.api.app import create_app
from threadline.api.http import Limits, Stores
from threadline.registry.registry import ModelRegistry
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos

#: small limits, so the 413 paths are cheap to reach
MAX_BODY = 4096
MAX_UPLOAD = 64 * 1024
ML = "/api/2.0/mlflow"


@pytest.fixture
def stores(home: DataRepos) -> Stores:
    """The stores of the test's home."""
    tracking = TrackingStore(home)
    return Stores(home, tracking, ModelRegistry(home, tracking))


@pytest.fixture
def client(stores: Stores) -> Iterator[TestClient]:
    """A TestClient on the app (lifespan run), with server errors answered, not raised."""
    app = create_app(stores, limits=Limits(max_body=MAX_BODY, max_upload=MAX_UPLOAD))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def test_client() -> type[TestClient]:
    """Starlette's TestClient class, imported with its deprecation warning silenced."""
    return TestClient
