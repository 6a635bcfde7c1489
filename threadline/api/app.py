"""The app factory: routes, error handling, and the stores opened for the app's lifetime.

`create_app` builds the ASGI app with its dependencies injected: tests pass ready `Stores`;
`threadline server` passes none and the lifespan opens the home once at startup and closes it
at shutdown. Nothing is read from the environment on the request path.

Every error leaves as JSON with a status code. Under `/api/2.0/`, `/ajax-api/2.0/` and
`/api/3.0/` it has MLflow's shape, `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}`,
because the MLflow client turns exactly that into an `MlflowException`; elsewhere it has
Threadline's, `{"error": {"code": "not_found", "message": ...}}`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from threadline.api import (
    mlflow_artifacts,
    mlflow_logged_models,
    mlflow_registry,
    mlflow_tracking,
    monitoring,
    routes,
)
from threadline.api.http import EXTRA_STATUS, JSONResponse, Limits, Stores
from threadline.config import load_settings
from threadline.data.connect import connect
from threadline.errors import AlreadyExists, ThreadlineError, http_status
from threadline.monitor.scheduler import Scheduler
from threadline.registry.registry import ModelRegistry
from threadline.serving.auth import DENIED, BearerAuth, TokenCache, Tokens
from threadline.tracking.model import DEFAULT_EXPERIMENT
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

#: paths answered without a token (load balancers' and MLflow tools' probes)
OPEN_PATHS = frozenset({"/health", "/version", "/api/v1/health"})
#: path prefixes served with MLflow's error shape
MLFLOW_PREFIXES = ("/api/2.0/", "/ajax-api/2.0/", "/api/3.0/")

#: HTTP status -> MLflow error code (the names of MLflow's `databricks.ErrorCode`)
_MLFLOW_CODES = {
    400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST", 405: "BAD_REQUEST", 409: "RESOURCE_CONFLICT",
    413: "INVALID_PARAMETER_VALUE", 415: "INVALID_PARAMETER_VALUE", 429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
#: HTTP status -> Threadline's error code
_CODES = {
    400: "invalid_argument", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 503: "unavailable",
    507: "storage_error",
}


def status_of(error: ThreadlineError) -> int:
    """The HTTP status of an error: threadline.errors' table plus this package's own errors."""
    for cls in type(error).__mro__:
        if cls in EXTRA_STATUS:
            return EXTRA_STATUS[cls]
    return http_status(error)


def mlflow_code(error: ThreadlineError | None, status: int) -> str:
    """The MLflow error code a client expects for `error` answered with `status`."""
    if isinstance(error, AlreadyExists):
        return "RESOURCE_ALREADY_EXISTS"
    return _MLFLOW_CODES.get(status, "INTERNAL_ERROR")


def error_response(path: str, status: int, message: str, error: ThreadlineError | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """An error as JSON in the shape the API at `path` uses."""
    if path.startswith(MLFLOW_PREFIXES):
        code = mlflow_code(error, status)
        if status == 404 and error is None:
            code = "ENDPOINT_NOT_FOUND"  # the client falls back to other endpoints on this code
        body: dict[str, Any] = {"error_code": code, "message": message}
    else:
        body = {"error": {"code": _CODES.get(status, "internal_error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _threadline_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ThreadlineError)
    return error_response(request.url.path, status_of(exc), str(exc), exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = (f"method {request.method} is not allowed on {request.url.path}; allowed: "
                   f"{(exc.headers or {}).get('Allow', '-')}")
    else:
        message = exc.detail
    return error_response(request.url.path, exc.status_code, message, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # the details go to the server's log, never to the client (they may name paths or SQL)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request.url.path, 500,
                          f"internal error ({type(exc).__name__}); see the server log")


def open_stores(home: Path | None = None) -> Stores:
    """Open the home that applies to `home` (or the working folder): one set per process."""
    repos = connect(load_settings(home))
    tracking = TrackingStore(repos)
    tracking.experiment(DEFAULT_EXPERIMENT)  # MLflow clients expect it to exist (their id "0")
    return Stores(repos, tracking, ModelRegistry(repos, tracking))


def close_stores(found: Stores) -> None:
    """Release the database connections and content store of `found`."""
    found.repos.close()


def create_app(stores: Stores | None = None, *, home: Path | None = None,
               limits: Limits | None = None, require_auth: bool = False,
               monitor: bool = False) -> Starlette:
    """The Threadline API as an ASGI app.

    Args:
        stores: the stores to serve (kept open; the caller closes them). None: the home that
            applies to `home` is opened at startup and closed at shutdown.
        home: where to look for the home when `stores` is None (default: THREADLINE_HOME or
            the working folder, walking up).
        limits: body size limits (default: 32 MiB JSON, 1 GiB artifact uploads).
        require_auth: every route but the health probes needs a bearer token (`threadline
            token create`); MLflow clients send theirs from MLFLOW_TRACKING_TOKEN.
        monitor: run every stored monitoring policy on its interval while the app runs.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = stores if stores is not None else open_stores(home)
        app.state.stores = opened
        scheduler = Scheduler(opened.registry) if monitor else None
        if scheduler is not None:
            scheduler.start()
            app.state.scheduler = scheduler
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if stores is None:
                close_stores(opened)

    app = Starlette(
        routes=[*routes.routes(), *monitoring.routes(), *mlflow_tracking.routes(),
                *mlflow_logged_models.routes(), *mlflow_registry.routes(), *mlflow_artifacts.routes()],
        exception_handlers={ThreadlineError: _threadline_error, HTTPException: _http_error,
                            Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.limits = limits or Limits()
    if require_auth:
        caches: dict[int, TokenCache] = {}

        def accepted(scope: Any) -> frozenset[str]:
            db = scope["app"].state.stores.repos.db
            cache = caches.get(id(db))
            if cache is None:
                cache = caches[id(db)] = TokenCache(Tokens(db))
            return cache.accepted()

        app.add_middleware(BearerAuth, accepted=accepted, open_paths=OPEN_PATHS,
                           deny=lambda path: error_response(path, 401, DENIED,
                                                            headers={"WWW-Authenticate": "Bearer"}))
    if stores is not None:  # usable without running the lifespan (e.g. TestClient without `with`)
        app.state.stores = stores
    return app
