"""Rollback moves the alias back, with the training data when asked; undo restores both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos
    from threadline.registry import ModelRegistry

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def _head(home: DataRepos, ref: str) -> str:
    return home.resolve(ref).require_commit().id


@pytest.fixture
def two_releases(home: DataRepos, registry: ModelRegistry, make_tree: MakeTree,
                 classifier: Any) -> tuple[str, str]:
    """sales@main and labels@main at c1 for v1, at c2 for v2; production = v2."""
    firsts, seconds = [], []
    for repo in ("sales", "labels"):
        home.create(repo)
        firsts.append(home.commit(repo, [make_tree(f"{repo}1", {"t.csv": b"a\n1\n"})], "one").commit.id)
    registry.register("churn", classifier, data=["sales@main:t.csv", "labels"])
    registry.promote("churn", 1, to="production")
    for repo in ("sales", "labels"):
        seconds.append(home.commit(repo, [make_tree(f"{repo}2", {"t.csv": b"a\n1\n2\n"})], "two").commit.id)
    registry.register("churn", classifier, data=["sales@main:t.csv", "labels"])
    registry.promote("churn", 2, to="production")
    return firsts[0], seconds[0]


def test_rollback_with_data_restores_the_exact_commits_and_undo_restores_the_state_before(
    home: DataRepos, registry: ModelRegistry, two_releases: tuple[str, str]
) -> None:
    c1, c2 = two_releases
    labels_now = _head(home, "labels@main")
    entry = registry.rollback("churn", "production", with_data=True, actor="oncall", message="bad v2")
    assert (entry.action, entry.old_version, entry.new_version, entry.actor) == (
        "rollback", 2, 1, "oncall")
    assert registry.get_version("churn@production").version == 1
    assert _head(home, "sales@main") == c1
    v1 = registry.get_version("churn", 1)
    assert _head(home, "labels@main") == v1.data[1]["commit"]
    moves = {(m["repo"], m["branch"], m["old"], m["new"]) for m in entry.meta["data_moves"]}
    assert moves == {("sales", "main", c2, c1), ("labels", "main", labels_now, v1.data[1]["commit"])}
    assert [e.action for e in registry.alias_history("churn", "production")] == [
        "rollback", "promote", "promote"]  # one entry for the alias and both branches

    undo = registry.rollback_undo("churn", "production")
    assert (undo.action, undo.old_version, undo.new_version) == ("undo", 1, 2)
    assert registry.get_version("churn@production").version == 2
    assert _head(home, "sales@main") == c2
    assert _head(home, "labels@main") == labels_now
    with pytest.raises(InvalidArgument, match="nothing to undo"):
        registry.rollback_undo("churn", "production")


def test_rollback_without_data_leaves_branches_and_goes_back_step_by_step(
    home: DataRepos, registry: ModelRegistry, two_releases: tuple[str, str], classifier: Any
) -> None:
    _c1, c2 = two_releases
    registry.register("churn", classifier)
    registry.promote("churn", 3, to="production")
    assert registry.rollback("churn").new_version == 2
    assert registry.rollback("churn").new_version == 1
    with pytest.raises(InvalidArgument, match="no earlier version"):
        registry.rollback("churn")
    assert _head(home, "sales@main") == c2
    assert registry.rollback("churn", to=3).new_version == 3


def test_undo_refuses_when_a_branch_moved_since_and_changes_nothing(
    home: DataRepos, registry: ModelRegistry, two_releases: tuple[str, str], make_tree: MakeTree
) -> None:
    registry.rollback("churn", with_data=True)
    labels_before = _head(home, "labels@main")
    moved = home.commit("sales", [make_tree("sales3", {"t.csv": b"a\n3\n"})], "three").commit.id
    with pytest.raises(Conflict, match="sales@main is at"):
        registry.rollback_undo("churn")
    assert registry.get_version("churn@production").version == 1
    assert (_head(home, "sales@main"), _head(home, "labels@main")) == (moved, labels_before)


def test_a_failed_alias_move_reverts_the_branch_moves(
    home: DataRepos, registry: ModelRegistry, two_releases: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _c1, c2 = two_releases
    from threadline.registry import aliases

    def lose(*_args: Any, **_kwargs: Any) -> None:
        raise Conflict("another change got there first")

    monkeypatch.setattr(aliases, "move", lose)
    with pytest.raises(Conflict, match="got there first"):
        registry.rollback("churn", with_data=True)
    assert _head(home, "sales@main") == c2
    monkeypatch.undo()
    assert registry.get_version("churn@production").version == 2


def test_rollback_of_a_missing_alias_or_to_the_same_version(registry: ModelRegistry,
                                                            classifier: Any) -> None:
    registry.register("churn", classifier)
    with pytest.raises(NotFound, match="no alias 'production'"):
        registry.rollback("churn")
    registry.set_alias("churn", "production", 1)
    with pytest.raises(InvalidArgument, match="already points at v1"):
        registry.rollback("churn", to=1)
