"""The data repository on a real PostgreSQL server: migrations, commits, compare-and-swap,
lineage closures, rollback and gc all work on the engine a shared deployment uses.

The server is started by the test (initdb on loopback). Where PostgreSQL is not installed the
tests are skipped with that reason, except in CI, which installs it and must run them.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from itertools import count
from typing import TYPE_CHECKING

import needs
import pytest

from threadline.config import init_home, settings_for
from threadline.data import connect
from threadline.data.checkout import checkout
from threadline.data.maintenance import gc
from threadline.data.repos import commit_node
from threadline.data.verify import verify
from threadline.errors import AlreadyExists, Conflict, NotFound
from threadline.lineage import LineageGraph

from .postgres import PostgresServer, find_bin

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from threadline.data.repos import DataRepos

_names = count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = find_bin()
    if bin_dir is None:
        needs.missing("PostgreSQL", "apt-get install postgresql")
    needs.module("psycopg", "pip install 'threadline[postgres]'")
    server = PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_home(postgres: PostgresServer, tmp_path: Path) -> Iterator[DataRepos]:
    url = postgres.create_database(f"tl{next(_names)}")
    init_home(tmp_path)
    settings = settings_for(tmp_path / ".threadline", env={"THREADLINE_DATABASE_URL": url})
    repos = connect(settings)
    yield repos
    repos.close()


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_walkthrough_on_postgres(pg_home: DataRepos, tmp_path: Path) -> None:
    repos = pg_home
    assert repos.db.engine.dialect.name == "postgresql"
    repos.create("sales")
    one = repos.commit("sales", [_tree(tmp_path / "v1", {"x.csv": b"a\n1\n"})], "one").commit
    two = repos.commit("sales", [_tree(tmp_path / "v2", {"x.csv": b"a\n1\n2\n"})], "two").commit
    assert [c.id for c in repos.log("sales")] == [two.id, one.id]
    assert repos.resolve(f"sales@{two.id[:8]}").require_commit() == two
    assert repos.manifest(two).get("x.csv").rows == 2  # type: ignore[union-attr]

    graph = LineageGraph(repos.db)
    assert graph.closure(commit_node(two.id), "up") == {commit_node(one.id)}
    assert graph.closure(commit_node(one.id), "down") == {commit_node(two.id)}

    repos.tag("sales", "v1", f"sales@{one.id}")
    with pytest.raises(AlreadyExists, match="already has a tag named 'v1'"):
        repos.branch("sales", "v1")
    repos.rollback("sales@main", "sales@v1")
    assert repos.resolve("sales").require_commit().id == one.id
    repos.undo("sales@main")
    assert repos.resolve("sales").require_commit().id == two.id
    checkout(repos, "sales@v1", tmp_path / "out")
    assert (tmp_path / "out" / "x.csv").read_bytes() == b"a\n1\n"
    assert verify(repos).ok

    repos.delete("sales")
    plan = gc(repos, dry_run=False, grace_seconds=0)
    assert plan.objects_removed > 0
    assert verify(repos).ok


def test_compare_and_swap_conflict_on_postgres(pg_home: DataRepos, tmp_path: Path) -> None:
    repos = pg_home
    repos.create("r")
    base = repos.commit("r", [_tree(tmp_path / "a", {"f": b"1"})], "base").commit
    target = repos.resolve("r")
    winner = repos.commit("r", [_tree(tmp_path / "b", {"f": b"2"})], "winner").commit
    # A writer that read the head before the winner moved it loses the compare-and-swap, and
    # its whole transaction (commit record, lineage) is rolled back.
    stale = replace(winner, id="f" * 64, parents=[base.id], message="stale")
    with pytest.raises(Conflict, match=rf"branch r@main moved to {winner.id[:12]} .*expected "
                                       rf"{base.id[:12]}"):
        repos._publish(target.repo, "main", base.id, stale, None)
    assert repos.resolve("r").require_commit().id == winner.id
    with pytest.raises(NotFound, match="no branch, tag or commit 'ffffffff'"):
        repos.resolve("r@ffffffff")


def test_tracking_and_registry_on_postgres(pg_home: DataRepos) -> None:
    """Batches, the latest-metric upsert, filtered and ordered search, aliases: on PostgreSQL."""
    from sklearn.linear_model import LogisticRegression

    from threadline.registry import ModelRegistry
    from threadline.tracking import Metric, TrackingStore

    store = TrackingStore(pg_home)
    experiment = store.experiment("pg")
    runs = []
    for i in range(5):
        run = store.create_run(experiment.id, name=f"r{i}")
        store.log_batch(run.id, params={"C": str(i)},
                        metrics=[Metric("auc", 0.5 + i / 10, 1000 + s, s) for s in range(3)])
        store.log_batch(run.id, metrics=[Metric("auc", 0.1, 999, 0)])  # an older step: not latest
        runs.append(run.id)
    found, token = store.search_runs([experiment.id], "metrics.auc > 0.65 and params.C != '4'",
                                     order_by=["metrics.auc DESC"], max_results=10)
    assert token is None
    assert [r.info.name for r in found] == ["r3", "r2"]
    assert found[0].metrics["auc"].value == 0.5 + 3 / 10

    import numpy as np

    features = np.random.default_rng(0).normal(size=(40, 2))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    registry = ModelRegistry(pg_home, tracking=store)
    first = registry.register("churn", model, run_id=runs[0], example=features[:3])
    second = registry.register("churn", model, run_id=runs[1], example=features[:3])
    registry.set_alias("churn", "production", first.version)
    registry.set_alias("churn", "production", second.version)
    registry.rollback("churn", "production")
    assert registry.get_version("churn", "production").version == first.version


PG_STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def measure(raw=Input("pgraw@main", datums="file"), out=Output()):
    for f in raw.rglob("*.txt"):
        (out / "size").write_text(str(len(f.read_bytes())))

pipe = Pipeline("pgpipe", steps=[measure])
'''


def test_an_incremental_pipeline_on_postgres(
    pg_home: DataRepos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from threadline.pipelines.engine import run_pipeline

    repos = pg_home
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pg_steps.py").write_text(PG_STEPS)
    monkeypatch.syspath_prepend(str(project))
    spec = importlib.import_module("pg_steps").pipe.spec()
    settings = settings_for(tmp_path / ".threadline", env={"THREADLINE_DATABASE_URL": str(repos.db.url)})
    files = {f"f{i}.txt": b"x" * (i + 1) for i in range(5)}
    repos.create("pgraw")

    def run(new: dict[str, bytes]) -> tuple[str, int, int]:
        files.update(new)
        repos.commit("pgraw", [_tree(tmp_path / f"raw{len(files)}", files)], "raw", allow_empty=True)
        step = run_pipeline(spec, settings, repos, workers=1).steps["measure"]
        return step.status, step.processed, step.skipped

    assert run({}) == ("succeeded", 5, 0)
    assert run({"f5.txt": b"new"}) == ("succeeded", 1, 5)  # the datum keys come from the cache entry
    repos.delete("pgpipe-measure")  # the cached output is gone: the same key runs again
    assert run({}) == ("succeeded", 6, 0)
    assert run({}) == ("cached", 0, 6)  # the entry was updated in place to the new output
    assert repos.manifest(repos.resolve("pgpipe-measure@main").require_commit()).get("f5.txt/size")
    sys.modules.pop("pg_steps", None)
