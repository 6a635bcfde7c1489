"""The SDK: start_run as a context manager, background batching, errors, statuses, nesting."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from threadline import tracking
from threadline.errors import InvalidArgument
from threadline.tracking import active
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


@pytest.fixture
def store(home: DataRepos) -> Iterator[TrackingStore]:
    yield TrackingStore(home)
    while active._stack:  # a failing test must not leave a run active for the next one
        active._stack.pop()._ended = True


def test_100k_metric_calls_then_flush_are_all_stored_in_order(store: TrackingStore) -> None:
    with tracking.start_run("big", store=store) as run:
        for i in range(100_000):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        run.log_metric("count", 1)
        run.log_metric("count", 2)
        run.log_metric("count", 3)
        run.flush()
        history = store.metric_history(run.id, "loss")
        assert len(history) == 100_000
        assert [p.step for p in history] == list(range(100_000))
        assert history[-1].value == 1.0 / 100_000
        # same step and (probably) the same millisecond: logging order decides
        assert [p.value for p in store.metric_history(run.id, "count")] == [1.0, 2.0, 3.0]
        assert store.get_run(run.id).metrics["count"].value == 3.0
        assert run.info.status == "RUNNING"
    assert store.get_run(run.id).info.status == "FINISHED"
    assert run.info.status == "FINISHED"  # re-read after the end
    assert run.info.end_time is not None


def test_logging_does_not_wait_for_the_database(store: TrackingStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Event()
    real = store.log_batch

    def slow(*args: object, **kwargs: object) -> None:
        entered.set()
        assert release.wait(30)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "log_batch", slow)
    with tracking.start_run(store=store) as run:
        run.log_metric("a", 1.0)
        assert entered.wait(30)  # the writer holds the first batch and is blocked
        for i in range(5000):  # ...yet the caller goes on logging
            run.log_metric("a", float(i), step=i)
        run.log_params({"p": 1})
        assert store.get_run(run.id).metrics == {}
        release.set()
        run.flush()
        assert len(store.metric_history(run.id, "a")) == 5001
        assert store.get_run(run.id).params == {"p": "1"}


def test_background_error_surfaces_in_the_caller(store: TrackingStore) -> None:
    with tracking.start_run(store=store) as run:
        run.log_param("C", "1.0")
        run.flush()
        # another writer of the same run (e.g. another process) fixed a different value
        store.log_batch(run.id, params={"lr": "0.1"})
        run.log_params({"lr": 0.5, "other": "ok"})
        run.log_metric("m", 1.0)
        with pytest.raises(InvalidArgument, match=r"param 'lr' .* is '0\.1' already and cannot become"):
            run.flush()
        run.flush()  # the error is raised once
        # the rest of the failed batch was still written
        stored = store.get_run(run.id)
        assert stored.params == {"C": "1.0", "lr": "0.1", "other": "ok"}
        assert stored.metrics["m"].value == 1.0
        # a conflict this process can see is raised at the call, before queueing
        with pytest.raises(InvalidArgument, match=r"param 'C' of run .* is '1\.0' already"):
            run.log_param("C", "2.0")


def test_background_error_raised_on_the_next_log_call_and_at_end(store: TrackingStore) -> None:
    run = tracking.start_run(store=store)
    store.log_batch(run.id, params={"x": "1"})
    run.log_param("x", "2")
    writer = run._writer
    with writer._cond:  # wait until the writer has met the conflict (without flush, which raises)
        while writer._done < writer._queued:
            writer._cond.wait()
    with pytest.raises(InvalidArgument, match="param 'x'"):
        run.log_metric("m", 1.0)
    run.log_metric("m", 2.0)  # raised once; the run goes on
    other = tracking.start_run(store=store, nested=True)
    store.log_batch(other.id, params={"y": "1"})
    other.log_param("y", "2")
    with pytest.raises(InvalidArgument, match="param 'y'"):
        other.end()
    assert store.get_run(other.id).info.status == "FAILED"
    run.end()
    assert store.get_run(run.id).info.status == "FINISHED"


def test_exception_in_with_block_marks_failed_and_ctrl_c_killed(store: TrackingStore) -> None:
    def fail(run: tracking.ActiveRun) -> None:
        run.log_metric("before", 1.0)
        _ = 1 / 0

    with pytest.raises(ZeroDivisionError), tracking.start_run(store=store) as run:
        fail(run)
    assert store.get_run(run.id).info.status == "FAILED"
    assert store.get_run(run.id).metrics["before"].value == 1.0  # logged before the failure: kept
    with pytest.raises(KeyboardInterrupt), tracking.start_run(store=store) as run2:
        raise KeyboardInterrupt
    assert store.get_run(run2.id).info.status == "KILLED"
    assert tracking.active_run() is None


def test_nested_runs_and_module_level_calls(store: TrackingStore) -> None:
    with tracking.start_run("parent", store=store) as parent:
        with pytest.raises(InvalidArgument, match="is already active; end it first, or pass nested=True"):
            tracking.start_run(store=store)
        with tracking.start_run("child", nested=True, store=store) as child:
            assert tracking.active_run() is child
            tracking.log_metric("m", 2.0)
            tracking.log_param("p", "v")
            tracking.set_tag("t", "x")
            tracking.log_metrics({"a": 1.0, "b": 2.0}, step=3)
        assert tracking.active_run() is parent
        tracking.log_params({"q": 1})
        tracking.set_tags({"u": "y"})
    assert tracking.active_run() is None
    with pytest.raises(InvalidArgument, match="no active run"):
        tracking.log_metric("m", 1.0)
    got = store.get_run(child.id)
    assert got.info.parent_id == parent.id
    assert got.params == {"p": "v"}
    assert {k: m.value for k, m in got.metrics.items()} == {"a": 1.0, "b": 2.0, "m": 2.0}
    assert got.metrics["a"].step == 3
    assert got.tags["t"] == "x"
    assert store.get_run(parent.id).params == {"q": "1"}
    assert store.get_run(parent.id).tags["u"] == "y"
    with pytest.raises(InvalidArgument, match="has ended; start a new run"):
        child.log_metric("late", 1.0)


def test_start_records_source_inputs_and_artifacts(store: TrackingStore, home: DataRepos,
                                                   make_tree: MakeTree) -> None:
    home.create("churn-splits")
    commit = home.commit("churn-splits", [make_tree("s", {"train/a.csv": b"x\n1\n"})], "v1").commit
    with tracking.start_run("train", inputs=["churn-splits@main:train"], experiment="churn",
                            tags={"team": "ml"}, store=store) as run:
        run.log_artifact(make_tree("m", {"model.bin": b"m"}) / "model.bin", "model")
    got = store.get_run(run.id)
    assert got.inputs == [{"repo": "churn-splits", "commit": commit.id, "ref": "churn-splits@main:train"}]
    assert store.get_experiment(got.info.experiment_id).name == "churn"
    assert got.tags["team"] == "ml"
    assert "mlflow.user" in got.tags
    assert set(got.info.source) >= {"code", "environment", "entry_point"}
    assert got.info.source["environment"]["python"].count(".") == 2
    assert store.read_artifact(run.id, "model/model.bin") == b"m"
    with pytest.raises(InvalidArgument, match="is reserved for Threadline"), \
            tracking.start_run(store=store) as bad:
        bad.set_tag("threadline.inputs", "[]")
    with pytest.raises(Exception, match="does not exist"):
        tracking.start_run(inputs=["nope@main"], store=store)
    assert tracking.active_run() is None


def test_atexit_hook_flushes_and_finishes_open_runs(store: TrackingStore) -> None:
    outer = tracking.start_run(store=store)
    inner = tracking.start_run(nested=True, store=store)
    inner.log_metric("m", 1.0)
    active._end_open_runs()
    assert tracking.active_run() is None
    assert store.get_run(inner.id).info.status == "FINISHED"
    assert store.get_run(inner.id).metrics["m"].value == 1.0
    assert store.get_run(outer.id).info.status == "FINISHED"


def test_start_run_with_home_uses_the_shared_connection(home: DataRepos, tmp_path: Path) -> None:
    with tracking.start_run("h", home=tmp_path / ".threadline") as run:
        run.log_metric("m", 1.0)
    assert TrackingStore(home).get_run(run.id).metrics["m"].value == 1.0
