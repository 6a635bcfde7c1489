"""Managing models and versions: create, update, tags, rename, delete, external versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.data.repos import commit_node
from threadline.errors import AlreadyExists, InvalidArgument, NotFound
from threadline.lineage import LineageGraph
from threadline.lineage.graph import Node
from threadline.registry.models_admin import EXTERNAL_FLAVOR, EXTERNAL_FORMAT
from threadline.registry.store import MODELS_REPO
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos
    from threadline.registry import ModelRegistry


@pytest.fixture
def logged_run(home: DataRepos, tmp_path: Path) -> str:
    """A run that logged an MLflow model folder at `model/`; returns its id."""
    tracking = TrackingStore(home)
    run_id = tracking.create_run(tracking.experiment("e").id).id
    folder = tmp_path / "mlmodel"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    tracking.log_artifacts(run_id, folder, "model")
    return run_id


def _edges_into(home: DataRepos, node: Node) -> set[tuple[str, str]]:
    return {(str(e.source), e.relation) for e in LineageGraph(home.db).direct(node) if e.target == node}


# ------------------------------------------------------------------------ models
def test_create_model_without_versions(registry: ModelRegistry) -> None:
    made = registry.create_model("churn", "predicts churn", {"team": "ml"})
    assert (made.name, made.description, made.tags, made.latest_version) == (
        "churn", "predicts churn", {"team": "ml"}, None)
    assert registry.get_model("churn") == made
    assert registry.list_versions("churn") == []
    with pytest.raises(AlreadyExists, match="model 'churn' is registered already"):
        registry.create_model("churn")
    with pytest.raises(InvalidArgument, match="invalid model name"):
        registry.create_model("no spaces")
    with pytest.raises(InvalidArgument, match="invalid model tag key ''"):
        registry.create_model("other", tags={"": "x"})
    with pytest.raises(InvalidArgument, match="invalid value for model tag 'k'"):
        registry.create_model("other", tags={"k": 3})  # type: ignore[dict-item]
    assert [m.name for m in registry.list_models()] == ["churn"]


def test_register_adds_versions_to_a_created_model(registry: ModelRegistry, classifier: Any) -> None:
    registry.create_model("churn", "kept")
    assert registry.register("churn", classifier).version == 1
    assert registry.get_model("churn").description == "kept"


def test_update_model_sets_description_and_merges_tags(registry: ModelRegistry) -> None:
    registry.create_model("churn", "old", {"team": "ml", "tier": "1"})
    got = registry.update_model("churn", tags={"tier": "2", "owner": "ann"})
    assert (got.description, got.tags) == ("old", {"team": "ml", "tier": "2", "owner": "ann"})
    got = registry.update_model("churn", description="new")
    assert (got.description, got.tags["tier"]) == ("new", "2")
    assert registry.get_model("churn") == got
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.update_model("nope", description="x")
    with pytest.raises(InvalidArgument, match="invalid model tag key"):
        registry.update_model("churn", tags={"x" * 251: "v"})


def test_delete_model_tag(registry: ModelRegistry) -> None:
    registry.create_model("churn", tags={"team": "ml", "tier": "1"})
    registry.delete_model_tag("churn", "team")
    assert registry.get_model("churn").tags == {"tier": "1"}
    with pytest.raises(NotFound, match="model 'churn' has no tag 'team'; its tags are: tier"):
        registry.delete_model_tag("churn", "team")
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.delete_model_tag("nope", "team")


def test_rename_keeps_versions_aliases_history_files_and_lineage(
    home: DataRepos, registry: ModelRegistry, classifier: Any, xy: tuple[Any, Any]
) -> None:
    first = registry.register("churn", classifier)
    registry.set_alias("churn", "production", 1, "ann", "first")
    renamed = registry.rename_model("churn", "retention")
    assert (renamed.name, renamed.aliases, renamed.latest_version) == ("retention", {"production": 1}, 1)
    with pytest.raises(NotFound, match="model 'churn' is not registered"):
        registry.get_model("churn")
    assert [e.message for e in registry.alias_history("retention")] == ["first"]
    # the files stay on the old branch, pinned by the version's commit, and still load
    loaded = registry.load_model("retention@production")
    np.testing.assert_array_equal(loaded.predict(xy[0]), classifier.predict(xy[0]))
    second = registry.register("retention", classifier)
    branches = home.get(MODELS_REPO).branches
    assert (branches["churn"], branches["retention"]) == (first.artifact_commit, second.artifact_commit)
    # lineage keeps the old node and leads from it to the new one
    assert ("model_version:churn/1", "renamed_to") in _edges_into(home, Node("model_version", "retention/1"))
    up = LineageGraph(home.db).closure(Node("model_version", "retention/1"), "up")
    assert commit_node(first.artifact_commit) in up
    assert registry.rename_model("retention", "retention").name == "retention"  # a no-op


def test_rename_refusals(registry: ModelRegistry) -> None:
    registry.create_model("a")
    registry.create_model("b")
    with pytest.raises(AlreadyExists, match="cannot rename 'a' to 'b': model 'b' is registered already"):
        registry.rename_model("a", "b")
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.rename_model("nope", "c")
    with pytest.raises(InvalidArgument, match="invalid model name 'c d'"):
        registry.rename_model("a", "c d")
    assert [m.name for m in registry.list_models()] == ["a", "b"]


def test_delete_model_removes_versions_aliases_and_history(
    registry: ModelRegistry, classifier: Any
) -> None:
    registry.register("churn", classifier)
    registry.register("other", classifier)
    registry.set_alias("churn", "production", 1)
    registry.set_alias("other", "production", 1)
    registry.delete_model("churn")
    assert [m.name for m in registry.list_models()] == ["other"]
    with pytest.raises(NotFound, match="model 'churn' is not registered"):
        registry.get_version("churn", 1)
    with pytest.raises(NotFound, match="model 'churn' is not registered"):
        registry.delete_model("churn")
    assert registry.get_model("other").aliases == {"production": 1}  # other models untouched
    registry.create_model("churn")  # the name is free again, with a clean history
    assert registry.alias_history("churn") == []
    assert registry.list_versions("churn") == []


# -------------------------------------------------------------- external versions
def test_register_external_records_the_source_without_copying(
    home: DataRepos, registry: ModelRegistry, logged_run: str
) -> None:
    registry.create_model("churn")
    source = f"runs:/{logged_run}/model"
    version = registry.register_external("churn", logged_run, source, path="model", description="d")
    run_commit = TrackingStore(home).get_run(logged_run).info.artifact_commit
    assert (version.version, version.flavor, version.format_id, version.run_id) == (
        1, EXTERNAL_FLAVOR, EXTERNAL_FORMAT, logged_run)
    assert (version.artifact_commit, version.external_source, version.description) == (
        run_commit, source, "d")
    assert registry.get_version("churn", 1) == version
    assert version.to_dict()["external_source"] == source
    assert MODELS_REPO not in {r.name for r in home.list()}  # nothing was copied
    assert _edges_into(home, Node("model_version", "churn/1")) == {
        (f"run:{logged_run}", "produced"), (str(commit_node(str(run_commit))), "model_files")}
    with pytest.raises(InvalidArgument, match="churn@1 is an external 'mlflow' model"):
        registry.load_model("churn@1")
    assert registry.load_example(version) is None


def test_native_versions_have_no_external_source(registry: ModelRegistry, classifier: Any) -> None:
    version = registry.register("churn", classifier)
    assert version.external_source is None
    assert registry.get_version("churn", 1).to_dict()["external_source"] is None


def test_register_external_refusals(registry: ModelRegistry, logged_run: str, home: DataRepos) -> None:
    source = f"runs:/{logged_run}/model"
    with pytest.raises(NotFound, match="model 'churn' is not registered; create it first"):
        registry.register_external("churn", logged_run, source, path="model")
    registry.create_model("churn")
    with pytest.raises(NotFound, match=f"run {logged_run} has no artifacts at 'elsewhere'"):
        registry.register_external("churn", logged_run, source, path="elsewhere")
    bare = TrackingStore(home)
    empty_run = bare.create_run(bare.experiment().id).id
    with pytest.raises(NotFound, match=f"run {empty_run} has no artifacts at ''"):
        registry.register_external("churn", empty_run, f"runs:/{empty_run}")
    with pytest.raises(NotFound, match="does not exist"):
        registry.register_external("churn", "f" * 32, source)
    for bad in ("", "x" * 501):
        with pytest.raises(InvalidArgument, match="invalid external source"):
            registry.register_external("churn", logged_run, bad, path="model")
    assert registry.list_versions("churn") == []


# ----------------------------------------------------------------------- versions
def test_update_version_description(registry: ModelRegistry, classifier: Any) -> None:
    registry.register("churn", classifier, description="old")
    registry.set_alias("churn", "production", 1)
    got = registry.update_version_description("churn", 1, "new")
    assert (got.description, got.aliases) == ("new", ["production"])
    assert registry.get_version("churn", 1) == got
    with pytest.raises(NotFound, match="model 'churn' has no version 2"):
        registry.update_version_description("churn", 2, "x")
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.update_version_description("nope", 1, "x")
    for bad in (0, True, "1"):
        with pytest.raises(InvalidArgument, match=f"invalid version {bad!r}: give a version number"):
            registry.update_version_description("churn", bad, "x")  # type: ignore[arg-type]


def test_delete_version_removes_its_aliases_and_logs_it(registry: ModelRegistry, classifier: Any) -> None:
    for _ in range(2):
        registry.register("churn", classifier)
    registry.set_alias("churn", "production", 1)
    registry.set_alias("churn", "fallback", 1)
    registry.set_alias("churn", "staging", 2)
    registry.delete_version("churn", 1, actor="ann")
    assert [v.version for v in registry.list_versions("churn")] == [2]
    assert registry.get_model("churn").aliases == {"staging": 2}
    logged = [(e.alias, e.old_version, e.new_version, e.action, e.actor, e.message)
              for e in registry.alias_history("churn")[:2]]
    assert sorted(logged) == [("fallback", 1, None, "delete", "ann", "version 1 deleted"),
                              ("production", 1, None, "delete", "ann", "version 1 deleted")]
    with pytest.raises(NotFound, match="model 'churn' has no version 1"):
        registry.delete_version("churn", 1)
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.delete_version("nope", 1)
    registry.delete_version("churn", 2)
    assert registry.get_model("churn").latest_version is None
