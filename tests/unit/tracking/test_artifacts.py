"""Run artifacts (round trip, growth, de-duplication, paths) and inputs, both in lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.data.repos import commit_node
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage.graph import LineageGraph
from threadline.tracking.artifacts import ARTIFACT_REPO
from threadline.tracking.model import run_node
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


@pytest.fixture
def store(home: DataRepos) -> TrackingStore:
    return TrackingStore(home)


def test_artifacts_round_trip_and_grow(store: TrackingStore, make_tree: MakeTree,
                                       tmp_path: Path) -> None:
    run_id = store.create_run(store.experiment().id).id
    assert store.list_artifacts(run_id) == []
    src = make_tree("model", {"weights.bin": b"w" * 100, "conf/params.json": b"{}"})
    first = store.log_artifacts(run_id, src, "model")
    assert store.get_run(run_id).info.artifact_commit == first
    second = store.log_artifacts(run_id, make_tree("r", {"report.txt": b"ok"}) / "report.txt")
    assert second != first
    assert store.get_run(run_id).info.artifact_commit == second
    assert store.list_artifacts(run_id) == [
        {"path": "model", "is_dir": True, "size": None},
        {"path": "report.txt", "is_dir": False, "size": 2},
    ]
    assert store.list_artifacts(run_id, "model") == [
        {"path": "model/conf", "is_dir": True, "size": None},
        {"path": "model/weights.bin", "is_dir": False, "size": 100},
    ]
    assert store.list_artifacts(run_id, "report.txt") == [
        {"path": "report.txt", "is_dir": False, "size": 2}]
    assert store.read_artifact(run_id, "model/conf/params.json") == b"{}"
    folder = store.download_artifacts(run_id, "model", tmp_path / "dl")
    assert folder == tmp_path / "dl" / "model"
    assert (folder / "conf" / "params.json").read_bytes() == b"{}"
    one = store.download_artifacts(run_id, "report.txt", tmp_path / "dl2")
    assert one.read_bytes() == b"ok"
    everything = store.download_artifacts(run_id, "", tmp_path / "all")
    assert (everything / "model" / "weights.bin").read_bytes() == b"w" * 100
    edges = LineageGraph(store.db).direct(run_node(run_id))
    assert {(e.relation, e.target) for e in edges} == {
        ("produced", commit_node(first)), ("produced", commit_node(second))}


def test_identical_artifacts_add_no_objects(store: TrackingStore, make_tree: MakeTree,
                                            home: DataRepos) -> None:
    src = make_tree("m", {"model.bin": bytes(range(256)) * 4000})
    one = store.create_run(store.experiment().id).id
    store.log_artifacts(one, src)
    home.content.refresh()
    before = set(home.content.object_sizes())
    two = store.create_run(store.experiment().id).id
    store.log_artifacts(two, src)
    store.log_artifacts(one, src)  # the same files again on the same run: no new commit either
    home.content.refresh()
    assert set(home.content.object_sizes()) == before
    assert store.read_artifact(two, "model.bin") == bytes(range(256)) * 4000
    assert len(home.log(f"{ARTIFACT_REPO}@{one}")) == 1


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b"])
def test_artifact_paths_never_escape(store: TrackingStore, make_tree: MakeTree, bad: str,
                                     tmp_path: Path) -> None:
    run_id = store.create_run(store.experiment().id).id
    src = make_tree("s", {"f.txt": b"x"})
    with pytest.raises(InvalidArgument, match="path"):
        store.log_artifacts(run_id, src, bad)
    store.log_artifacts(run_id, src)
    for call in (lambda: store.read_artifact(run_id, bad),
                 lambda: store.list_artifacts(run_id, bad),
                 lambda: store.download_artifacts(run_id, bad, tmp_path / "d")):
        with pytest.raises(InvalidArgument, match="path"):
            call()


def test_artifact_errors(store: TrackingStore, make_tree: MakeTree, tmp_path: Path) -> None:
    run_id = store.create_run(store.experiment().id).id
    with pytest.raises(NotFound, match="no such file or folder"):
        store.log_artifacts(run_id, tmp_path / "missing")
    store.log_artifacts(run_id, make_tree("s", {"d/f.txt": b"x"}))
    with pytest.raises(NotFound, match="has no artifact 'nope'"):
        store.read_artifact(run_id, "nope")
    with pytest.raises(InvalidArgument, match="is a folder"):
        store.read_artifact(run_id, "d")
    with pytest.raises(NotFound, match="has no artifact 'nope'"):
        store.download_artifacts(run_id, "nope", tmp_path / "x")
    store.delete_run(run_id)
    with pytest.raises(InvalidArgument, match="is deleted"):
        store.log_artifacts(run_id, make_tree("s", {"g.txt": b"y"}))


def test_inputs_are_resolved_recorded_and_in_lineage(store: TrackingStore, make_tree: MakeTree,
                                                     home: DataRepos) -> None:
    home.create("sales")
    commit = home.commit("sales", [make_tree("data", {"train.csv": b"a\n1\n"})], "v1").commit
    run_id = store.create_run(store.experiment().id).id
    entries = store.log_inputs(run_id, ["sales@main", "sales@main:train.csv"])
    assert entries == [
        {"repo": "sales", "commit": commit.id, "ref": "sales@main"},
        {"repo": "sales", "commit": commit.id, "ref": "sales@main:train.csv"},
    ]
    store.log_inputs(run_id, ["sales@main"])  # recorded once
    run = store.get_run(run_id)
    assert run.inputs == entries
    assert "threadline.inputs" not in run.tags
    downstream = LineageGraph(home.db).closure(commit_node(commit.id), "down")
    assert run_node(run_id) in downstream
    with pytest.raises(NotFound, match="data repo 'nope' does not exist"):
        store.log_inputs(run_id, ["nope@main"])
    home.create("empty")
    with pytest.raises(NotFound, match="has no commits yet"):
        store.log_inputs(run_id, ["empty"])
    assert store.get_run(run_id).inputs == entries
