"""`ServingApp`: the serving app's Starlette, with a lean entry for the hot routes in front.

`POST /predict` and `POST /invocations` (and their `/deployments/NAME/...` forms) with a JSON
body go straight from ASGI to the shared answer path (`answer`): the headers that matter are
picked out of the raw header list in one pass, the body is taken from `receive()`, and the
reply's prebuilt status, raw headers and bytes leave in two `send` calls. Starlette's request,
routing, middleware and response objects are skipped: for a cached answer they were most of
the app's time per request (the benchmark in `benchmarks/serving_vs_mlflow.py` measures it).

Anything unusual goes through Starlette exactly as before, with whatever body was already
read handed back to it: another content type or charset, no or too large a Content-Length,
a body in several chunks, a deployment not loaded yet, a missing or unknown bearer token when
auth is on (Starlette's middleware gives the 401), a mounted app (`root_path`). Since both ways
answer through the same function, a request gets the same status, headers and bytes from
either (the tests compare them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from threadline.serving.answer import INVOCATIONS, PREDICT, Call, answer
from threadline.serving.auth import check_bearer
from threadline.serving.wire import JSON

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from threadline.serving.answer import Protocol, Served, ServingState

__all__ = ["ServingApp"]

_JSON = JSON.encode()


class _Replay:
    """`receive` for Starlette after the lean entry took the first message: that one again,
    then the rest from the server."""

    __slots__ = ("first", "receive")

    def __init__(self, first: Message, receive: Receive) -> None:
        self.first: Message | None = first
        self.receive = receive

    async def __call__(self) -> Message:
        first = self.first
        if first is not None:
            self.first = None
            return first
        return await self.receive()


class ServingApp(Starlette):
    """The serving app (`app.create_app` builds it): Starlette plus the lean entry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._serving: ServingState | None = None
        self._hot: dict[str, tuple[Served, Protocol]] = {}

    def attach(self, state: ServingState) -> None:
        """Answer the hot routes of `state`'s deployments through the lean entry (at start)."""
        default = state.served[state.default]
        hot = {"/predict": (default, PREDICT), "/invocations": (default, INVOCATIONS)}
        for name, served in state.served.items():
            hot[f"/deployments/{name}/predict"] = (served, PREDICT)
            hot[f"/deployments/{name}/invocations"] = (served, INVOCATIONS)
        self._serving, self._hot = state, hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._serving
        if state is not None and scope["type"] == "http" and scope["method"] == "POST" \
                and not scope.get("root_path"):
            hot = self._hot.get(scope["path"])
            if hot is not None:
                rest = await self._lean(state, hot[0], hot[1], scope, receive, send)
                if rest is None:
                    return
                receive = rest
        await super().__call__(scope, receive, send)

    async def _lean(self, state: ServingState, served: Served, protocol: Protocol, scope: Scope,
                    receive: Receive, send: Send) -> Receive | None:
        """Answer a hot request; None when answered, else the `receive` Starlette goes on with."""
        settings = served.runtime.settings
        if settings is None:
            return receive
        sticky_key = settings.sticky_header.lower().encode("latin-1")
        kind = length = request_id = sticky = authorization = None
        for key, value in scope["headers"]:  # names come lower-case; the first of each counts
            if key == b"content-type":
                kind = value if kind is None else kind
            elif key == b"content-length":
                length = value if length is None else length
            elif key == b"x-request-id":
                request_id = value if request_id is None else request_id
            elif key == sticky_key:
                sticky = value if sticky is None else sticky
            elif key == b"authorization":
                authorization = value if authorization is None else authorization
        limit = settings.max_body
        if kind != _JSON or length is None or not length.isdigit() or int(length) > limit:
            return receive
        auth = authorization.decode("latin-1") if authorization is not None else None
        if state.require_auth and not check_bearer(auth, state.tokens):
            return receive
        message = await receive()
        body = message.get("body", b"")
        if message["type"] != "http.request" or message.get("more_body", False) or len(body) > limit:
            return _Replay(message, receive)
        client = scope.get("client")
        call = Call(body, JSON, request_id.decode("latin-1") if request_id else None,
                    sticky.decode("latin-1") if sticky is not None else None, auth,
                    client[0] if client else "")
        status, headers, content = await answer(state, served, protocol, call)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        return None
