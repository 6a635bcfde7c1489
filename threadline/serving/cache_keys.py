"""Result-cache keys: one 16-byte BLAKE3 digest per (model version, canonical input bytes).

A prediction is a pure function of the version that answered it and the request's rows, so the
key holds both: when an alias moves from "churn/3" to "churn/4", requests through the alias look
up "churn/4" keys and never see an answer "churn/3" gave. Only the digest is kept, so neither
memory nor Redis ever holds a raw input. Both cache backends key by it, so it sits below them.
"""

from __future__ import annotations

from blake3 import blake3

__all__ = ["DIGEST_BYTES", "cache_digest"]

DIGEST_BYTES = 16


def cache_digest(version_id: str, input_key: bytes) -> bytes:
    """The 16-byte key of one (version, input) pair.

    The version is length-prefixed so no (version, input) pair can collide with another by
    moving bytes across the boundary ("a/1" + "2..." vs "a/12" + "...").
    """
    version = version_id.encode()
    hasher = blake3(len(version).to_bytes(4, "big"))
    hasher.update(version)
    hasher.update(input_key)
    return hasher.digest(length=DIGEST_BYTES)
