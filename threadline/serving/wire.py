"""What every serving protocol shares at the byte level: media types, the 415 refusal, JSON in and out.

The content-type check lives here, once, so that every route refuses a pickled body the same way
before a byte of it is read: unpickling runs code chosen by whoever sent the request, and no
serving module imports pickle. JSON is parsed and written by orjson.
"""

from __future__ import annotations

import base64
from typing import Any, NoReturn

import numpy as np
import orjson

from threadline.errors import InvalidArgument, ThreadlineError

__all__ = ["CSV", "JSON", "PICKLE_TYPES", "STATUS", "UnsupportedMediaType", "dump_json", "load_json",
           "media_type", "no_rows"]

JSON = "application/json"
CSV = "text/csv"
#: refused on every route, with a message that says why: unpickling a body runs its sender's code
PICKLE_TYPES = frozenset({"application/python-pickle", "application/x-python-pickle",
                          "application/x-pickle", "application/pickle"})


class UnsupportedMediaType(ThreadlineError):
    """A request body has a content type the route does not accept (HTTP 415).

    Attributes:
        content_type: the media type that was refused ("" when the request named none).
    """

    exit_code = 2

    def __init__(self, message: str, *, content_type: str) -> None:
        super().__init__(message)
        self.content_type = content_type


#: statuses of the errors this module adds to `threadline.errors.HTTP_STATUS`
class PayloadTooLarge(ThreadlineError):
    """A request body is larger than the server accepts (HTTP 413)."""

    exit_code = 2


STATUS: dict[type[ThreadlineError], int] = {UnsupportedMediaType: 415, PayloadTooLarge: 413}


async def read_body(request: Any, limit: int) -> bytes:
    """The whole body of a Starlette request, refused (413) as soon as it passes `limit` bytes
    (by its declared length, or while it streams in), never buffered whole first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

# --- decoding -------------------------------------------------------------------------------


def media_type(content_type: str, accepted: tuple[str, ...], route: str,
               *, default: str | None = None) -> str:
    """The lower-case media type of `content_type`, or UnsupportedMediaType naming what to send."""
    if content_type == accepted[0]:  # the common case, exactly as clients send it
        return content_type
    mime, _, parameters = content_type.partition(";")
    mime = mime.strip().lower()
    send = " or ".join(accepted)
    if mime in PICKLE_TYPES or "pickle" in mime:
        raise UnsupportedMediaType(f"{route} never accepts pickled bodies ({mime}): unpickling runs "
                                   f"code chosen by the sender. Send {send} instead",
                                   content_type=mime)
    if not mime and default is not None:
        mime = default
    if mime not in accepted:
        raise UnsupportedMediaType(f"{route} does not accept Content-Type {mime or '(none)'!r}; "
                                   f"send {send}", content_type=mime)
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key != "charset":
            raise UnsupportedMediaType(f"unrecognized content type parameter {key!r} in "
                                       f"{content_type!r}; only charset=utf-8 is accepted",
                                       content_type=mime)
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"{route} only reads UTF-8; got charset {value.strip()!r}. "
                                       "Encode the body as UTF-8", content_type=mime)
    return mime


def load_json(body: bytes, route: str, expected: str) -> Any:
    """The parsed JSON `body`; InvalidArgument naming `route` and the `expected` shapes if it is
    empty or not JSON."""
    if not body.strip():
        raise InvalidArgument(f"{route}: the request body is empty; {expected}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{route}: the body is not valid JSON ({exc}); {expected}") from exc


def no_rows(where: str) -> NoReturn:
    """Refuse a request without rows (InvalidArgument, HTTP 400)."""
    raise InvalidArgument(f"{where} has no rows; send at least one")


# --- encoding -------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    """What orjson cannot write itself: odd NumPy arrays and scalars, bytes, dates."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, np.datetime64):
        return str(value)
    tolist = getattr(value, "tolist", None)  # arrays orjson skips (strings, objects), scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def dump_json(document: dict[str, Any]) -> bytes:
    """A response `document` as JSON bytes; NumPy arrays are written directly, bytes as text."""
    try:
        return orjson.dumps(document, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise ThreadlineError(f"the model returned predictions that cannot be written as JSON "
                              f"({exc}); return numbers, strings, or arrays of them") from exc
