"""Promotion gates with `on: REF` read evaluations: versions compared on the same rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument
from threadline.evaluate import evaluate
from threadline.registry import GateFailed

if TYPE_CHECKING:
    from conftest import Churn


def test_gates_on_a_table_use_the_evaluations_of_both_versions_on_it(churn: Churn) -> None:
    registry = churn.registry
    registry.set_policy("churn", {"production": [
        {"metric": "roc_auc", "min": 0.55, "on": churn.ref},
        {"metric": "roc_auc", "min_improvement": 0.0, "on": churn.ref},
    ]})
    with pytest.raises(GateFailed, match="no evaluation of this version on churn-splits@main"):
        registry.promote("churn", 2, to="production")  # never evaluated: refused, not guessed

    evaluate(registry, "churn@2", churn.ref, target="churned", replicates=50)
    registry.promote("churn", 2, to="production")  # strong model, first holder

    # the weak model, compared with the holder on the same rows, is refused with both values
    evaluate(registry, "churn@1", churn.ref, target="churned", against="churn@production",
             replicates=50)
    with pytest.raises(GateFailed) as refused:
        registry.promote("churn", 1, to="production")
    failed = {r.gate: r for r in refused.value.failed}
    gate = failed[f"improvement of roc_auc on {churn.ref} ({churn.commit[:12]})"]
    assert gate.measured < 0
    assert "vs" in gate.detail
    assert registry.get_version("churn", "production").version == 2


def test_an_on_gate_must_name_a_data_ref(churn: Churn) -> None:
    with pytest.raises(InvalidArgument, match="data ref"):
        churn.registry.set_policy("churn", {"production": [{"metric": "roc_auc", "min": 0.5,
                                                            "on": "validation.parquet"}]})
