"""The prediction log: buffered on the request path, committed as versioned data, never lost
to a concurrent writer, never raising into the server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.data.repos import DataRepos, commit_node
from threadline.errors import InvalidArgument, NotFound, StorageError
from threadline.lineage.graph import LineageGraph
from threadline.registry.versions import version_node
from threadline.serving.inputs import Inputs
from threadline.serving.predlog import LogEntry, PredictionLog, log_repo, read_log, sampled

if TYPE_CHECKING:
    from collections.abc import Iterator

T0 = 1_780_000_000_000  # a fixed epoch-ms stamp


def entry(request_id: str, rows: int = 1, *, ts: int = T0, version: int = 3, **kw: Any) -> LogEntry:
    """A request of `rows` table rows (`age`, `plan`) answered by churn@`version`."""
    inputs = Inputs.table({"age": [30 + i for i in range(rows)], "plan": ["pro"] * rows})
    fields: dict[str, Any] = {
        "deployment": "churn", "route": "main", "model": "churn", "version": version,
        "mode": "primary", "latency_ms": 1.5, "status": 200, "inputs": inputs,
        "outputs": np.arange(rows) % 2,
    }
    fields.update(kw)
    return LogEntry(request_id, ts, **fields)


@pytest.fixture
def plog(home: DataRepos) -> Iterator[PredictionLog]:
    """A log with no background thread: only `flush()` commits."""
    log = PredictionLog(home, "churn", background=False)
    yield log
    log.close()


def test_rows_appear_after_flush_with_their_values(home: DataRepos, plog: PredictionLog) -> None:
    plog.record(entry("r1", rows=2))
    plog.record(entry("r2", ts=T0 + 5, mode="canary", version=4, outputs=[1]))
    assert read_log_or_empty(home) == 0  # nothing is written on the request path

    assert plog.flush() == 3
    table = read_log(home, "churn")
    assert table.column("request_id").to_pylist() == ["r1", "r1", "r2"]
    assert table.column("row").to_pylist() == [0, 1, 0]
    assert table.column("in.age").to_pylist() == [30, 31, 30]
    assert table.column("in.plan").to_pylist() == ["pro", "pro", "pro"]
    assert table.column("prediction").to_pylist() == [0, 1, 1]
    assert table.column("version").to_pylist() == [3, 3, 4]
    assert table.column("mode").to_pylist() == ["primary", "primary", "canary"]
    assert table.column("ts").to_pylist() == [T0, T0, T0 + 5]
    assert table.column("status").to_pylist() == [200, 200, 200]
    assert (plog.logged_rows, plog.commits, plog.dropped_rows) == (3, 1, 0)

    head = home.resolve(f"{log_repo('churn')}@main").require_commit()
    assert "3 predictions of churn" in head.message
    assert head.metadata["versions"] == ["churn/3", "churn/4"]
    assert head.metadata["deployment"] == "churn"
    (path,) = [e.path for e in home.manifest(head)]
    assert path.startswith("log/2026-05-28/")
    assert path.endswith(".parquet")
    served = {(e.source, e.relation) for e in LineageGraph(home.db).direct(commit_node(head.id))}
    assert (version_node("churn", 3), "served") in served
    assert (version_node("churn", 4), "served") in served


def read_log_or_empty(home: DataRepos) -> int:
    try:
        return int(read_log(home, "churn").num_rows)
    except NotFound:
        return 0


def test_each_flush_adds_a_file_and_keeps_the_others(home: DataRepos, plog: PredictionLog) -> None:
    plog.record(entry("a"))
    plog.flush()
    plog.record(entry("b", ts=T0 + 86_400_000))  # the next day
    plog.flush()
    head = home.resolve(f"{log_repo('churn')}@main").require_commit()
    days = sorted(e.path.split("/")[1] for e in home.manifest(head))
    assert days == ["2026-05-28", "2026-05-29"]
    assert read_log(home, "churn").column("request_id").to_pylist() == ["a", "b"]
    assert read_log(home, "churn", since_ms=T0 + 1).column("request_id").to_pylist() == ["b"]
    assert read_log(home, "churn", until_ms=T0 + 1).column("request_id").to_pylist() == ["a"]
    assert plog.flush() == 0  # nothing buffered: no empty commit
    assert plog.commits == 2


def test_tensor_inputs_errors_and_vector_outputs(home: DataRepos, plog: PredictionLog) -> None:
    plog.record(entry("t", inputs=Inputs.array(np.array([[1.0, 2.0], [3.0, 4.0]])),
                      outputs=np.array([[0.1, 0.9], [0.8, 0.2]])))
    plog.record(entry("e", outputs=None, status=500, error="model raised ValueError"))
    assert plog.flush() == 3
    table = read_log(home, "churn")
    assert [json.loads(v) if v else None for v in table.column("in.tensor").to_pylist()] == [
        [1.0, 2.0], [3.0, 4.0], None]
    assert table.column("prediction").to_pylist() == [[0.1, 0.9], [0.8, 0.2], None]
    assert table.column("error").to_pylist() == [None, None, "model raised ValueError"]
    assert table.column("in.age").to_pylist() == [None, None, 30]


def test_record_never_raises_and_bad_entries_are_dropped_and_counted(
    home: DataRepos, plog: PredictionLog
) -> None:
    plog.record(None)  # type: ignore[arg-type]
    plog.record(object())  # type: ignore[arg-type]
    plog.record(entry("short", rows=2, outputs=[1]))  # one prediction for two rows
    plog.record(entry("odd", version="not a number"))  # type: ignore[arg-type]
    plog.record(entry("good"))
    assert plog.flush() == 1
    assert read_log(home, "churn").column("request_id").to_pylist() == ["good"]
    assert plog.dropped_rows == 1 + 1 + 2 + 1
    assert plog.failures == 0


def test_the_buffer_bound_drops_and_counts_without_blocking(plog: PredictionLog, home: DataRepos) -> None:
    bounded = PredictionLog(home, "bounded", flush_rows=4, max_buffer_rows=5, background=False)
    for i in range(4):
        bounded.record(entry(f"r{i}"))
    bounded.record(entry("two", rows=2))  # 4 + 2 > 5: dropped whole
    bounded.record(entry("r4"))
    bounded.record(entry("r5"))
    assert (bounded.buffered_rows, bounded.dropped_rows) == (5, 3)
    bounded.close()
    assert bounded.logged_rows == 5
    bounded.record(entry("late"))  # after close: counted, not kept
    assert bounded.dropped_rows == 4
    bounded.close()  # idempotent


def test_a_failed_flush_keeps_the_rows_for_the_next_try(
    home: DataRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    plog = PredictionLog(home, "churn", flush_rows=2, max_buffer_rows=3, background=False)
    original = DataRepos.commit

    def full_disk(self: DataRepos, *args: Any, **kwargs: Any) -> Any:
        raise StorageError("no space left on device", path="objects")

    plog.record(entry("a"))
    plog.record(entry("b"))
    monkeypatch.setattr(DataRepos, "commit", full_disk)
    assert plog.flush() == 0
    assert plog.failures == 1
    assert "no space left" in str(plog.last_error)
    assert plog.buffered_rows == 2
    plog.record(entry("c"))
    plog.record(entry("d"))  # 3 buffered already: dropped
    assert plog.flush() == 0  # fails again; the bound holds
    assert (plog.buffered_rows, plog.dropped_rows) == (3, 1)
    monkeypatch.setattr(DataRepos, "commit", original)
    assert plog.flush() == 3
    assert read_log(home, "churn").column("request_id").to_pylist() == ["a", "b", "c"]
    plog.close()


def test_a_lost_compare_and_swap_is_retried_on_the_new_head(
    home: DataRepos, plog: PredictionLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # another writer commits between our read of the head and our pointer move
    other = PredictionLog(home, "churn", background=False)
    other.record(entry("theirs"))
    other.flush()
    original = DataRepos._publish

    def interleaved(self: DataRepos, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(DataRepos, "_publish", original)
        other.record(entry("theirs-2"))
        assert other.flush() == 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DataRepos, "_publish", interleaved)
    plog.record(entry("ours"))
    assert plog.flush() == 1
    assert plog.conflicts == 1
    ids = sorted(read_log(home, "churn").column("request_id").to_pylist())
    assert ids == ["ours", "theirs", "theirs-2"]
    other.close()


CHILD = r"""
import json, sys
from threadline.config import load_settings
from threadline.data import connect
from threadline.serving.inputs import Inputs
from threadline.serving.predlog import LogEntry, PredictionLog

name, batches = sys.argv[1], int(sys.argv[2])
repos = connect(load_settings())
log = PredictionLog(repos, "shared", background=False)
if sys.stdin.readline() != "go\n":
    raise SystemExit("no go")
for b in range(batches):
    for i in range(3):
        log.record(LogEntry(f"{name}-{b}-{i}", 1_780_000_000_000 + b, "shared", "main", "m", 1,
                            "primary", 1.0, 200, Inputs.table({"x": [b, i]}), [0, 1]))
    log.flush()
log.close()
print(json.dumps({"logged": log.logged_rows, "commits": log.commits, "conflicts": log.conflicts,
                  "failures": log.failures, "error": log.last_error}))
"""


def test_two_processes_logging_at_once_lose_no_batch(home: DataRepos) -> None:
    batches = 8
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, name, str(batches)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in ("p1", "p2")]
    reports = []
    for proc in procs:  # both wait for "go": they commit at the same time
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    for report in reports:
        assert report["failures"] == 0, report["error"]
        assert (report["logged"], report["commits"]) == (batches * 6, batches)
    table = read_log(home, "shared")
    assert table.num_rows == 2 * batches * 6
    ids = set(table.column("request_id").to_pylist())
    assert ids == {f"{p}-{b}-{i}" for p in ("p1", "p2") for b in range(batches) for i in range(3)}
    head = home.resolve(f"{log_repo('shared')}@main").require_commit()
    assert len(home.manifest(head)) == 2 * batches


def test_sampling_keeps_a_stable_fraction_by_request_id(home: DataRepos) -> None:
    plog = PredictionLog(home, "sampled", sample=0.25, flush_rows=10_000, background=False)
    for i in range(4000):
        plog.record(entry(f"req-{i}"))
    kept = plog.buffered_rows
    assert 0.25 * 4000 * 0.85 < kept < 0.25 * 4000 * 1.15
    assert kept == sum(sampled(f"req-{i}", 0.25) for i in range(4000))  # the same ids every time
    plog.close()
    assert read_log(home, "sampled").num_rows == kept


def test_the_background_thread_flushes_when_enough_rows_are_buffered(home: DataRepos) -> None:
    plog = PredictionLog(home, "churn", flush_rows=3, flush_seconds=3600)
    for i in range(3):
        plog.record(entry(f"r{i}"))
    assert plog.wait_for_commits(1, timeout=60)
    assert read_log(home, "churn").num_rows == 3
    plog.close()


def test_the_background_thread_flushes_on_its_timer(home: DataRepos) -> None:
    plog = PredictionLog(home, "churn", flush_rows=1000, flush_seconds=0.05)
    plog.record(entry("r"))
    assert plog.wait_for_commits(1, timeout=60)
    plog.close()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sample": 0}, "fraction of requests"),
    ({"sample": 1.5}, "fraction of requests"),
    ({"flush_rows": 0}, "flush_rows"),
    ({"flush_seconds": 0}, "flush_seconds"),
    ({"max_buffer_rows": 5, "flush_rows": 10}, "max_buffer_rows"),
])
def test_bad_settings_are_refused(home: DataRepos, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        PredictionLog(home, "churn", background=False, **kwargs)


def test_a_deployment_name_that_cannot_name_a_repo_is_refused(home: DataRepos) -> None:
    with pytest.raises(InvalidArgument, match="prediction-log repo name"):
        PredictionLog(home, "bad/name", background=False)


def test_reading_a_deployment_that_never_logged_says_so(home: DataRepos) -> None:
    with pytest.raises(NotFound, match="created by the first flush"):
        read_log(home, "nobody")


def test_the_background_thread_survives_a_failed_flush(
    home: DataRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = DataRepos.commit
    failed = threading.Event()

    def broken(self: DataRepos, *args: Any, **kwargs: Any) -> Any:
        failed.set()
        raise StorageError("I/O error", path="objects")

    monkeypatch.setattr(DataRepos, "commit", broken)
    plog = PredictionLog(home, "churn", flush_rows=1, flush_seconds=0.05)
    plog.record(entry("a"))
    assert failed.wait(timeout=60)
    monkeypatch.setattr(DataRepos, "commit", original)
    plog.record(entry("b", inputs=Inputs.table({"other": ["x"]})))  # another schema than `a`
    assert plog.wait_for_commits(1, timeout=60)
    plog.close()
    table = read_log(home, "churn")
    assert sorted(table.column("request_id").to_pylist()) == ["a", "b"]
    assert plog.failures >= 1
    assert plog.dropped_rows == 0


def test_files_of_different_columns_read_back_as_one_table(home: DataRepos, plog: PredictionLog) -> None:
    plog.record(entry("table"))
    plog.flush()
    plog.record(entry("tensor", inputs=Inputs.array(np.array([[1.5, 2.5]])), outputs=[0.5]))
    plog.flush()
    plog.record(entry("failed", outputs=None, error="boom", status=500))
    plog.flush()
    table = read_log(home, "churn")
    assert table.column("request_id").to_pylist() == ["table", "tensor", "failed"]
    assert table.column("in.age").to_pylist() == [30, None, 30]
    assert table.column("in.tensor").to_pylist() == [None, "[1.5,2.5]", None]
    assert table.column("prediction").to_pylist() == [0, 0.5, None]
