"""The dedupe step on a data repo: kept rows, removed rows kept for audit, report, lineage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from threadline.data.repos import commit_node
from threadline.data.tables import open_file, read_table
from threadline.errors import InvalidArgument
from threadline.lineage import LineageGraph
from threadline.prep.dedupe import DedupeSpec
from threadline.prep.ops import META_DIR
from threadline.prep.steps import dedupe

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]

ORDERS = b"""id,customer,ts,note
1,a,2025-01-01,first order
2,b,2025-01-02,second order
1,a,2025-01-01,first order
3,a,2025-01-05,a later order
4,c,2025-01-03,third order
2,b,2025-01-02,second order
"""


@pytest.fixture
def orders(home: DataRepos, make_tree: MakeTree) -> str:
    home.create("raw")
    home.create("clean")
    home.commit("raw", [make_tree("src", {"orders.csv": ORDERS})], "raw")
    return "raw:orders.csv"


def test_exact_duplicates_removed_and_kept_for_audit(home: DataRepos, orders: str) -> None:
    result = dedupe(home, orders, "clean", DedupeSpec(), keep_removed=True)
    assert result.report == {"rows_in": 6, "rows_kept": 4, "removed": {"exact": 2}}
    kept = read_table(home, "clean:orders.parquet")
    assert kept.column("id").to_pylist() == [1, 2, 3, 4]
    removed = read_table(home, f"clean:{META_DIR}/removed.parquet")
    assert removed.column("id").to_pylist() == [1, 2]
    with open_file(home, f"clean:{META_DIR}/dedupe.json") as fh:
        doc = json.load(fh)
    assert len(doc["examples"]["exact"]) == 2
    with open_file(home, f"clean:{META_DIR}/profile.json") as fh:
        assert json.load(fh)["rows"] == 4
    up = LineageGraph(home.db).edges(commit_node(result.commit.id), "up")
    assert [e.relation for e in up] == ["prep.dedupe"]


def test_latest_by_key(home: DataRepos, orders: str) -> None:
    result = dedupe(home, orders, "clean", DedupeSpec(keys=("customer",), keep="latest:ts"))
    kept = read_table(home, "clean:orders.parquet")
    assert sorted(zip(kept.column("customer").to_pylist(), kept.column("id").to_pylist())) == [
        ("a", 3), ("b", 2), ("c", 4)]
    assert result.report["removed"] == {"keys": 3}
    assert home.manifest(result.commit).get(f"{META_DIR}/removed.parquet") is None


def test_unknown_column_commits_nothing(home: DataRepos, orders: str) -> None:
    with pytest.raises(InvalidArgument, match="nope"):
        dedupe(home, orders, "clean", DedupeSpec(keys=("nope",)))
    assert home.resolve("clean").commit is None
