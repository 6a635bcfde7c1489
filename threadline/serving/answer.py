"""The shared path of every prediction request: a `Call` (the body and the few headers that
matter) in, a `Reply` (status, raw headers, bytes) out.

Both ways into the app use it: the Starlette routes (`app`) and the lean entry for the hot
routes (`hotpath`), so a request gets the same answer, headers and errors whichever way it
came. It does admission control, rate limits, routing (A/B, canary, shadow copies), the
result cache, the model call with its deadline, the prediction log and the metrics.

Why it is written for speed: one worker answers tens of thousands of requests a second, so
every microsecond here is a share of the server's throughput. Headers are built as the raw
byte pairs ASGI sends, the deadline timer is armed only around work that can wait (a queued
or batched model call, a cache computation, a body still arriving), and a model cheap enough
to answer inline is called without any hand-off.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import orjson

from threadline.errors import ThreadlineError, http_status
from threadline.registry.signature import SignatureError
from threadline.serving import protocols
from threadline.serving.admission import Refused
from threadline.serving.auth import token_hash
from threadline.serving.cache import ResultCache
from threadline.serving.predlog import LogEntry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from threadline.registry.registry import ModelRegistry
    from threadline.serving.cache import RedisCache
    from threadline.serving.deployments import Deployments
    from threadline.serving.inputs import Inputs
    from threadline.serving.metrics import ServingMetrics
    from threadline.serving.predlog import PredictionLog
    from threadline.serving.router import Target
    from threadline.serving.runtime import DeploymentRuntime

__all__ = ["INVOCATIONS", "PREDICT", "Call", "DeadlineExceeded", "Protocol", "Reply", "Served",
           "ServingState", "answer", "error_reply", "json_reply", "status_of"]

log = logging.getLogger(__name__)
#: request ids: unique per process (random prefix) and cheap (a counter), not a uuid4 per call
_ID_PREFIX = secrets.token_hex(5)
_ids = itertools.count()
_SHADOW_LIMIT = 64
_JSON_TYPE = (b"content-type", b"application/json")
_HIT, _MISS = (b"x-cache", b"hit"), (b"x-cache", b"miss")

#: raw ASGI response headers: lower-case names and values as bytes
RawHeaders = list[tuple[bytes, bytes]]


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


class Reply(NamedTuple):
    """A response as ASGI sends it: status, raw headers (content type and length included), body."""

    status: int
    headers: RawHeaders
    body: bytes


def json_reply(body: bytes, status: int = 200, headers: RawHeaders | None = None) -> Reply:
    """A JSON reply; `headers` first, then content length and type (Starlette's order)."""
    raw = headers if headers is not None else []
    raw.append((b"content-length", str(len(body)).encode()))
    raw.append(_JSON_TYPE)
    return Reply(status, raw, body)


def error_reply(status: int, message: str, *, field_name: str | None = None,
                headers: dict[str, str] | None = None) -> Reply:
    """`{"error": {"code", "message"[, "field"]}}` with `status`."""
    error: dict[str, Any] = {"code": status, "message": message}
    if field_name is not None:
        error["field"] = field_name
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return json_reply(orjson.dumps({"error": error}), status, raw)


@dataclass(frozen=True, slots=True)
class Protocol:
    """How one prediction protocol decodes a body and encodes its answer.

    Attributes:
        name: its label in metrics ("predict", "mlflow", "v2").
        decode: (body, content type, input spec) -> checked `Inputs` (or an object with them
            as `.inputs`), raising the protocol's 400/415/422 errors.
        encode: (predictions, target, request id, decoded) -> the response body.
        cacheable: whether a whole answer may be stored and replayed for the same body (not
            V2: its answers echo the request's id).
    """

    name: str
    decode: Callable[[bytes, str, protocols.InputSpec], Any]
    encode: Callable[[Any, Target, str, Any], bytes]
    cacheable: bool = True


def _encode_predict(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    version = target.predictor.version
    return protocols.encode_predict(predictions, model=version.name, version=version.version,
                                    request_id=request_id)


def _encode_invocations(predictions: Any, target: Target, request_id: str, decoded: Any) -> bytes:
    return protocols.encode_invocations(predictions)


PREDICT = Protocol("predict", protocols.decode_predict, _encode_predict)
INVOCATIONS = Protocol("mlflow", protocols.decode_invocations, _encode_invocations)


@dataclass(slots=True)
class Call:
    """What the answer needs of one request, however it arrived.

    Attributes:
        body: the request body; None when `read` must fetch it (under the deadline).
        content_type: the Content-Type header ("" when absent).
        request_id: the caller's `x-request-id` (None or "": one is made up).
        sticky: the value of the deployment's sticky header (canary placement), if sent.
        authorization: the Authorization header (rate limits count per token), if sent.
        client_host: the caller's address (rate limits without a token).
        read: reads the body, refusing it (413) past the given number of bytes.
        pin: picks the target itself (V2's `/versions/N`) instead of the route table's draw.
    """

    body: bytes | None
    content_type: str
    request_id: str | None
    sticky: str | None
    authorization: str | None
    client_host: str
    read: Callable[[int], Awaitable[bytes]] | None = None
    pin: Callable[[list[Target]], Target] | None = None


async def answer(state: ServingState, served: Served, protocol: Protocol, call: Call) -> Reply:
    """The reply to one prediction request for `served` in `protocol`."""
    runtime = served.runtime
    settings, admission = runtime.settings, runtime.admission
    name = runtime.name
    metrics = state.metrics
    start = time.perf_counter()
    if runtime.table is None or settings is None or admission is None:
        return error_reply(503, f"deployment {name!r} is not ready: "
                           f"{runtime.last_error or 'loading'}", headers={"Retry-After": "1"})
    request_id = call.request_id or f"{_ID_PREFIX}{next(_ids):012x}"
    limiter = runtime.limiter
    if limiter is not None:
        client = ("t:" + token_hash(call.authorization) if call.authorization
                  else "a:" + call.client_host)
        wait = limiter.retry_after(client)
        if wait is not None:
            metrics.observe_rejection(name, "429")
            return error_reply(429, f"rate limit of {limiter.rate:g} requests/s for this client "
                               "reached; retry later", headers={"Retry-After": str(math.ceil(wait))})
    try:
        await admission.enter()
    except Refused as refused:
        metrics.observe_rejection(name, "503")
        return error_reply(503, f"server {refused.reason}; retry later",
                           headers={"Retry-After": str(refused.retry_after)})
    deadline = settings.deadline_ms / 1000
    target: Target | None = None
    inputs: Inputs | None = None
    status = 200
    try:
        metrics.request_started(name)
        body = call.body
        if body is None:
            assert call.read is not None
            async with asyncio.timeout(deadline):
                body = await call.read(settings.max_body)
        # the table is read after the last await before the version is pinned (inflight),
        # so a swap meanwhile cannot unload the version this request is given
        table = runtime.table
        if table is None:
            raise Refused("draining", retry_after=2)
        target = call.pin(table.serving) if call.pin else table.choose(call.sticky)
        predictor = target.predictor
        predictor.inflight += 1
        lazy: Callable[[], Inputs] | None = None
        try:
            kind = call.content_type
            decode = protocol.decode
            copies = table.copies() if table.shadows else []
            # the same bytes asked of the same version again: answered before any decoding
            # (in-process cache only; V2 answers echo the request's id, so they are rebuilt)
            local = served.cache if isinstance(served.cache, ResultCache) else None
            raw = (protocol.name.encode() + kind.encode() + b"\0" + body
                   if local is not None and protocol.cacheable and not copies else None)
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
                predictions, hit, payload = await _predict(
                    served, target, inputs, deadline - (time.perf_counter() - start),
                    fragment=protocol.cacheable)
                if local is not None and raw is not None:
                    local.put(predictor.id, raw, payload)
        finally:
            predictor.inflight -= 1
        version = predictor.version
        if served.cache is not None:
            metrics.observe_cache(name, version.name, str(version.version), hit)
        if served.log is not None or copies:
            logged = orjson.loads(payload) if isinstance(predictions, orjson.Fragment) and payload \
                else predictions
            _after(state, served, copies, target, inputs, logged, request_id, start, lazy)
        headers = [(b"x-model-version", predictor.id.encode("latin-1")),
                   (b"x-route", target.route.name.encode("latin-1")),
                   (b"x-request-id", request_id.encode("latin-1")), _HIT if hit else _MISS]
        return json_reply(protocol.encode(predictions, target, request_id, decoded), 200, headers)
    except Refused as refused:
        status = 503
        return error_reply(503, f"server {refused.reason}; retry later",
                           headers={"Retry-After": str(refused.retry_after)})
    except TimeoutError:
        status = 504
        metrics.observe_rejection(name, "504")
        return error_reply(504, f"no answer within the deadline of {settings.deadline_ms:g} ms")
    except Exception as exc:
        status = status_of(exc)
        if status >= 500:
            log.exception("deployment %s: request %s failed", name, request_id)
        return error_reply(status, str(exc) or type(exc).__name__,
                           field_name=getattr(exc, "field", None))
    finally:
        admission.leave()
        metrics.request_finished(name)
        if target is not None:
            version = target.predictor.version
            metrics.observe_request(name, target.route.name, version.name, str(version.version),
                                    protocol.name, status, time.perf_counter() - start)
            if status != 200:
                metrics.observe_error(name, target.route.name, version.name,
                                      str(version.version), str(status))


async def _predict(served: Served, target: Target, inputs: Inputs, remaining: float, *,
                   fragment: bool = True) -> tuple[Any, bool, bytes]:
    """The predictions for `inputs` from `target` (through the cache when there is one), whether
    the cache answered, and their JSON bytes (b"" without a cache). A cached answer comes back
    as an `orjson.Fragment` (written into the response as is) when `fragment`.

    Waiting (a queue, a batch, another request's computation, Redis) is bounded by the
    `remaining` seconds of the deadline (TimeoutError past it); a cheap idle model answers at
    once, with no timer: nothing can wait there, so the deadline cannot pass.
    """
    cache, batcher = served.cache, target.batcher
    if cache is None:
        now = batcher.answer_now(inputs)
        if now is not None:
            return now, False, b""
        async with asyncio.timeout(remaining):
            return await batcher.submit(inputs), False, b""
    computed: list[Any] = []

    def compute_now() -> bytes | None:
        out = batcher.answer_now(inputs)
        if out is None:
            return None
        computed.append(out)
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    async def compute() -> bytes:
        out = await batcher.submit(inputs)
        computed.append(out)
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    version_id, key = target.predictor.id, inputs.cache_key()
    found = cache.get_or_compute_now(version_id, key, compute_now) \
        if isinstance(cache, ResultCache) else None
    if found is not None:
        value, hit = found
    else:
        async with asyncio.timeout(remaining):
            value, hit = await cache.get_or_compute(version_id, key, compute)
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
