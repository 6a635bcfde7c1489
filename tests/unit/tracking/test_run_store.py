"""TrackingStore: experiments, run lifecycle, log_batch rules (params, latest metrics, NaN, keys)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import pytest

from threadline.errors import AlreadyExists, InvalidArgument, NotFound
from threadline.lineage.graph import LineageGraph
from threadline.tracking.model import Metric, run_node
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


@pytest.fixture
def store(home: DataRepos) -> TrackingStore:
    return TrackingStore(home)


def _run(store: TrackingStore, **kwargs: object) -> str:
    return store.create_run(store.experiment().id, **kwargs).id  # type: ignore[arg-type]


def test_experiments_create_get_rename_delete(store: TrackingStore) -> None:
    default = store.experiment()
    assert default.name == "Default"
    assert store.experiment("Default").id == default.id
    exp = store.experiment("churn")
    assert store.get_experiment(exp.id).name == "churn"
    with pytest.raises(NotFound, match="experiment 'nope' does not exist"):
        store.experiment("nope", create=False)
    assert store.rename_experiment(exp.id, "churn-v2").name == "churn-v2"
    with pytest.raises(AlreadyExists, match="'Default' exists already"):
        store.rename_experiment(exp.id, "Default")
    store.set_experiment_tag(exp.id, "team", "ml")
    assert store.get_experiment(exp.id).tags == {"team": "ml"}
    run = store.create_run(exp.id)
    store.delete_experiment(exp.id)
    assert [e.name for e in store.list_experiments()] == ["Default"]
    assert [e.name for e in store.list_experiments("all")] == ["Default", "churn-v2"]
    assert store.get_run(run.id).info.lifecycle_stage == "deleted"
    with pytest.raises(InvalidArgument, match="is deleted; restore it"):
        store.create_run(exp.id)
    store.restore_experiment(exp.id)
    assert store.get_run(run.id).info.lifecycle_stage == "active"
    with pytest.raises(InvalidArgument, match="cannot be deleted"):
        store.delete_experiment(default.id)
    with pytest.raises(NotFound, match="experiment 999"):
        store.get_experiment(999)


def test_run_ids_times_and_update(store: TrackingStore) -> None:
    info = store.create_run(store.experiment().id, name="train", start_time=1234, user="ann",
                            source={"git_commit": "abc"}, tags={"t": "1"})
    assert len(info.id) == 32
    assert int(info.id, 16) >= 0
    assert (info.status, info.start_time, info.user, info.end_time) == ("RUNNING", 1234, "ann", None)
    run = store.get_run(info.id)
    assert run.tags == {"t": "1"}
    assert run.info.source == {"git_commit": "abc"}
    done = store.update_run(info.id, status="FINISHED")
    assert done.status == "FINISHED"
    assert done.end_time is not None
    assert done.end_time >= 1234
    assert store.update_run(info.id, name="renamed").name == "renamed"
    with pytest.raises(InvalidArgument, match="status must be one of RUNNING, SCHEDULED"):
        store.update_run(info.id, status="DONE")
    with pytest.raises(NotFound, match=r"run 'f{32}' does not exist"):
        store.get_run("f" * 32)


def test_params_are_immutable(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, params={"C": "1.0", "penalty": "l2"})
    store.log_batch(run_id, params=[("C", "1.0")])  # same value again: fine
    with pytest.raises(InvalidArgument, match=r"param 'C' of run \w+ is '1.0' already and cannot "
                                              r"become '2.0'"):
        store.log_batch(run_id, params={"C": "2.0"}, metrics=[Metric("m", 1.0, 1)])
    run = store.get_run(run_id)
    assert run.params == {"C": "1.0", "penalty": "l2"}
    assert run.metrics == {}  # the failed batch left nothing behind
    with pytest.raises(InvalidArgument, match="param 'x' is given twice in one batch, as '1' and '2'"):
        store.log_batch(run_id, params=[("x", "1"), ("x", "2")])


def test_latest_metric_is_highest_step_then_timestamp(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, metrics=[Metric("m", 1.0, 100, 5), Metric("m", 2.0, 50, 7),
                                     Metric("m", 3.0, 10, 6)])
    assert store.get_run(run_id).metrics["m"] == Metric("m", 2.0, 50, 7)
    store.log_batch(run_id, metrics=[Metric("m", 4.0, 999, 6)])  # lower step: not latest
    assert store.get_run(run_id).metrics["m"].value == 2.0
    store.log_batch(run_id, metrics=[Metric("m", 5.0, 60, 7)])  # same step, later time
    assert store.get_run(run_id).metrics["m"].value == 5.0
    store.log_batch(run_id, metrics=[Metric("m", 6.0, 40, 7)])  # same step, earlier time
    assert store.get_run(run_id).metrics["m"].value == 5.0
    history = store.metric_history(run_id, "m")
    assert [(p.step, p.timestamp) for p in history] == [(5, 100), (6, 10), (6, 999), (7, 40), (7, 50),
                                                        (7, 60)]
    assert store.metric_history(run_id, "other") == []


def test_nan_and_infinities_round_trip(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, metrics=[Metric("n", math.nan, 1), Metric("i", math.inf, 1),
                                     Metric("j", -math.inf, 1), Metric("k", 3, 1)])
    metrics = store.get_run(run_id).metrics
    assert math.isnan(metrics["n"].value)
    assert metrics["i"].value == math.inf
    assert metrics["j"].value == -math.inf
    assert metrics["k"].value == 3.0
    assert math.isnan(store.metric_history(run_id, "n")[0].value)
    with pytest.raises(InvalidArgument, match="metric 'b' must be a number, not 'x'"):
        store.log_batch(run_id, metrics=[Metric("b", "x", 1)])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="metric 'b' must be a number, not True"):
        store.log_batch(run_id, metrics=[Metric("b", True, 1)])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "must be a non-empty string"),
        ("a" * 251, "is 251 characters; the limit is 250"),
        ("../etc/passwd", "normalised relative path"),
        ("a/../b", "normalised relative path"),
        ("/abs", "normalised relative path"),
        ("a//b", "normalised relative path"),
        ("./a", "normalised relative path"),
        ("a/", "normalised relative path"),
        (".", "normalised relative path"),
        ("a\x00b", "use letters, digits"),
        ("a\\b", "use letters, digits"),
        ("a%2e", "use letters, digits"),
    ],
)
def test_bad_keys_are_refused(store: TrackingStore, key: str, message: str) -> None:
    run_id = _run(store)
    for kwargs in ({"metrics": [Metric(key, 1.0, 1)]}, {"params": {key: "v"}}, {"tags": {key: "v"}}):
        with pytest.raises(InvalidArgument, match=message):
            store.log_batch(run_id, **kwargs)  # type: ignore[arg-type]


def test_good_keys_and_value_limits(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, params={"a-b_c.d/e f:g": "v", "k": "x" * 6000},
                    metrics=[Metric("val/acc top-1", 1.0, 1)])
    assert "val/acc top-1" in store.get_run(run_id).metrics
    with pytest.raises(InvalidArgument, match="value of 6001 characters; the limit is 6000"):
        store.log_batch(run_id, params={"k2": "x" * 6001})
    with pytest.raises(InvalidArgument, match=r"'threadline\.inputs' is reserved"):
        store.log_batch(run_id, tags={"threadline.inputs": "[]"})


def test_finished_and_deleted_runs_refuse_logging(store: TrackingStore) -> None:
    run_id = _run(store)
    store.update_run(run_id, status="FINISHED")
    with pytest.raises(InvalidArgument, match="is FINISHED; metrics and params can only be logged"):
        store.log_batch(run_id, metrics=[Metric("m", 1.0, 1)])
    with pytest.raises(InvalidArgument, match="is FINISHED"):
        store.log_batch(run_id, params={"p": "1"})
    store.log_batch(run_id, tags={"note": "tags may still be set on a finished run"})
    other = _run(store)
    store.delete_run(other)
    with pytest.raises(InvalidArgument, match="is deleted; restore it before logging"):
        store.log_batch(other, tags={"a": "b"})
    store.restore_run(other)
    store.log_batch(other, tags={"a": "b"})
    assert store.get_run(other).tags == {"a": "b"}
    with pytest.raises(NotFound, match="does not exist"):
        store.log_batch("0" * 32, tags={"a": "b"})


def test_log_batch_of_10000_metrics_is_fast(store: TrackingStore) -> None:
    run_id = _run(store)
    points = [Metric("loss", i / 7, 1_000_000 + i, i) for i in range(10_000)]
    started = time.perf_counter()
    store.log_batch(run_id, metrics=points)
    elapsed = time.perf_counter() - started
    assert len(store.metric_history(run_id, "loss")) == 10_000
    assert store.get_run(run_id).metrics["loss"].step == 9999
    # ~0.1 s on a laptop; the bound leaves room for a loaded 2-core CI machine
    assert elapsed < 1.5, f"log_batch of 10,000 metrics took {elapsed:.2f} s"


def test_run_prefix_resolution(store: TrackingStore) -> None:
    run_id = _run(store)
    assert store.resolve_run_prefix(run_id[:6]) == run_id
    assert store.resolve_run_prefix(run_id.upper()) == run_id
    with pytest.raises(InvalidArgument, match="at least 6 of its hex digits"):
        store.resolve_run_prefix(run_id[:5])
    with pytest.raises(InvalidArgument, match="at least 6"):
        store.resolve_run_prefix("zzzzzzzz")
    missing = "0123456" if not run_id.startswith("0123456") else "fedcba9"
    with pytest.raises(NotFound, match=f"no run id starts with '{missing}'"):
        store.resolve_run_prefix(missing)


def test_run_prefix_ambiguity(store: TrackingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    ids = iter([uuid.UUID("abcdef00" + "0" * 24), uuid.UUID("abcdef11" + "0" * 24)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(ids))
    _run(store)
    _run(store)
    with pytest.raises(InvalidArgument, match="'abcdef' is ambiguous"):
        store.resolve_run_prefix("abcdef")
    assert store.resolve_run_prefix("abcdef1") == "abcdef11" + "0" * 24


def test_nested_runs_record_parent_in_lineage(store: TrackingStore, home: DataRepos) -> None:
    parent = _run(store)
    child = store.create_run(store.experiment().id, parent_id=parent)
    assert child.parent_id == parent
    edges = LineageGraph(home.db).direct(run_node(child.id))
    assert [(e.source, e.relation) for e in edges] == [(run_node(parent), "parent_of")]
    with pytest.raises(NotFound, match="parent run"):
        store.create_run(store.experiment().id, parent_id="1" * 32)


def test_finish_run_logs_and_ends_in_one_transaction(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, params={"C": "1"})
    with pytest.raises(InvalidArgument, match="params are immutable"):
        store.finish_run(run_id, "FINISHED", metrics=[Metric("m", 1.0, 1)], params={"C": "2"})
    refused = store.get_run(run_id)
    assert (refused.info.status, refused.info.end_time, refused.metrics) == ("RUNNING", None, {})
    store.finish_run(run_id, "KILLED", metrics=[Metric("m", 1.0, 1)], tags={"t": "x"})
    done = store.get_run(run_id)
    assert done.info.status == "KILLED"
    assert done.info.end_time is not None
    assert done.metrics["m"].value == 1.0
    assert done.tags == {"t": "x"}
    with pytest.raises(InvalidArgument, match="status must be one of"):
        store.finish_run(run_id, "OK")


def test_import_runs_in_bulk(store: TrackingStore) -> None:
    from threadline.tracking.model import Run, RunInfo

    exp = store.experiment("imported")
    runs = [
        Run(RunInfo("", 0, None, f"r{i}", "FINISHED", "active", "ann", 1000 + i, 2000 + i, None,
                    {"k": i}),
            {"C": str(i)}, {"auc": Metric("auc", i / 10, 5, 3), "nan": Metric("nan", math.nan, 5)},
            {"team": "ml"})
        for i in range(10)
    ]
    ids = store.import_runs(exp.id, runs)
    assert len(set(ids)) == 10
    assert all(len(i) == 32 for i in ids)
    got = store.get_run(ids[4])
    assert (got.info.name, got.info.experiment_id, got.info.status, got.info.start_time) == (
        "r4", exp.id, "FINISHED", 1004)
    assert got.params == {"C": "4"}
    assert got.metrics["auc"] == Metric("auc", 0.4, 5, 3)
    assert math.isnan(got.metrics["nan"].value)
    assert got.tags == {"team": "ml"}
    assert got.info.source == {"k": 4}
    assert len(store.metric_history(ids[4], "auc")) == 1
    found, _ = store.search_runs([exp.id], "metrics.auc >= 0.7", ["metrics.auc DESC"])
    assert [r.info.name for r in found] == ["r9", "r8", "r7"]
    bad = [Run(RunInfo("", 0, None, "x", "DONE", "active", "u", 1, None, None, {}))]
    with pytest.raises(InvalidArgument, match="status must be one of"):
        store.import_runs(exp.id, bad)
    store.delete_experiment(exp.id)
    with pytest.raises(InvalidArgument, match="is deleted"):
        store.import_runs(exp.id, runs)
