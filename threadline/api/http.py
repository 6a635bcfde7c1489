"""Request and response plumbing shared by every router: JSON in and out, limits, the stores.

Bodies are read with a running byte count, so an oversized request is refused with 413 as soon
as it crosses the limit instead of after it was buffered whole. JSON goes out through orjson.
Store calls block (SQLite, files), so `call` runs them in Starlette's thread pool and the event
loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from threadline.errors import InvalidArgument, ThreadlineError
from threadline.serving.wire import PayloadTooLarge, read_body

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos
    from threadline.registry.registry import ModelRegistry
    from threadline.tracking.store import TrackingStore

P = ParamSpec("P")
T = TypeVar("T")
#: what a route calls: an async function of the request
Endpoint = Callable[[Request], Awaitable[Response]]

#: JSON request bodies above this are refused with 413 (artifact uploads have their own limit)
#: MLflow's REST API is served under both of these (the client uses the first, its UI the second)
MLFLOW_API = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
DEFAULT_MAX_BODY = 32 << 20
#: artifact uploads above this are refused with 413
DEFAULT_MAX_UPLOAD = 1 << 30


class UnsupportedMediaType(ThreadlineError):
    """A request body has a content type the route does not accept (HTTP 415)."""

    exit_code = 2


#: statuses of the errors this package adds to `threadline.errors.HTTP_STATUS`
EXTRA_STATUS: dict[type[ThreadlineError], int] = {PayloadTooLarge: 413, UnsupportedMediaType: 415}


@dataclass(frozen=True)
class Limits:
    """Size limits of one server, fixed at start."""

    max_body: int = DEFAULT_MAX_BODY
    max_upload: int = DEFAULT_MAX_UPLOAD


@dataclass(frozen=True)
class Stores:
    """What the routes serve from: one set per process, opened at startup."""

    repos: DataRepos
    tracking: TrackingStore
    registry: ModelRegistry


class JSONResponse(Response):
    """A JSON response serialised by orjson (NaN and infinities become null)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body bytes of `content`."""
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def stores(request: Request) -> Stores:
    """The stores of the app serving `request`."""
    found: Stores = request.app.state.stores
    return found


def limits(request: Request) -> Limits:
    """The size limits of the app serving `request`."""
    found: Limits = request.app.state.limits
    return found


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking store call in the thread pool, so the event loop never waits on it."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object in the request body ({} when the body is empty).

    Raises:
        PayloadTooLarge: the body is over the server's limit.
        UnsupportedMediaType: the body declares a content type other than JSON.
        InvalidArgument: the body is not a JSON object; the message gives the parser's reason.
    """
    body = await read_body(request, limits(request).max_body)
    if not body.strip():
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"request body must be application/json, not {kind!r}")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON in request body: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"request body must be a JSON object, not {type(value).__name__}")
    return value


def query_dict(request: Request) -> dict[str, Any]:
    """Query parameters as a dict; a parameter given several times becomes a list."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            old = out[key]
            out[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            out[key] = value
    return out


def int_param(value: Any, name: str, default: int | None = None) -> int | None:
    """An integer parameter given as a number or a decimal string; None/"" gives `default`."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    raise InvalidArgument(f"{name} must be an integer, not {value!r}")


def str_param(body: dict[str, Any], *names: str, required: bool = True) -> str:
    """The first of `names` present in `body` as a string (MLflow sends `run_id` or `run_uuid`)."""
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise InvalidArgument(f"{name} must be a string, not {value!r}")
        return str(value)
    if required:
        raise InvalidArgument(f"missing value for required parameter {names[0]!r}")
    return ""


def list_param(value: Any) -> list[Any]:
    """A parameter that may be missing, one value or a list, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


async def params(request: Request) -> dict[str, Any]:
    """A request's parameters: the query string of a GET, the JSON body otherwise."""
    if request.method == "GET":
        return query_dict(request)
    return await read_json(request)


def both_prefixes(prefixes: tuple[str, ...], table: list[tuple[str, str, Endpoint]]) -> list[Route]:
    """Routes for `(path, method, endpoint)` rows under each of `prefixes`."""
    return [Route(prefix + path, endpoint, methods=[method])
            for prefix in prefixes for path, method, endpoint in table]


def empty() -> JSONResponse:
    """The empty JSON object MLflow answers write calls with."""
    return JSONResponse({})
