"""Plain records the tracking layer hands out, and the rules for names and values.

Times are milliseconds since the epoch and run ids are uuid4 hex strings, as in MLflow's API,
so code and habits carry over. Keys follow MLflow's rules (see `check_key`) so that a key
logged here can be exported to, or imported from, MLflow unchanged.
"""

from __future__ import annotations

import math
import numbers
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Any

from threadline.errors import InvalidArgument
from threadline.lineage.graph import Node

RUNNING = "RUNNING"
SCHEDULED = "SCHEDULED"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
STATUSES = (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED)
#: a run in one of these states accepts no more metrics or params
TERMINAL = frozenset({FINISHED, FAILED, KILLED})

ACTIVE = "active"
DELETED = "deleted"
VIEWS = {"active": (ACTIVE,), "deleted": (DELETED,), "all": (ACTIVE, DELETED)}

DEFAULT_EXPERIMENT = "Default"
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_NAME = 200
#: tags under this prefix are written by Threadline itself and refused from users
RESERVED_PREFIX = "threadline."
INPUTS_TAG = "threadline.inputs"

# MLflow's rule: alphanumerics, underscores, dashes, periods, spaces, colons and slashes.
_KEY_RE = re.compile(r"^[\w./\- :]+$")


RUN_KIND = "run"


def run_node(run_id: str) -> Node:
    """The lineage node of a run."""
    return Node(RUN_KIND, run_id)


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def check_key(key: object, what: str = "key") -> str:
    """Return `key` if it is a valid metric, param or tag key, else raise InvalidArgument.

    Keys may hold letters, digits, `_ - . / :` and spaces, at most 250 characters, and must be
    normalised relative paths: no `..`, no leading `/`, no `.` or empty segments (MLflow uses
    keys as file names, and a key that is not its own normal form could name another file).
    """
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{what} must be a non-empty string, not {key!r}")
    if len(key) > MAX_KEY:
        raise InvalidArgument(f"{what} {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY}")
    if not _KEY_RE.match(key):
        raise InvalidArgument(
            f"invalid {what} {key!r}: use letters, digits, spaces and '_', '-', '.', '/', ':'"
        )
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidArgument(
            f"invalid {what} {key!r}: it must be a normalised relative path (no '..', no "
            f"leading '/', no empty or '.' segments)"
        )
    return key


def check_value(key: str, value: object, limit: int, what: str) -> str:
    """Return the string form of a param or tag value, refusing values over `limit` chars."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise InvalidArgument(
            f"{what} {key!r} has a value of {len(text)} characters; the limit is {limit}"
        )
    return text


def check_metric_value(key: str, value: object) -> float:
    """Return a metric value as a float; refuse anything that is not a real number."""
    if isinstance(value, float):  # the common case first: this runs once per logged point
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"metric {key!r} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Experiment:
    """A named group of runs."""

    id: int
    name: str
    lifecycle_stage: str
    tags: dict[str, str]
    created_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id, "name": self.name, "lifecycle_stage": self.lifecycle_stage,
            "tags": dict(self.tags), "created_at": self.created_at, "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class RunInfo:
    """The attributes of a run (everything but what it logged)."""

    id: str
    experiment_id: int
    parent_id: str | None
    name: str
    status: str
    lifecycle_stage: str
    user: str
    start_time: int
    end_time: int | None
    artifact_commit: str | None
    source: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id, "experiment_id": self.experiment_id, "parent_id": self.parent_id,
            "name": self.name, "status": self.status, "lifecycle_stage": self.lifecycle_stage,
            "user": self.user, "start_time": self.start_time, "end_time": self.end_time,
            "artifact_commit": self.artifact_commit, "source": dict(self.source),
        }


@dataclass(frozen=True)
class Metric:
    """One point of a metric series. NaN is a legal value (stored as NULL)."""

    key: str
    value: float
    timestamp: int
    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes null, which strict JSON parsers accept)."""
        return {
            "key": self.key, "value": None if math.isnan(self.value) else self.value,
            "timestamp": self.timestamp, "step": self.step,
        }


@dataclass(frozen=True)
class Run:
    """A run with what it logged: params, the latest point of each metric, tags and inputs."""

    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: data read by the run: [{"repo", "commit", "ref"}]
    inputs: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "info": self.info.to_dict(),
            "params": dict(self.params),
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "tags": dict(self.tags),
            "inputs": [dict(i) for i in self.inputs],
        }
