"""The environment part of a step's cache key: interpreter, platform and installed packages.

Reuses the tracking layer's `environment()` (Python version and implementation, platform,
a hash of every installed `name==version`, the threadline version), leaving out the
interpreter's path: two virtual environments with the same packages give the same
fingerprint, and upgrading any package changes it. Computed once per process.
"""

from __future__ import annotations

import functools
import json

import blake3

from threadline.tracking.source import environment

_KEYS = ("python", "implementation", "platform", "packages_hash", "threadline")


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """The environment fingerprint (a BLAKE3 hex digest)."""
    env = environment()
    picked = {key: env.get(key) for key in _KEYS}
    return blake3.blake3(json.dumps(picked, sort_keys=True).encode()).hexdigest()
