"""search_runs on a small known set: filters, ordering, views, pagination, the query plan."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from threadline.errors import InvalidArgument
from threadline.tracking.filters import parse_filter, parse_order_by
from threadline.tracking.model import Metric
from threadline.tracking.search import build_query
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

#: name -> (auc, C, model, team tag, status, start_time)
RUNS = {
    "a": (0.95, "1.0", "lr", "ml", "FINISHED", 1000),
    "b": (0.80, "0.1", "lr", "ml", "FINISHED", 2000),
    "c": (0.91, "1.0", "gbm", "ML", "FAILED", 3000),
    "d": (math.nan, "10", "gbm", "ops", "FINISHED", 4000),
    "e": (None, "1.0", "svm", None, "RUNNING", 5000),
}


@pytest.fixture
def seeded(home: DataRepos) -> tuple[TrackingStore, int, dict[str, str]]:
    store = TrackingStore(home)
    exp = store.experiment("search")
    ids = {}
    for name, (auc, c, model, team, status, start) in RUNS.items():
        run_id = store.create_run(exp.id, name=f"run-{name}", start_time=start).id
        metrics = [Metric("auc", auc, start)] if auc is not None else []
        tags = {"team": team} if team else {}
        store.log_batch(run_id, metrics=metrics, params={"C": c, "model": model}, tags=tags)
        store.update_run(run_id, status=status)
        ids[name] = run_id
    return store, exp.id, ids


def _names(store: TrackingStore, exp: int, filter_string: str = "", order: list[str] | None = None,
           **kwargs: object) -> list[str]:
    runs, _ = store.search_runs([exp], filter_string, order or [], **kwargs)  # type: ignore[arg-type]
    return [r.info.name.removeprefix("run-") for r in runs]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("", ["e", "d", "c", "b", "a"]),
        ("metrics.auc > 0.9", ["c", "a"]),
        ("metrics.auc >= 0.8 and metrics.auc < 0.92", ["c", "b"]),
        ("metrics.auc != 0.95", ["c", "b"]),  # NaN (d) and missing (e) never match
        ("params.C = '1.0'", ["e", "c", "a"]),
        ("params.C != '1.0'", ["d", "b"]),
        ("params.model IN ('gbm', 'svm')", ["e", "d", "c"]),
        ("params.model NOT IN ('gbm', 'svm')", ["b", "a"]),
        ("metrics.auc > 0.9 and params.C = '1.0'", ["c", "a"]),
        ("tags.team = 'ml'", ["b", "a"]),
        ("tags.team LIKE 'm%'", ["b", "a"]),  # LIKE is case-sensitive
        ("tags.team ILIKE 'm%'", ["c", "b", "a"]),
        ("tags.team != 'ml'", ["d", "c"]),  # runs without the tag do not match
        ("attributes.status = 'FINISHED'", ["d", "b", "a"]),
        ("status IN ('FAILED', 'RUNNING')", ["e", "c"]),
        ("attribute.run_name LIKE 'run-_'", ["e", "d", "c", "b", "a"]),
        ("run_name ILIKE 'RUN-A'", ["a"]),
        ("attributes.start_time > 2500", ["e", "d", "c"]),
        ("params.C LIKE '1.%'", ["e", "c", "a"]),
        ("params.model = 'nope'", []),
    ],
)
def test_filters(seeded: tuple[TrackingStore, int, dict[str, str]], filter_string: str,
                 expected: list[str]) -> None:
    store, exp, _ = seeded
    assert _names(store, exp, filter_string) == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["metrics.auc DESC"], ["a", "c", "b", "e", "d"]),  # missing/NaN last, then newest first
        (["metrics.auc"], ["b", "c", "a", "e", "d"]),
        (["params.C ASC", "metrics.auc DESC"], ["b", "a", "c", "e", "d"]),
        (["attributes.start_time"], ["a", "b", "c", "d", "e"]),
        (["run_name DESC"], ["e", "d", "c", "b", "a"]),
        (["tags.team"], ["c", "b", "a", "d", "e"]),
    ],
)
def test_order(seeded: tuple[TrackingStore, int, dict[str, str]], order: list[str],
               expected: list[str]) -> None:
    store, exp, _ = seeded
    assert _names(store, exp, "", order) == expected


def test_filter_and_order_on_the_same_metric(seeded: tuple[TrackingStore, int, dict[str, str]]) -> None:
    store, exp, _ = seeded
    assert _names(store, exp, "metrics.auc > 0.5", ["metrics.auc"]) == ["b", "c", "a"]


def test_pagination_is_stable_and_complete(seeded: tuple[TrackingStore, int, dict[str, str]]) -> None:
    store, exp, _ = seeded
    pages, token = [], None
    while True:
        runs, token = store.search_runs([exp], order_by=["params.C"], max_results=2, page_token=token)
        pages.append([r.info.name[-1] for r in runs])
        if token is None:
            break
    assert pages == [["b", "e"], ["c", "a"], ["d"]]
    with pytest.raises(InvalidArgument, match="invalid page token"):
        store.search_runs([exp], page_token="garbage!")
    with pytest.raises(InvalidArgument, match="max_results must be between 1 and"):
        store.search_runs([exp], max_results=0)


def test_views_hide_deleted_runs(seeded: tuple[TrackingStore, int, dict[str, str]]) -> None:
    store, exp, ids = seeded
    store.delete_run(ids["a"])
    assert "a" not in _names(store, exp)
    assert _names(store, exp, view="deleted") == ["a"]
    assert len(_names(store, exp, view="all")) == 5
    with pytest.raises(InvalidArgument, match="view must be one of active, deleted, all"):
        store.search_runs([exp], view="gone")
    assert store.search_runs([], "metrics.auc > 0") == ([], None)


def test_results_carry_params_metrics_tags(seeded: tuple[TrackingStore, int, dict[str, str]]) -> None:
    store, exp, ids = seeded
    (run,), _ = store.search_runs([exp], "run_name = 'run-c'")
    assert run.info.id == ids["c"]
    assert run.params == {"C": "1.0", "model": "gbm"}
    assert run.metrics["auc"].value == 0.91
    assert run.tags == {"team": "ML"}
    assert run.info.status == "FAILED"


def test_filter_values_are_bound_not_spliced(seeded: tuple[TrackingStore, int, dict[str, str]]) -> None:
    store, exp, _ = seeded
    assert _names(store, exp, "params.C = '1.0'' OR 1=1 --'") == []


def test_metric_filter_uses_the_key_value_index(home: DataRepos) -> None:
    query = build_query([1], parse_filter("metrics.auc > 0.9"), parse_order_by(["metrics.auc DESC"]),
                        "active", "sqlite")
    compiled = query.compile(home.db.engine, compile_kwargs={"literal_binds": True})
    with home.db.engine.connect() as conn:
        plan = " | ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_latest_metrics_key_value" in plan, plan
