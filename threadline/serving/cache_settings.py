"""A deployment's result-cache settings (`cache:` in the deployment file) and their checks.

The checks are shared with the cache constructors, so a bad value is refused with the same
message whether it comes from a deployment file or from code; `redact_url` keeps a Redis
password out of every message and log line.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["REDIS_SCHEMES", "CacheSettings", "check_positive", "check_redis_url", "redact_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How a deployment caches results; `from_dict` parses the deployment file's `cache:`."""

    enabled: bool = True
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    ttl_s: float | None = 300.0
    redis_url: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CacheSettings:
        """Validated settings; unknown keys and wrong types raise `InvalidArgument`."""
        allowed = [f.name for f in fields(cls)]
        for name in d:
            if name not in allowed:
                raise InvalidArgument(f"unknown cache setting {name!r}; allowed: {', '.join(allowed)}")
        kwargs: dict[str, Any] = dict(d)
        if "enabled" in d and not isinstance(d["enabled"], bool):
            raise InvalidArgument(f"cache setting 'enabled' must be true or false, not {d['enabled']!r}")
        for name in ("max_entries", "max_bytes"):
            if name in d:
                check_positive(name, d[name], integer=True)
        if d.get("ttl_s") is not None:
            check_positive("ttl_s", d["ttl_s"], integer=False)
            kwargs["ttl_s"] = float(d["ttl_s"])
        if d.get("redis_url") is not None:
            check_redis_url(d["redis_url"])
        return cls(**kwargs)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_positive(name: str, value: object, *, integer: bool) -> None:
    """Refuse a setting that is not a positive integer (or, with `integer=False`, number)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        what = "a positive integer" if integer else "a positive number of seconds"
        raise InvalidArgument(f"cache setting {name!r} must be {what}, not {value!r}")


def check_redis_url(url: object) -> None:
    """Refuse a Redis URL of another scheme; the message shows it with its password redacted."""
    if not isinstance(url, str) or urlsplit(url).scheme not in REDIS_SCHEMES:
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise InvalidArgument(f"cache setting 'redis_url' must be a redis://, rediss:// or unix:// "
                              f"URL, not {shown!r}")
