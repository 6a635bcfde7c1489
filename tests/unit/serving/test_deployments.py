"""Deployments: specs are checked, every change is a numbered revision, rollback restores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.registry import ModelRegistry
from threadline.serving.deployments import Deployments
from threadline.serving.spec import parse_routes, parse_settings

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


@pytest.fixture
def deployments(home: DataRepos) -> Deployments:
    registry = ModelRegistry(home)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    for c in (1.0, 0.1, 0.01):
        registry.register("churn", LogisticRegression(C=c).fit(x, y), example=x[:3])
    registry.set_alias("churn", "production", 1)
    return Deployments(registry)


def test_create_and_read_back(deployments: Deployments) -> None:
    made = deployments.create("web", [{"model": "churn@production"}], {"max_batch_size": 8})
    assert made.revision == 1
    got = deployments.get("web")
    assert [(r.name, r.model, r.mode, r.weight) for r in got.spec.routes] == [
        ("primary", "churn@production", "primary", 100.0)]
    assert got.spec.settings.max_batch_size == 8
    assert [d.name for d in deployments.all()] == ["web"]


@pytest.mark.parametrize(("routes", "message"), [
    ([], "at least one route"),
    ([{"model": "churn@2", "mode": "canary"}], "needs a primary route"),
    ([{"model": "churn@2", "mode": "blue"}], "mode must be one of"),
    ([{"model": "churn@2", "weight": -1}], "weight must be"),
    ([{"model": "churn@2", "weight": 0}], "add up to 0"),
    ([{"model": "churn@2", "colour": 1}], "unknown key 'colour'"),
    ([{"model": "churn@2", "name": "a"}, {"model": "churn@3", "name": "a"}], "two routes are named 'a'"),
    ([{"model": "churn@2"}, {"model": "churn@3", "mode": "shadow", "weight": 150}], "at most 100"),
])
def test_bad_routes_are_refused_naming_the_problem(routes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_routes(routes)


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_batch_size": 0}, "max_batch_size must be an integer of at least 1"),
    ({"deadline_ms": "soon"}, "deadline_ms must be a number"),
    ({"batch": 3}, "unknown setting 'batch'"),
    ({"onnx": "yes"}, "onnx must be 'auto' or 'off'"),
    ({"allow_pickle": "true"}, "allow_pickle must be true or false"),
])
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_settings(settings)


def test_missing_models_and_names(deployments: Deployments) -> None:
    with pytest.raises(NotFound, match="no version 9"):
        deployments.create("web", [{"model": "churn@9"}])
    with pytest.raises(NotFound, match="no alias 'staging'"):
        deployments.create("web", [{"model": "churn@staging"}])
    with pytest.raises(NotFound, match="threadline deploy create"):
        deployments.get("nope")
    deployments.create("web", [{"model": "churn@1"}])
    with pytest.raises(AlreadyExists, match="deploy update"):
        deployments.create("web", [{"model": "churn@1"}])


def test_canary_ramp_promote_and_rollback_are_logged(deployments: Deployments) -> None:
    deployments.create("web", [{"model": "churn@production"}])
    ramp = deployments.set_canary("web", "churn@2", 10)
    weights = {r.name: (r.mode, r.weight) for r in ramp.spec.routes}
    assert weights == {"primary": ("primary", 90.0), "canary": ("canary", 10.0)}
    deployments.set_canary("web", "churn@2", 50)
    promoted = deployments.promote_canary("web")
    assert [(r.model, r.mode) for r in promoted.spec.routes] == [("churn@2", "primary")]
    assert [c.action for c in deployments.history("web")] == ["promote", "canary", "canary", "create"]
    back = deployments.rollback("web", to=2)
    assert back.revision == 5
    assert {r.name: r.weight for r in back.spec.routes} == {"primary": 90.0, "canary": 10.0}
    with pytest.raises(InvalidArgument, match="revision from 1 to 4"):
        deployments.rollback("web", to=5)


def test_concurrent_change_loses_with_conflict(deployments: Deployments) -> None:
    deployments.create("web", [{"model": "churn@1"}])
    deployments.change("web", settings={"max_wait_ms": 1}, expected_revision=1)
    with pytest.raises(Conflict, match="now revision 2, expected 1"):
        deployments.change("web", settings={"max_wait_ms": 3}, expected_revision=1)
    assert deployments.get("web").spec.settings.max_wait_ms == 1.0


def test_canary_percent_bounds(deployments: Deployments) -> None:
    deployments.create("web", [{"model": "churn@1"}])
    with pytest.raises(InvalidArgument, match="below 100"):
        deployments.set_canary("web", "churn@2", 100)
    with pytest.raises(InvalidArgument, match="no canary route"):
        deployments.promote_canary("web")
