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
from typing import TYPE_CHECKING

import blake3
from sqlalchemy import select, update

from threadline.data.paths import check_name
from threadline.errors import AlreadyExists, NotFound
from threadline.meta.models import ApiTokenRow

if TYPE_CHECKING:
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
