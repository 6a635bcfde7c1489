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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from threadline.errors import InvalidArgument, NotFound, ThreadlineError, http_status
from threadline.registry.signature import SignatureError
from threadline.serving import protocols
from threadline.serving.admission import Refused
from threadline.serving.auth import DENIED, BearerAuth, Tokens, token_hash
from threadline.serving.cache import CacheSettings, ResultCache, open_cache
from threadline.serving.feedback import record_feedback
from threadline.serving.metrics import ServingMetrics
from threadline.serving.predictor import quiet_feature_name_warning
from threadline.serving.predlog import LogEntry, PredictionLog
from threadline.serving.runtime import DeploymentRuntime
from threadline.serving.wire import read_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from starlette.requests import Request

    from threadline.data.repos import DataRepos
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.cache import RedisCache
    from threadline.serving.deployments import Deployments
    from threadline.serving.inputs import Inputs
    from threadline.serving.router import Target

log = logging.getLogger(__name__)
JSON = "application/json"
#: request ids: unique per process (random prefix) and cheap (a counter), not a uuid4 per call
_ID_PREFIX = secrets.token_hex(5)
_ids = itertools.count()
#: paths answered without a token and without admission control
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2"})
_SHADOW_LIMIT = 64


class DeadlineExceeded(ThreadlineError):
    """The server could not answer within the deployment's deadline (HTTP 504)."""


_STATUS: dict[type[Exception], int] = {SignatureError: 422, DeadlineExceeded: 504}
for _kind, _code in protocols.STATUS.items():
    _STATUS[_kind] = _code


def status_of(error: Exception) -> int:
    """The HTTP status of an error raised while answering."""
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return http_status(error) if isinstance(error, ThreadlineError) else 500


@dataclass
class Served:
    """Everything one deployment needs at request time."""

    runtime: DeploymentRuntime
    cache: ResultCache | RedisCache | None
    log: PredictionLog | None
    shadows: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass
class ServingState:
    """The app's state: its deployments, metrics, accepted tokens."""

    registry: ModelRegistry
    deployments: Deployments
    served: dict[str, Served]
    default: str
    metrics: ServingMetrics
    require_auth: bool
    tokens: frozenset[str] = frozenset()


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, JSON)


def error_response(status: int, message: str, *, field_name: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """`{"error": {"code", "message"[, "field"]}}` with `status`."""
    body: dict[str, Any] = {"code": status, "message": message}
    if field_name is not None:
        body["field"] = field_name
    return _json({"error": body}, status, headers)


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


async def _answer(request: Request, served: Served, protocol: str,
                  decode: Callable[[bytes, str, protocols.InputSpec], Any],
                  encode: Callable[[Any, Target, str, Any], bytes],
                  pin: Callable[[list[Target]], Target] | None = None) -> Response:
    """The shared path of every prediction protocol."""
    state = _state(request)
    runtime = served.runtime
    settings, admission = runtime.settings, runtime.admission
    name = runtime.name
    start = time.perf_counter()
    if runtime.table is None or settings is None or admission is None:
        return error_response(503, f"deployment {name!r} is not ready: "
                              f"{runtime.last_error or 'loading'}", headers={"Retry-After": "1"})
    request_id = request.headers.get("x-request-id") or f"{_ID_PREFIX}{next(_ids):012x}"
    limiter = runtime.limiter
    if limiter is not None:
        wait = limiter.retry_after(_client_key(request))
        if wait is not None:
            state.metrics.observe_rejection(name, "429")
            return error_response(429, f"rate limit of {limiter.rate:g} requests/s for this client "
                                  "reached; retry later", headers={"Retry-After": str(math.ceil(wait))})
    try:
        await admission.enter()
    except Refused as refused:
        state.metrics.observe_rejection(name, "503")
        return error_response(503, f"server {refused.reason}; retry later",
                              headers={"Retry-After": str(refused.retry_after)})
    target: Target | None = None
    inputs: Inputs | None = None
    status = 200
    try:
        state.metrics.request_started(name)
        async with asyncio.timeout(settings.deadline_ms / 1000):
            body = await read_body(request, settings.max_body)
            # the table is read after the last await before the version is pinned (inflight),
            # so a swap meanwhile cannot unload the version this request is given
            table = runtime.table
            if table is None:
                raise Refused("draining", retry_after=2)
            target = pin(table.serving) if pin else table.choose(request.headers.get(settings.sticky_header))
            predictor = target.predictor
            predictor.inflight += 1
            lazy: Callable[[], Inputs] | None = None
            try:
                kind = request.headers.get("content-type", "")
                copies = table.copies() if table.shadows else []
                # the same bytes asked of the same version again: answered before any decoding
                # (in-process cache only; V2 answers echo the request's id, so they are rebuilt)
                local = served.cache if isinstance(served.cache, ResultCache) else None
                raw = (protocol.encode() + kind.encode() + b"\0" + body
                       if local is not None and protocol != "v2" and not copies else None)
                known = local.get(predictor.id, raw) if local is not None and raw is not None else None
                payload = known
                if known is not None:
                    predictions, hit, decoded = orjson.Fragment(known), True, None
                    spec = predictor.spec

                    def lazy() -> Inputs:  # the log decodes the rows later, in its own thread
                        found = decode(body, kind, spec)
                        return cast("Inputs", getattr(found, "inputs", found))
                else:
                    # decoders check the rows against the version's signature (422 naming the field)
                    decoded = decode(body, kind, predictor.spec)
                    inputs = getattr(decoded, "inputs", decoded)
                    predictions, hit, payload = await _predict(served, target, inputs,
                                                               fragment=protocol != "v2")
                    if local is not None and raw is not None:
                        local.put(predictor.id, raw, payload)
            finally:
                predictor.inflight -= 1
            if served.cache is not None:
                state.metrics.observe_cache(name, predictor.version.name, str(predictor.version.version), hit)
        if settings.log_sample > 0 or copies:
            logged = orjson.loads(payload) if isinstance(predictions, orjson.Fragment) and payload \
                else predictions
            _after(state, served, copies, target, inputs, logged, request_id, start, lazy)
        headers = {"x-model-version": predictor.id, "x-route": target.route.name,
                   "x-request-id": request_id, "x-cache": "hit" if hit else "miss"}
        return Response(encode(predictions, target, request_id, decoded), 200, headers, JSON)
    except Refused as refused:
        status = 503
        return error_response(503, f"server {refused.reason}; retry later",
                              headers={"Retry-After": str(refused.retry_after)})
    except TimeoutError:
        status = 504
        state.metrics.observe_rejection(name, "504")
        return error_response(504, f"no answer within the deadline of {settings.deadline_ms:g} ms")
    except Exception as exc:
        status = status_of(exc)
        if status >= 500:
            log.exception("deployment %s: request %s failed", name, request_id)
        return error_response(status, str(exc) or type(exc).__name__,
                              field_name=getattr(exc, "field", None))
    finally:
        admission.leave()
        state.metrics.request_finished(name)
        if target is not None:
            version = target.predictor.version
            state.metrics.observe_request(name, target.route.name, version.name, str(version.version),
                                          protocol, status, time.perf_counter() - start)
            if status != 200:
                state.metrics.observe_error(name, target.route.name, version.name,
                                            str(version.version), str(status))


def _client_key(request: Request) -> str:
    """Who a request comes from, for rate limits: its bearer token (hashed), else its address."""
    header = request.headers.get("authorization")
    if header:
        return "t:" + token_hash(header)
    return "a:" + (request.client.host if request.client else "")


async def _predict(served: Served, target: Target, inputs: Inputs, *,
                   fragment: bool = True) -> tuple[Any, bool, bytes]:
    """The predictions for `inputs` from `target` (through the cache when there is one), whether
    the cache answered, and their JSON bytes (b"" without a cache). A cached answer comes back
    as an `orjson.Fragment` (written into the response as is) when `fragment`."""
    if served.cache is None:
        return await target.batcher.submit(inputs), False, b""
    computed: list[Any] = []

    async def compute() -> bytes:
        out = await target.batcher.submit(inputs)
        computed.append(out)
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    value, hit = await served.cache.get_or_compute(target.predictor.id, inputs.cache_key(), compute)
    if computed:
        return computed[0], hit, value
    return (orjson.Fragment(value) if fragment else orjson.loads(value)), hit, value


def _after(state: ServingState, served: Served, copies: list[Target], target: Target,
           inputs: Inputs | None, predictions: Any, request_id: str, start: float,
           lazy: Callable[[], Inputs] | None = None) -> None:
    """Log the answer and send copies to shadow routes; never delays or fails the answer."""
    now_ms = time.time() * 1000
    latency = (time.perf_counter() - start) * 1000
    if served.log is not None:
        version = target.predictor.version
        served.log.record(LogEntry(request_id, now_ms, served.runtime.name, target.route.name,
                                   version.name, version.version, target.route.mode,  # type: ignore[arg-type]
                                   latency, 200, inputs, predictions, decode=lazy))
    if inputs is None:
        return  # a cached answer: no copies were due (they need the decoded rows)
    for shadow in copies:
        if len(served.shadows) >= _SHADOW_LIMIT:
            version = shadow.predictor.version
            state.metrics.observe_shadow(served.runtime.name, version.name, str(version.version), "skipped")
            continue
        task = asyncio.get_running_loop().create_task(_shadow(state, served, shadow, inputs, request_id))
        served.shadows.add(task)
        task.add_done_callback(served.shadows.discard)


async def _shadow(state: ServingState, served: Served, target: Target, inputs: Inputs,
                  request_id: str) -> None:
    version = target.predictor.version
    start = time.perf_counter()
    target.predictor.inflight += 1
    try:
        out = await target.batcher.submit(inputs)
        outcome, status, error = "ok", 200, None
    except Exception as exc:  # noqa: BLE001 - a shadow's failure is logged, never returned
        out, outcome, status, error = None, "error", status_of(exc), str(exc)[:500]
    finally:
        target.predictor.inflight -= 1
    state.metrics.observe_shadow(served.runtime.name, version.name, str(version.version), outcome)
    if served.log is not None:
        served.log.record(LogEntry(request_id, time.time() * 1000, served.runtime.name,
                                   target.route.name, version.name, version.version, "shadow",
                                   (time.perf_counter() - start) * 1000, status, inputs, out, error))


# ---------------------------------------------------------------- protocol endpoints
def _encode_predict(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    version = target.predictor.version
    return protocols.encode_predict(predictions, model=version.name, version=version.version,
                                    request_id=request_id)


def _encode_invocations(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    return protocols.encode_invocations(predictions)


def _encode_v2(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    version = target.predictor.version
    return protocols.encode_v2(predictions, model=version.name, version=version.version,
                               request_id=decoded.id or request_id)


async def predict(request: Request) -> Response:
    """`POST /predict`: JSON records in, predictions out."""
    return await _answer(request, _served(request), "predict", protocols.decode_predict, _encode_predict)


async def invocations(request: Request) -> Response:
    """`POST /invocations`: MLflow's scoring protocol."""
    return await _answer(request, _served(request), "mlflow", protocols.decode_invocations,
                         _encode_invocations)


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
    return await _answer(request, _served(request), "v2",
                         lambda body, kind, spec: protocols.decode_v2(body, kind, spec, header_length=binary),
                         _encode_v2, pin=_pinned(request))


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
               metrics: ServingMetrics | None = None, log_repos: DataRepos | None = None) -> Starlette:
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
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
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

    app = Starlette(routes=_routes(), lifespan=lifespan)

    def accepted(scope: Any) -> frozenset[str] | None:
        state: ServingState = scope["app"].state.serving
        return state.tokens if state.require_auth else None

    app.add_middleware(BearerAuth, accepted=accepted, open_paths=OPEN_PATHS,
                       deny=lambda path: error_response(401, DENIED, headers={"WWW-Authenticate": "Bearer"}))
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
