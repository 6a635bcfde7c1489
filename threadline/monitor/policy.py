"""Monitoring policies: what to check on a deployment, what counts as trouble, what to do.

    window: {rows: 5000}          # or {minutes: 15}; default: everything since the last pass
    metric: accuracy              # realised from feedback (accuracy | error_rate | mae | rmse)
    min_accuracy: 0.8             # floor for realised and estimated accuracy
    estimate: true                # label-free accuracy estimate from the model's probabilities
    key_columns: [monthly_spend]  # drift on these is trouble (default: any column)
    drift: {alpha: 0.05, min_effect: 0.1}
    alerts: [{name: drift, metric: drift.share, op: above, threshold: 0.2}]
    webhooks: {ops: {url: "https://hooks.example/tl", allow: []}}
    on_drift: [fallback, retrain]
    on_breach: [fallback, retrain]
    fallback: {alias: fallback}
    retrain: {module: churn_pipeline, pipeline: retrain, stage: shadow, canary_percent: 10}
    canary: {min_requests: 200, max_error_rate: 0.02, max_latency_ratio: 3.0,
             max_accuracy_drop: 0.02, promote_after: 2, approve: false}
    executor: local                 # summarise windows of parallel_rows or more on the executors
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

ACTIONS = ("fallback", "retrain")
_KEYS = {"window", "metric", "min_accuracy", "estimate", "key_columns", "drift", "alerts",
         "webhooks", "on_drift", "on_breach", "fallback", "retrain", "canary", "trusted",
         "interval_s", "executor", "parallel_rows"}


@dataclass(frozen=True)
class CanaryGuard:
    """When a canary is promoted or rolled back, from its live metrics against the primary's."""

    min_requests: int = 200
    max_error_rate: float = 0.02
    max_latency_ratio: float = 3.0
    max_accuracy_drop: float = 0.02
    promote_after: int = 2
    approve: bool = False


@dataclass(frozen=True)
class Policy:
    """A deployment's monitoring policy, parsed and checked."""

    window_rows: int | None = None
    window_minutes: float | None = None
    metric: str = "accuracy"
    min_accuracy: float | None = None
    estimate: bool = True
    key_columns: tuple[str, ...] = ()
    drift_options: dict[str, Any] = field(default_factory=dict)
    alerts: tuple[dict[str, Any], ...] = ()
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_drift: tuple[str, ...] = ()
    on_breach: tuple[str, ...] = ()
    fallback_alias: str = "fallback"
    retrain: dict[str, Any] = field(default_factory=dict)
    canary: CanaryGuard = field(default_factory=CanaryGuard)
    trusted: tuple[str, ...] = ()
    interval_s: float = 60.0
    #: where windows of `parallel_rows` rows or more are summarised: None (here), local, ray
    executor: str | None = None
    parallel_rows: int = 500_000

    @property
    def incremental(self) -> bool:
        """Whether each pass starts where the previous one ended."""
        return self.window_rows is None and self.window_minutes is None


def _actions(raw: Any, key: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    for item in items:
        if item not in ACTIONS:
            raise InvalidArgument(f"{key}: unknown action {item!r}; the actions are {', '.join(ACTIONS)}")
    return tuple(items)


def _number(raw: Mapping[str, Any], key: str, default: float, low: float, high: float | None = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low or (
            high is not None and value > high):
        top = f" and at most {high:g}" if high is not None else ""
        raise InvalidArgument(f"policy {key} must be a number of at least {low:g}{top}, not {value!r}")
    return float(value)


def parse_policy(raw: Mapping[str, Any] | None) -> Policy:
    """A policy from its YAML/JSON form; unknown keys and bad values are refused by name."""
    raw = dict(raw or {})
    unknown = set(raw) - _KEYS
    if unknown:
        raise InvalidArgument(f"unknown policy key {sorted(unknown)[0]!r}; the keys are "
                              f"{', '.join(sorted(_KEYS))}")
    window = raw.get("window") or {}
    if not isinstance(window, dict) or set(window) - {"rows", "minutes"} or len(window) > 1:
        raise InvalidArgument("policy window must be {rows: N} or {minutes: M} (or left out)")
    metric = raw.get("metric", "accuracy")
    if metric not in ("accuracy", "error_rate", "mae", "rmse"):
        raise InvalidArgument(f"policy metric must be accuracy, error_rate, mae or rmse, not {metric!r}")
    drift = raw.get("drift") or {}
    if not isinstance(drift, dict):
        raise InvalidArgument("policy drift must be a mapping (alpha, min_effect, correction)")
    canary = raw.get("canary") or {}
    guard = CanaryGuard(
        min_requests=int(_number(canary, "min_requests", 200, 1)),
        max_error_rate=_number(canary, "max_error_rate", 0.02, 0, 1),
        max_latency_ratio=_number(canary, "max_latency_ratio", 3.0, 1),
        max_accuracy_drop=_number(canary, "max_accuracy_drop", 0.02, 0, 1),
        promote_after=int(_number(canary, "promote_after", 2, 1)),
        approve=bool(canary.get("approve", False)))
    fallback = raw.get("fallback") or {}
    retrain = raw.get("retrain") or {}
    if retrain and not isinstance(retrain.get("module"), str):
        raise InvalidArgument("policy retrain needs module: (a Python module defining the "
                              "retraining Pipeline) and optionally pipeline: NAME")
    if retrain.get("stage", "canary") not in ("shadow", "canary"):
        raise InvalidArgument(f"policy retrain stage must be shadow or canary, not {retrain['stage']!r}")
    return Policy(
        window_rows=int(window["rows"]) if "rows" in window else None,
        window_minutes=float(window["minutes"]) if "minutes" in window else None,
        metric=metric,
        min_accuracy=(_number(raw, "min_accuracy", 0, 0, 1e12) if "min_accuracy" in raw else None),
        estimate=bool(raw.get("estimate", True)),
        key_columns=tuple(raw.get("key_columns") or ()),
        drift_options=dict(drift),
        alerts=tuple(raw.get("alerts") or ()),
        webhooks=dict(raw.get("webhooks") or {}),
        on_drift=_actions(raw.get("on_drift"), "on_drift"),
        on_breach=_actions(raw.get("on_breach"), "on_breach"),
        fallback_alias=str(fallback.get("alias", "fallback")),
        retrain=dict(retrain),
        canary=guard,
        trusted=tuple(raw.get("trusted") or ()),
        interval_s=_number(raw, "interval_s", 60.0, 0.1),
        executor=_executor(raw.get("executor")),
        parallel_rows=int(_number(raw, "parallel_rows", 500_000, 1)),
    )


def _executor(value: Any) -> str | None:
    if value not in (None, "local", "ray"):
        raise InvalidArgument(f"policy executor must be local or ray (or left out), not {value!r}")
    return str(value) if value is not None else None
