"""The serving app factory: one ASGI app answering for one or more deployments.

Routes (for deployment NAME; the unprefixed forms answer for the first deployment named):

    POST /predict, /deployments/NAME/predict             JSON records (Threadline)
    POST /invocations, /deployments/NAME/invocations     MLflow scoring protocol (JSON, CSV)
    POST /v2/models/NAME[/versions/V]/infer              Open Inference Protocol V2
    GET  /v2/models/NAME[/versions/V][/ready], /v2, /v2/health/live|ready
    POST /feedback, /deployments/NAME/feedback           ground truth by request id
    GET  /deployments/NAME/status                        routes, versions, per-route metrics
    GET  /metrics, /health, /ping                        no auth, no admission control

Every prediction answer names the version that gave it (`x-model-version`), the route
(`x-route`), its request id (`x-request-id`) and whether the cache answered (`x-cache`).
Predictions are answered by `answer.answer`; the hot routes with a plain JSON body reach it
through the lean entry of `hotpath.ServingApp` without passing through Starlette, the rest
through the endpoints here. The bearer-token middleware is only installed when auth is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from threadline.errors import InvalidArgument, NotFound, ThreadlineError
from threadline.serving import protocols
from threadline.serving.answer import (
    INVOCATIONS,
    PREDICT,
    Call,
    Protocol,
    Reply,
    Served,
    ServingState,
    answer,
    error_reply,
    status_of,
)
from threadline.serving.auth import DENIED, BearerAuth, Tokens
from threadline.serving.cache import CacheSettings, open_cache
from threadline.serving.feedback import record_feedback
from threadline.serving.hotpath import ServingApp
from threadline.serving.metrics import ServingMetrics
from threadline.serving.predictor import quiet_feature_name_warning
from threadline.serving.predlog import PredictionLog
from threadline.serving.runtime import DeploymentRuntime
from threadline.serving.wire import read_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from starlette.requests import Request

    from threadline.data.repos import DataRepos
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.deployments import Deployments
    from threadline.serving.router import Target

log = logging.getLogger(__name__)
JSON = "application/json"
#: paths answered without a token and without admission control
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2"})


class _Sent(Response):
    """A `Reply` built by the shared answer path, sent by Starlette as it is."""

    def __init__(self, reply: Reply) -> None:
        self.status_code, self.raw_headers, self.body = reply
        self.background = None


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, JSON)


def error_response(status: int, message: str, *, field_name: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """`{"error": {"code", "message"[, "field"]}}` with `status`."""
    return _Sent(error_reply(status, message, field_name=field_name, headers=headers))


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


def _served(request: Request) -> Served:
    state = _state(request)
    name = request.path_params.get("name", state.default)
    found = state.served.get(name)
    if found is None:
        raise NotFound(f"this server does not serve deployment {name!r}; it serves "
                       f"{', '.join(state.served)}")
    return found


async def _answer(request: Request, protocol: Protocol,
                  pin: Callable[[list[Target]], Target] | None = None) -> Response:
    """A prediction request that came through Starlette, answered by the shared path."""
    served = _served(request)
    headers = request.headers
    settings = served.runtime.settings
    call = Call(None, headers.get("content-type", ""), headers.get("x-request-id"),
                headers.get(settings.sticky_header) if settings else None,
                headers.get("authorization"), request.client.host if request.client else "",
                read=lambda limit: read_body(request, limit), pin=pin)
    return _Sent(await answer(_state(request), served, protocol, call))


# ---------------------------------------------------------------- protocol endpoints
def _encode_v2(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    version = target.predictor.version
    return protocols.encode_v2(predictions, model=version.name, version=version.version,
                               request_id=decoded.id or request_id)


async def predict(request: Request) -> Response:
    """`POST /predict`: JSON records in, predictions out."""
    return await _answer(request, PREDICT)


async def invocations(request: Request) -> Response:
    """`POST /invocations`: MLflow's scoring protocol."""
    return await _answer(request, INVOCATIONS)


def _pinned(request: Request) -> Callable[[list[Target]], Target] | None:
    raw = request.path_params.get("version")
    if raw is None:
        return None
    if not str(raw).isdigit():
        raise InvalidArgument(f"model version must be a number, not {raw!r}")

    def pick(targets: list[Target]) -> Target:
        for target in targets:
            if target.predictor.version.version == int(raw):
                return target
        raise NotFound(f"version {raw} is not served by this deployment; it serves versions "
                       f"{', '.join(str(t.predictor.version.version) for t in targets)}")
    return pick


async def v2_infer(request: Request) -> Response:
    """`POST /v2/models/NAME[/versions/V]/infer`: Open Inference Protocol V2."""
    binary = request.headers.get("inference-header-content-length")
    v2 = Protocol("v2", lambda body, kind, spec: protocols.decode_v2(body, kind, spec, header_length=binary),
                  _encode_v2, cacheable=False)
    return await _answer(request, v2, pin=_pinned(request))


async def v2_model(request: Request) -> Response:
    """`GET /v2/models/NAME[/versions/V]`: the model's metadata."""
    served = _served(request)
    table = served.runtime.table
    if table is None:
        return error_response(503, f"deployment {served.runtime.name!r} is not ready")
    pin = _pinned(request)
    target = pin(table.serving) if pin else table.serving[0]
    versions = sorted({str(t.predictor.version.version) for t in table.serving})
    return _json(protocols.v2_metadata(served.runtime.name, versions,
                                       target.predictor.version.signature or {}))


async def v2_model_ready(request: Request) -> Response:
    """`GET /v2/models/NAME[/versions/V]/ready`: 200 when it can answer, 503 otherwise."""
    served = _served(request)
    table = served.runtime.table
    if table is None:
        return error_response(503, f"deployment {served.runtime.name!r} is not ready")
    pin = _pinned(request)
    if pin:
        pin(table.serving)
    return _json({"name": served.runtime.name, "ready": True})


async def v2_server(request: Request) -> Response:
    """`GET /v2`: server metadata."""
    return _json({"name": "threadline", "version": "1", "extensions": []})


async def live(request: Request) -> Response:
    """Liveness: the process answers."""
    return _json({"live": True})


async def ready(request: Request) -> Response:
    """Readiness: every deployment has a route table (503 otherwise, or while draining)."""
    state = _state(request)
    waiting = [n for n, s in state.served.items() if not s.runtime.ready
               or (s.runtime.admission is not None and s.runtime.admission.draining)]
    if waiting:
        return error_response(503, f"not ready: {', '.join(waiting)}", headers={"Retry-After": "1"})
    return _json({"ready": True})


async def metrics(request: Request) -> Response:
    """Prometheus exposition of every worker's metrics."""
    body, content_type = _state(request).metrics.render()
    return Response(body, 200, media_type=content_type)


async def status(request: Request) -> Response:
    """What this process serves for a deployment, with per-route metrics."""
    served = _served(request)
    body = served.runtime.status()
    body["metrics"] = _state(request).metrics.snapshot()
    cache = served.cache
    if cache is not None:
        body["cache"] = {"hits": cache.hits, "misses": cache.misses}
    if served.log is not None:
        body["log"] = {"logged_rows": served.log.logged_rows, "dropped_rows": served.log.dropped_rows,
                       "buffered_rows": served.log.buffered_rows}
    return _json(body)


async def feedback(request: Request) -> Response:
    """`POST /feedback`: `{"items": [{"request_id", "label"}, ...]}` (or the list itself)."""
    served = _served(request)
    settings = served.runtime.settings
    try:
        body = await read_body(request, settings.max_body if settings else 8 << 20)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != JSON:
            raise protocols.UnsupportedMediaType(f"feedback must be application/json, not {kind!r}",
                                                 content_type=kind)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"malformed JSON: {exc}") from exc
        items = value.get("items") if isinstance(value, dict) else value
        if not isinstance(items, list):
            raise InvalidArgument('feedback must be {"items": [{"request_id": ..., "label": ...}]}')
        stored = await run_in_threadpool(record_feedback, _state(request).registry.repos,
                                         served.runtime.name, items)
    except Exception as exc:  # noqa: BLE001 - every failure leaves as a status code
        return error_response(status_of(exc), str(exc), field_name=getattr(exc, "field", None))
    return _json({"stored": stored})


# --------------------------------------------------------------------- the app
async def _refused(request: Request, exc: Exception) -> Response:
    """A Threadline error raised before an endpoint's own handling (an unknown deployment,
    a bad version number) as its status code, not a 500."""
    return error_response(status_of(exc), str(exc), field_name=getattr(exc, "field", None))


def _routes() -> list[Route]:
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/predict", predict, ["POST"]), ("/invocations", invocations, ["POST"]),
        ("/feedback", feedback, ["POST"]),
        ("/deployments/{name}/predict", predict, ["POST"]),
        ("/deployments/{name}/invocations", invocations, ["POST"]),
        ("/deployments/{name}/feedback", feedback, ["POST"]),
        ("/deployments/{name}/status", status, ["GET"]),
        ("/v2", v2_server, ["GET"]), ("/v2/health/live", live, ["GET"]),
        ("/v2/health/ready", ready, ["GET"]),
        ("/v2/models/{name}", v2_model, ["GET"]),
        ("/v2/models/{name}/ready", v2_model_ready, ["GET"]),
        ("/v2/models/{name}/infer", v2_infer, ["POST"]),
        ("/v2/models/{name}/versions/{version}", v2_model, ["GET"]),
        ("/v2/models/{name}/versions/{version}/ready", v2_model_ready, ["GET"]),
        ("/v2/models/{name}/versions/{version}/infer", v2_infer, ["POST"]),
        ("/health", live, ["GET"]), ("/ping", live, ["GET"]), ("/metrics", metrics, ["GET"]),
    ]
    return [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]


def create_app(registry: ModelRegistry, deployments: Deployments, names: Sequence[str], *,
               require_auth: bool = False, log_predictions: bool = True,
               metrics: ServingMetrics | None = None, log_repos: DataRepos | None = None) -> ServingApp:
    """The serving app for deployments `names` of the home `registry` belongs to.

    The lifespan loads every deployment's versions (warmed on their examples) before the
    server accepts traffic, refreshes them on each deployment's `refresh_s`, and at shutdown
    stops admitting, answers what is in flight, and flushes the prediction logs.

    Args:
        registry: the home's model registry (versions are loaded from it).
        deployments: the home's deployments.
        names: the deployments to serve (the first answers the unprefixed routes).
        require_auth: require a bearer token on every route but health and metrics.
        log_predictions: write the prediction log (tests of other things may turn it off).
        metrics: where metrics go (default: a new ServingMetrics).
        log_repos: the connection the prediction logs commit through (default: the registry's;
            a server gives them their own, so log flushes never share one with requests).
    """
    if not names:
        raise InvalidArgument("name at least one deployment to serve")
    for name in names:
        deployments.get(name)  # NotFound with the create hint, before anything starts
    tokens = Tokens(registry.db)
    if require_auth and not tokens.active_hashes():
        raise InvalidArgument("authentication is required (the server is not bound to loopback) but "
                              "no token exists; create one with `threadline token create NAME`")

    @contextlib.asynccontextmanager
    async def lifespan(app: ServingApp) -> AsyncIterator[None]:
        quiet_feature_name_warning()
        sink = metrics or ServingMetrics()
        served: dict[str, Served] = {}
        for name in names:
            runtime = DeploymentRuntime(name, deployments, registry)
            runtime.on_batch = lambda p, rows, name=name: sink.observe_batch(
                name, p.version.name, str(p.version.version), rows)
            await runtime.refresh()
            settings = runtime.settings
            cache = open_cache(CacheSettings.from_dict(settings.cache)) if settings else None
            if cache is not None:
                runtime.on_unload.append(cache.invalidate)
            plog = (PredictionLog(log_repos or registry.repos, name, sample=settings.log_sample,
                                  flush_seconds=settings.log_flush_s)
                    if log_predictions and settings is not None and settings.log_sample > 0 else None)
            served[name] = Served(runtime, cache, plog)
        state = ServingState(registry, deployments, served, names[0], sink,
                             require_auth, await run_in_threadpool(tokens.active_hashes))
        app.state.serving = state
        app.attach(state)
        refresher = asyncio.get_running_loop().create_task(_refresh_forever(state, tokens))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            for item in served.values():
                await item.runtime.drain()
                await asyncio.gather(*item.shadows, return_exceptions=True)
                if item.log is not None:
                    await run_in_threadpool(item.log.close)
                if item.cache is not None:
                    await item.cache.aclose()

    app = ServingApp(routes=_routes(), lifespan=lifespan,
                     exception_handlers={ThreadlineError: _refused})
    if require_auth:  # without auth, no middleware at all: it would cost every request a call

        def accepted(scope: Any) -> frozenset[str] | None:
            state: ServingState = scope["app"].state.serving
            return state.tokens

        app.add_middleware(BearerAuth, accepted=accepted, open_paths=OPEN_PATHS,
                           deny=lambda path: error_response(401, DENIED,
                                                            headers={"WWW-Authenticate": "Bearer"}))
    return app


async def _refresh_forever(state: ServingState, tokens: Tokens) -> None:
    """Apply alias moves, new revisions and token changes as they happen."""
    while True:
        period = min((s.runtime.settings.refresh_s for s in state.served.values()
                      if s.runtime.settings), default=1.0)
        await asyncio.sleep(period)
        for item in state.served.values():
            await item.runtime.refresh()
        try:
            state.tokens = await run_in_threadpool(tokens.active_hashes)
        except Exception:
            log.warning("could not refresh the accepted tokens", exc_info=True)
