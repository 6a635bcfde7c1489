"""Registering versions: numbering, reads by number/alias/latest, lineage, data and profiles."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.data.repos import commit_node
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage import LineageGraph
from threadline.lineage.graph import Node
from threadline.registry import ModelRegistry
from threadline.registry.store import MODELS_REPO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def test_versions_count_up_and_are_read_by_number_alias_and_latest(
    registry: ModelRegistry, classifier: Any, xy: tuple[Any, Any]
) -> None:
    first = registry.register("churn", classifier, example=xy[0][:5], metrics={"accuracy": 0.9},
                              description="baseline")
    second = registry.register("churn", classifier, metrics={"accuracy": 0.95})
    assert (first.version, second.version) == (1, 2)
    assert first.flavor == "sklearn"
    assert first.signature["inputs"]["shape"] == [-1, 3]
    # the first version also stores its example batch, so the artifacts differ
    assert second.artifact_hash != first.artifact_hash
    registry.set_alias("churn", "production", 1, "alice", "first release")
    assert registry.get_version("churn").version == 2
    assert registry.get_version("churn", "production").version == 1
    assert registry.get_version("churn@production").aliases == ["production"]
    assert registry.get_version("churn", 2).metrics == {"accuracy": 0.95}
    model = registry.get_model("churn")
    assert (model.latest_version, model.aliases, model.description) == (2, {"production": 1}, "baseline")
    assert [m.name for m in registry.list_models()] == ["churn"]
    assert [v.version for v in registry.list_versions("churn")] == [1, 2]
    for uri in ("churn", "churn@1", "churn@production", "churn@latest"):
        loaded = registry.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(xy[0]), classifier.predict(xy[0]))


def test_model_files_are_committed_to_the_models_repo_on_the_models_branch(
    home: DataRepos, registry: ModelRegistry, classifier: Any
) -> None:
    version = registry.register("churn", classifier)
    assert home.get(MODELS_REPO).branches["churn"] == version.artifact_commit
    listed = {e.path for e in home.manifest(home.resolve(f"{MODELS_REPO}@churn").require_commit())}
    assert listed == {"model.skops", "threadline-model.json"}


def test_unknown_names_versions_and_aliases_say_what_exists(registry: ModelRegistry,
                                                            classifier: Any) -> None:
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        registry.get_version("nope")
    registry.register("churn", classifier)
    with pytest.raises(NotFound, match="has no version 7"):
        registry.get_version("churn", 7)
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        registry.load_model("churn@staging")
    with pytest.raises(InvalidArgument, match="invalid model name"):
        registry.register("../x", classifier)
    with pytest.raises(InvalidArgument, match="needs a model object"):
        registry.register("churn")


def test_concurrent_registrations_get_distinct_numbers(registry: ModelRegistry, home: DataRepos,
                                                       classifier: Any) -> None:
    registry.register("churn", classifier)
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            start.wait()
            results.append(ModelRegistry(home).register("churn", classifier,
                                                        metrics={"n": n}).version)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == [2, 3, 4, 5]


def test_training_data_profile_and_lineage_are_recorded(
    home: DataRepos, registry: ModelRegistry, make_tree: MakeTree, classifier: Any
) -> None:
    from threadline.prep.steps import make_spec, split

    home.create("raw")
    home.create("splits")
    rows = "\n".join(f"{i},{i % 3}" for i in range(200))
    home.commit("raw", [make_tree("src", {"t.csv": f"x,y\n{rows}\n".encode()})], "raw")
    split(home, "raw:t.csv", "splits", make_spec({"train": 0.8, "test": 0.2}))
    head = home.resolve("splits@main").require_commit()
    version = registry.register("churn", classifier, data=["splits@main:train.parquet", "raw:t.csv"])
    assert version.data[0] == {"repo": "splits", "branch": "main", "commit": head.id,
                               "path": "train.parquet", "ref": "splits@main:train.parquet"}
    train_key = f"splits@{head.id[:12]}:train.parquet"
    train_rows = head.metadata["report"]["rows"]["train"]
    assert 100 < train_rows < 200
    assert version.profile[train_key]["rows"] == train_rows  # the split's stored part profile
    raw_key = next(k for k in version.profile if k.startswith("raw@"))
    assert version.profile[raw_key]["rows"] == 200  # computed: the raw commit has none
    edges = LineageGraph(home.db).edges(Node("model_version", "churn/1"), "up", max_depth=1)
    relations = {(e.source, e.relation) for e in edges}
    assert (commit_node(head.id), "trained_on") in relations
    assert (commit_node(version.artifact_commit), "model_files") in relations


def test_a_refused_registration_commits_no_model_files(home: DataRepos, registry: ModelRegistry,
                                                       classifier: Any) -> None:
    with pytest.raises(NotFound, match="data repo 'nope' does not exist"):
        registry.register("churn", classifier, data=["nope@main"])
    with pytest.raises(InvalidArgument, match="metric 'accuracy' must be a number"):
        registry.register("churn", classifier, metrics={"accuracy": "high"})
    assert MODELS_REPO not in {r.name for r in home.list()}
    version = registry.register("churn", classifier, metrics={"auc": np.float32(0.5), "nan": float("nan")})
    assert version.metrics == {"auc": 0.5, "nan": None}
