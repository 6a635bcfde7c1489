"""Promotion policies: declarative gates a version must pass before an alias moves to it.

A policy maps alias names to lists of gates (YAML or a dict):

    production:
      - {metric: accuracy, min: 0.8}           # threshold on the version's metric
      - {metric: log_loss, max: 0.4}           # `max` for losses
      - {metric: auc, min_improvement: 0.01}   # over the version the alias holds now
      - {max_latency_ms: 20}                   # median predict time on the stored example
      - {approvers: [alice, bob]}              # one of them must approve (`approve="alice"`)
      - {metric: roc_auc, min_improvement: 0, on: "churn-splits@main:test.parquet"}

Without `on`, metric gates read the metrics registered with the version (its run's). With
`on: REF`, they read the newest `threadline evaluate` of the version on the commit REF
resolves to, and an improvement gate compares with the holder scored on those same rows (in
the candidate's evaluation `--against` the holder, or the holder's own evaluation on that
commit): versions validated on different data are not compared.

Every gate is evaluated (not only up to the first failure), so a refusal lists them all with
the measured and the required value.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from threadline.errors import InvalidArgument
from threadline.registry.names import check_alias

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: predict calls timed for a latency gate (after one warm-up call); the median is compared
LATENCY_CALLS = 5
_KEYS = {
    "threshold": {"metric", "min", "max", "on"},
    "improvement": {"metric", "min_improvement", "lower_is_better", "on"},
    "latency": {"max_latency_ms", "calls"},
    "approval": {"approvers"},
}


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate: what it required, what was measured, whether it passed."""

    gate: str
    passed: bool
    measured: Any
    required: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the alias log)."""
        return {"gate": self.gate, "passed": self.passed, "measured": self.measured,
                "required": self.required, "detail": self.detail}

    def __str__(self) -> str:
        text = f"{self.gate}: measured {_show(self.measured)}, required {self.required}"
        return f"{text} ({self.detail})" if self.detail else text


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Evaluated:
    """Evaluations on one data commit: the candidate's metrics and the holder's (None: none)."""

    commit: str
    metrics: Mapping[str, Any] | None
    holder_metrics: Mapping[str, Any] | None


def _no_evaluations(ref: str) -> Evaluated:
    raise InvalidArgument(f"gates with on: {ref!r} need evaluations; none can be looked up here")


@dataclass(frozen=True)
class Candidate:
    """What the gates look at: the version's metrics, the current holder's, latency, approver."""

    metrics: Mapping[str, Any]
    holder_version: int | None
    holder_metrics: Mapping[str, Any] | None
    approve: str | None
    #: one timed predict call on the stored example, in ms; None when no example is stored
    time_predict: Callable[[], float | None]
    #: the evaluations on the commit a data ref resolves to (for gates with `on:`)
    evaluated: Callable[[str], Evaluated] = _no_evaluations


def _sources(gate: Mapping[str, Any], c: Candidate) -> tuple[Mapping[str, Any] | None,
                                                          Mapping[str, Any] | None, str, str]:
    """(candidate metrics, holder metrics, label suffix, what is missing) for a metric gate."""
    if "on" not in gate:
        return c.metrics, c.holder_metrics, "", "the version has no such metric"
    found = c.evaluated(str(gate["on"]))
    where = f" on {gate['on']} ({found.commit[:12]})"
    return (found.metrics, found.holder_metrics, where,
            f"no evaluation of this version{where}; run `threadline evaluate` on it first")


def _kind(gate: Mapping[str, Any]) -> str:
    if "approvers" in gate:
        return "approval"
    if "max_latency_ms" in gate:
        return "latency"
    if "min_improvement" in gate:
        return "improvement"
    if "min" in gate or "max" in gate:
        return "threshold"
    raise InvalidArgument(f"gate {dict(gate)!r} is none of: {{metric, min|max}}, "
                          "{metric, min_improvement}, {max_latency_ms}, {approvers}")


def _number(gate: Mapping[str, Any], key: str) -> float:
    value = gate[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"gate {key} must be a number, not {value!r}")
    return float(value)


def check_gate(gate: Any) -> dict[str, Any]:
    """Validate one gate; return it as a plain dict."""
    if not isinstance(gate, dict):
        raise InvalidArgument(f"a gate is a mapping, not {gate!r}")
    kind = _kind(gate)
    unknown = set(gate) - _KEYS[kind]
    if unknown:
        raise InvalidArgument(f"unknown key(s) {', '.join(sorted(unknown))} in {kind} gate {gate!r}")
    if kind in ("threshold", "improvement") and not isinstance(gate.get("metric"), str):
        raise InvalidArgument(f"{kind} gate {gate!r} needs metric: NAME")
    if "on" in gate and (not isinstance(gate["on"], str) or "@" not in gate["on"]):
        raise InvalidArgument(f"gate on: must be a data ref like repo@branch:table.parquet, "
                              f"not {gate['on']!r}")
    for key in ("min", "max", "min_improvement", "max_latency_ms"):
        if key in gate:
            _number(gate, key)
    if kind == "approval":
        people = gate["approvers"]
        if (not isinstance(people, list) or not people
                or not all(isinstance(p, str) and p for p in people)):
            raise InvalidArgument("approvers must be a non-empty list of names")
    if "calls" in gate and (not isinstance(gate["calls"], int) or not 1 <= gate["calls"] <= 100):
        raise InvalidArgument("calls must be an integer from 1 to 100")
    return dict(gate)


def parse_policy(policy: Mapping[str, Any] | str) -> dict[str, list[dict[str, Any]]]:
    """Validate a policy (a dict, or YAML text); return it as plain data to store.

    Raises:
        InvalidArgument: naming the alias and gate that is malformed.
    """
    if isinstance(policy, str):
        try:
            policy = yaml.safe_load(policy) or {}
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"the policy is not valid YAML: {exc}") from exc
    if not isinstance(policy, dict):
        raise InvalidArgument("a policy maps alias names to lists of gates")
    out: dict[str, list[dict[str, Any]]] = {}
    for alias, gates in policy.items():
        check_alias(str(alias))
        if isinstance(gates, dict) and "gates" in gates:
            gates = gates["gates"]
        if not isinstance(gates, list):
            raise InvalidArgument(f"policy for {alias!r} must be a list of gates")
        try:
            out[str(alias)] = [check_gate(g) for g in gates]
        except InvalidArgument as exc:
            raise InvalidArgument(f"policy for {alias!r}: {exc}") from exc
    return out


def _threshold(gate: Mapping[str, Any], c: Candidate) -> GateResult:
    metric = gate["metric"]
    metrics, _, where, missing = _sources(gate, c)
    value = None if metrics is None else metrics.get(metric)
    parts = []
    if "min" in gate:
        parts.append(f">= {_show(_number(gate, 'min'))}")
    if "max" in gate:
        parts.append(f"<= {_show(_number(gate, 'max'))}")
    required = " and ".join(parts)
    if value is None:
        return GateResult(f"metric {metric}{where}", False, None, required,
                          missing if metrics is None else "the version has no such metric")
    ok = ("min" not in gate or value >= _number(gate, "min")) and (
        "max" not in gate or value <= _number(gate, "max"))
    return GateResult(f"metric {metric}{where}", ok, value, required)


def _improvement(gate: Mapping[str, Any], c: Candidate) -> GateResult:
    metric = gate["metric"]
    step = _number(gate, "min_improvement")
    lower = bool(gate.get("lower_is_better", False))
    metrics, holder_metrics, where, missing = _sources(gate, c)
    name = f"improvement of {metric}{where}"
    value = None if metrics is None else metrics.get(metric)
    if value is None:
        return GateResult(name, False, None, f"{'-' if lower else '+'}{_show(step)}",
                          missing if metrics is None else "the version has no such metric")
    if c.holder_version is None:
        return GateResult(name, True, value, f"{'-' if lower else '+'}{_show(step)}",
                          "no version holds the alias yet")
    base = (holder_metrics or {}).get(metric)
    if base is None and "on" in gate:  # on the same rows or not at all
        return GateResult(name, False, None, f">= {_show(step)}",
                          f"v{c.holder_version} has no {metric}{where}; evaluate with "
                          f"--against the alias, or evaluate v{c.holder_version} on it")
    if base is None:
        return GateResult(name, True, value, f"{'-' if lower else '+'}{_show(step)}",
                          f"v{c.holder_version} has no {metric} to compare with")
    gain = (base - value) if lower else (value - base)
    return GateResult(name, gain >= step, round(gain, 12), f">= {_show(step)}",
                      f"{_show(value)} vs {_show(base)} of v{c.holder_version}")


def _latency(gate: Mapping[str, Any], c: Candidate) -> GateResult:
    limit = _number(gate, "max_latency_ms")
    calls = int(gate.get("calls", LATENCY_CALLS))
    first = c.time_predict()  # warm-up: lazy initialisation is not what serving will see
    if first is None:
        return GateResult("latency", False, None, f"<= {_show(limit)} ms",
                          "no example batch is stored; register with example=...")
    times = [c.time_predict() or 0.0 for _ in range(calls)]
    median = statistics.median(times)
    return GateResult("latency", median <= limit, round(median, 3), f"<= {_show(limit)} ms",
                      f"median of {calls} predict calls on the example batch")


def _approval(gate: Mapping[str, Any], c: Candidate) -> GateResult:
    people = list(gate["approvers"])
    required = f"one of {', '.join(people)}"
    if not c.approve:
        return GateResult("approval", False, None, required, "nobody approved; pass --approve NAME")
    return GateResult("approval", c.approve in people, c.approve, required,
                      "" if c.approve in people else f"{c.approve} is not an approver")


_EVALUATE: dict[str, Callable[[Mapping[str, Any], Candidate], GateResult]] = {
    "threshold": _threshold, "improvement": _improvement, "latency": _latency,
    "approval": _approval,
}


def evaluate(gates: list[dict[str, Any]], candidate: Candidate) -> list[GateResult]:
    """Evaluate every gate against the candidate."""
    return [_EVALUATE[_kind(g)](g, candidate) for g in gates]


def timer(call: Callable[[], Any]) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000
