"""Bearer tokens for Threadline's servers, stored as BLAKE3 hashes only.

A token is shown once, when created; the database keeps its hash, so a leaked database gives
no usable token. Servers bound to anything but loopback refuse to start without an active
token, and then require `Authorization: Bearer <token>` on every route except health,
readiness and metrics.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blake3
from sqlalchemy import select, update

from threadline.data.paths import check_name
from threadline.errors import AlreadyExists, NotFound
from threadline.meta.models import ApiTokenRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.meta.db import Database

PREFIX = "tl_"


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return blake3.blake3(token.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


@dataclass(frozen=True)
class TokenInfo:
    """A token's record (never the token itself)."""

    name: str
    created_by: str
    created_at: int
    revoked: bool


class Tokens:
    """The API tokens of one Threadline home."""

    def __init__(self, db: Database, author: str = "") -> None:
        self.db = db
        self.author = author

    def create(self, name: str) -> str:
        """A new token named `name`; the returned value is not stored and cannot be shown again."""
        check_name(name, "token name")
        token = PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as session, session.begin():
            if session.scalar(select(ApiTokenRow.id).where(ApiTokenRow.name == name)) is not None:
                raise AlreadyExists(f"a token is named {name!r} already; revoke it with "
                                    f"`threadline token revoke {name}` or pick another name")
            session.add(ApiTokenRow(name=name, token_hash=token_hash(token), created_by=self.author,
                                    created_at=int(time.time() * 1000), revoked_at=None))
        return token

    def revoke(self, name: str) -> None:
        """Stop accepting token `name` (servers notice on their next refresh)."""
        with self.db.session() as session, session.begin():
            done = session.execute(update(ApiTokenRow).where(ApiTokenRow.name == name,
                                                             ApiTokenRow.revoked_at.is_(None))
                                   .values(revoked_at=int(time.time() * 1000))).rowcount  # type: ignore[attr-defined]
        if not done:
            raise NotFound(f"no active token is named {name!r}; `threadline token list` shows them")

    def list(self) -> list[TokenInfo]:
        """Every token's record, by name."""
        with self.db.session() as session:
            rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name)).all()
            return [TokenInfo(r.name, r.created_by, r.created_at, r.revoked_at is not None) for r in rows]

    def active_hashes(self) -> frozenset[str]:
        """Hashes of the tokens servers accept now."""
        with self.db.session() as session:
            return frozenset(session.scalars(select(ApiTokenRow.token_hash)
                                             .where(ApiTokenRow.revoked_at.is_(None))).all())


def check_bearer(header: str | None, accepted: frozenset[str]) -> bool:
    """Whether an `Authorization` header carries an accepted token (constant-time compare)."""
    if not header or not header.startswith("Bearer "):
        return False
    digest = token_hash(header[7:].strip())
    return any(hmac.compare_digest(digest, known) for known in accepted)


class TokenCache:
    """The accepted token hashes of a database, re-read at most every `ttl_s` seconds, so a
    server checks a request with no query and notices a revocation within `ttl_s`."""

    def __init__(self, tokens: Tokens, ttl_s: float = 1.0) -> None:
        self.tokens = tokens
        self.ttl_s = ttl_s
        self._hashes: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def accepted(self) -> frozenset[str]:
        """The hashes accepted now."""
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._hashes = self.tokens.active_hashes()
            self._read_at = now
        return self._hashes


class BearerAuth:
    """ASGI middleware: every HTTP request outside `open_paths` must carry an accepted token.

    Args:
        app: the wrapped app.
        accepted: the accepted token hashes for a request's scope (None: auth is off).
        deny: the 401 response for a request's path.
        open_paths: paths served without a token (health, readiness, metrics).
    """

    def __init__(self, app: Any, accepted: Callable[[Any], frozenset[str] | None],
                 deny: Callable[[str], Any], open_paths: frozenset[str]) -> None:
        self.app = app
        self.accepted = accepted
        self.deny = deny
        self.open_paths = open_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            accepted = self.accepted(scope)
            if accepted is not None:
                header = next((v.decode("latin-1") for k, v in scope["headers"]
                               if k == b"authorization"), None)
                if not check_bearer(header, accepted):
                    await self.deny(scope["path"])(scope, receive, send)
                    return
        await self.app(scope, receive, send)


#: the 401 message both servers give
DENIED = ("missing or unknown bearer token; send 'Authorization: Bearer <token>' "
          "(create one with `threadline token create NAME`)")
