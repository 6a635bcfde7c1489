"""Cache keys: what a step's output depends on, hashed, and why two keys differ.

A step's key is the hash of four parts: its inputs' content (the manifest key of each input
commit's tree, or of the folder the ref names - content, not commit ids, so an upstream step
that re-commits identical data does not invalidate what follows), its code hash
(`codehash.py`), its parameters (canonical JSON) and the environment fingerprint
(`envhash.py`). For a datum-split input the content part is the hash of every datum's key.
The *base key* leaves that datum content out: an earlier run with the same base key can lend
the outputs of its unchanged datums.

The cache itself (key -> output commit) is a table in `runs.py`, written only after the
output commit exists, so a hit always names a real commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import blake3


def digest(value: Any) -> str:
    """BLAKE3 of canonical JSON."""
    return blake3.blake3(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class KeyParts:
    """Everything a step's output depends on.

    Attributes:
        inputs: input name -> content hash.
        commits: input name -> the commit id it resolved to (shown, not hashed).
        code: the code hash.
        params: the parameter values.
        env: the environment fingerprint.
        datum_input: the name of the datum-split input, if any (its content leaves the base key).
    """

    inputs: dict[str, str]
    commits: dict[str, str]
    code: str
    params: dict[str, Any]
    env: str
    datum_input: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """The cache key."""
        return digest({"base": self.base_key(), "datums": self.inputs.get(self.datum_input or "")})

    def base_key(self) -> str:
        """The key without the datum input's content."""
        inputs = {k: v for k, v in self.inputs.items() if k != self.datum_input}
        return digest({"inputs": inputs, "code": self.code, "params": self.params, "env": self.env,
                       "datum_input": self.datum_input, "extra": self.extra})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with each step run)."""
        return {"inputs": self.inputs, "commits": self.commits, "code": self.code,
                "params": self.params, "env": self.env, "datum_input": self.datum_input,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> KeyParts:
        """Inverse of `to_dict`."""
        return cls(dict(doc.get("inputs", {})), dict(doc.get("commits", {})), str(doc.get("code", "")),
                   dict(doc.get("params", {})), str(doc.get("env", "")), doc.get("datum_input"),
                   dict(doc.get("extra", {})))


def explain(old: KeyParts | None, new: KeyParts) -> list[str]:
    """Why `new` misses the cache entry made with `old`, part by part ([] when they match)."""
    if old is None:
        return ["never run with these inputs and parameters"]
    reasons: list[str] = []
    for name in sorted(set(old.inputs) | set(new.inputs)):
        if old.inputs.get(name) != new.inputs.get(name):
            before = old.commits.get(name, "none")[:8]
            after = new.commits.get(name, "none")[:8]
            reasons.append(f"input {name} changed ({before} → {after})")
    for name in sorted(set(old.params) | set(new.params)):
        if old.params.get(name) != new.params.get(name):
            reasons.append(f"param {name} changed ({old.params.get(name)!r} → {new.params.get(name)!r})")
    if old.code != new.code:
        reasons.append("code changed")
    if old.env != new.env:
        reasons.append("environment changed")
    if old.extra != new.extra or old.datum_input != new.datum_input:
        reasons.append("step definition changed")
    return reasons
