"""Promotion gates: thresholds, improvement over the holder, latency, approval; aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import Conflict, InvalidArgument
from threadline.registry import GateFailed, ModelRegistry
from threadline.registry.gates import Candidate, evaluate, parse_policy

if TYPE_CHECKING:
    from pathlib import Path


def _candidate(metrics: dict[str, float], holder: dict[str, float] | None = None,
               approve: str | None = None, ms: float | None = 1.0) -> Candidate:
    return Candidate(metrics, 1 if holder is not None else None, holder, approve, lambda: ms)


def test_threshold_gates_compare_min_and_max() -> None:
    gates = parse_policy({"production": [{"metric": "accuracy", "min": 0.8},
                                         {"metric": "log_loss", "max": 0.4}]})["production"]
    passed = evaluate(gates, _candidate({"accuracy": 0.85, "log_loss": 0.3}))
    assert [r.passed for r in passed] == [True, True]
    failed = evaluate(gates, _candidate({"accuracy": 0.7}))
    assert [r.passed for r in failed] == [False, False]
    assert str(failed[0]) == "metric accuracy: measured 0.7, required >= 0.8"
    assert "has no such metric" in str(failed[1])


def test_improvement_gate_compares_with_the_current_holder() -> None:
    gates = [{"metric": "auc", "min_improvement": 0.01}]
    assert evaluate(gates, _candidate({"auc": 0.80}))[0].passed  # nobody holds the alias yet
    assert evaluate(gates, _candidate({"auc": 0.82}, {"auc": 0.80}))[0].passed
    result = evaluate(gates, _candidate({"auc": 0.805}, {"auc": 0.80}))[0]
    assert not result.passed
    assert "0.805 vs 0.8 of v1" in str(result)
    loss = [{"metric": "rmse", "min_improvement": 0.5, "lower_is_better": True}]
    assert evaluate(loss, _candidate({"rmse": 2.0}, {"rmse": 3.0}))[0].passed


def test_latency_gate_takes_the_median_and_needs_an_example() -> None:
    gate = [{"max_latency_ms": 10}]
    assert evaluate(gate, _candidate({}, ms=2.0))[0].passed
    slow = evaluate(gate, _candidate({}, ms=25.0))[0]
    assert (slow.passed, slow.measured) == (False, 25.0)
    missing = evaluate(gate, _candidate({}, ms=None))[0]
    assert not missing.passed
    assert "no example batch" in missing.detail


def test_approval_gate_needs_one_of_the_named_people() -> None:
    gate = [{"approvers": ["alice", "bob"]}]
    assert evaluate(gate, _candidate({}, approve="bob"))[0].passed
    assert "nobody approved" in str(evaluate(gate, _candidate({}))[0])
    assert "mallory is not an approver" in str(evaluate(gate, _candidate({}, approve="mallory"))[0])


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"production": [{"metric": "a", "min": "high"}]}, "min must be a number"),
        ({"production": [{"metric": "a", "min": 1, "typo": 2}]}, "unknown key.*typo"),
        ({"production": [{"approvers": []}]}, "non-empty list"),
        ({"production": [{"colour": "red"}]}, "gate .* is none of"),
        ({"3": []}, "must not look like a version"),
        ("production: [unclosed", "not valid YAML"),
    ],
)
def test_malformed_policies_are_refused(policy: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_policy(policy)


def test_promote_refuses_with_every_failing_gate_and_moves_nothing(
    registry: ModelRegistry, classifier: Any
) -> None:
    registry.register("churn", classifier, metrics={"accuracy": 0.9, "auc": 0.80})
    registry.register("churn", classifier, metrics={"accuracy": 0.7, "auc": 0.95})
    registry.set_policy("churn", "production:\n  - {metric: accuracy, min: 0.8}\n"
                                 "  - {approvers: [alice]}\n")
    with pytest.raises(GateFailed, match=r"v2 to production refused by 2 gate\(s\): metric accuracy: "
                                         r"measured 0.7, required >= 0.8; approval") as info:
        registry.promote("churn", 2, to="production")
    assert [r.gate for r in info.value.failed] == ["metric accuracy", "approval"]
    assert registry.get_model("churn").aliases == {}
    entry = registry.promote("churn", 1, to="production", approve="alice", actor="carol")
    assert (entry.action, entry.new_version, entry.actor) == ("promote", 1, "carol")
    assert entry.meta["approver"] == "alice"
    assert [g["passed"] for g in entry.meta["gates"]] == [True, True]
    assert registry.get_policy("churn")["production"][1] == {"approvers": ["alice"]}


def test_promote_measures_latency_on_the_stored_example(registry: ModelRegistry, tmp_path: Path) -> None:
    code = tmp_path / "slow.py"
    code.write_text("import time\ndef predict(data):\n    time.sleep(0.03)\n    return data\n")
    registry.register("slow", flavor="pyfunc", code=str(code), entry="predict", example=[1, 2])
    registry.set_policy("slow", {"staging": [{"max_latency_ms": 5, "calls": 3}]})
    with pytest.raises(GateFailed, match=r"latency: measured .* required <= 5 ms"):
        registry.promote("slow", 1, to="staging", allow_code=True)
    registry.set_policy("slow", {"staging": [{"max_latency_ms": 60000, "calls": 3}]})
    entry = registry.promote("slow", 1, to="staging", allow_code=True)
    assert entry.meta["gates"][0]["measured"] >= 30


def test_aliases_move_by_compare_and_swap_with_history(registry: ModelRegistry, classifier: Any) -> None:
    for _ in range(3):
        registry.register("churn", classifier)
    registry.set_alias("churn", "staging", 1, "alice", "try it")
    registry.set_alias("churn", "staging", 2, "bob")
    with pytest.raises(Conflict, match="points at 2, not 1"):
        registry.set_alias("churn", "staging", 3, expected=1)
    registry.delete_alias("churn", "staging", "carol", "retired")
    history = registry.alias_history("churn", "staging")
    assert [(e.action, e.old_version, e.new_version, e.actor) for e in history] == [
        ("delete", 2, None, "carol"), ("set", 1, 2, "bob"), ("set", None, 1, "alice")]
    assert registry.get_model("churn").aliases == {}
    for bad in ("3", "v2", "latest", "Prod!", ""):
        with pytest.raises(InvalidArgument, match="invalid alias"):
            registry.set_alias("churn", bad, 1)


def test_a_gated_alias_moves_only_by_promote_unless_forced(registry: ModelRegistry,
                                                            classifier: Any) -> None:
    registry.register("churn", classifier, metrics={"accuracy": 0.5})
    registry.set_policy("churn", {"production": [{"metric": "accuracy", "min": 0.8}]})
    with pytest.raises(InvalidArgument, match="has promotion gates; move it with `threadline models promote"):
        registry.set_alias("churn", "production", 1)
    entry = registry.set_alias("churn", "production", 1, "alice", "incident", force=True)
    assert entry.meta == {"forced": True}
    registry.set_alias("churn", "staging", 1)  # no gates for staging


def test_two_writers_creating_the_same_alias_one_wins(registry: ModelRegistry, classifier: Any) -> None:
    registry.register("churn", classifier)
    registry.register("churn", classifier)
    registry.set_alias("churn", "staging", 1, expected=None)
    with pytest.raises(Conflict, match="set by another change meanwhile"):
        registry.set_alias("churn", "staging", 2, expected=None)
    assert registry.get_model("churn").aliases == {"staging": 1}
    assert len(registry.alias_history("churn")) == 1
