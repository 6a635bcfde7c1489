"""The ingest step on a data repo: parts per source, appends that store only new data, the
schema kept, the profile merged, and nothing committed on bad input."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from threadline.data.tables import open_file, read_table
from threadline.errors import InvalidArgument
from threadline.prep.ops import META_DIR
from threadline.prep.steps import ingest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def _parts(home: DataRepos, ref: str) -> dict[str, int | None]:
    target = home.resolve(ref)
    assert target.commit is not None
    return {e.path: e.rows for e in home.manifest(target.commit) if e.path.startswith("part-")}


def _json(home: DataRepos, ref: str) -> dict[str, object]:
    with open_file(home, ref) as fh:
        loaded: dict[str, object] = json.load(fh)
        return loaded


def test_ingest_appends_parts_and_merges_the_profile(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("raw")
    src = make_tree("exports", {"d1.csv": b"id,amount\n1,1.5\n2,2.5\n", "d2.csv": b"id,amount\n3,9.0\n"})
    first = ingest(home, "raw", sources=[str(src / "d1.csv")])
    assert first.created
    assert sorted(_parts(home, "raw").values()) == [2]
    assert first.commit.metadata["input"] is None
    assert first.commit.metadata["params"] == {"sources": [str(src / "d1.csv")], "replace": False}

    second = ingest(home, "raw", sources=[str(src)])  # the folder: d1 again plus d2
    assert sorted(_parts(home, "raw").values()) == [1, 2]
    assert second.report["table_rows"] == 3
    profile = _json(home, f"raw:{META_DIR}/profile.json")
    assert profile["rows"] == 3
    schema = _json(home, f"raw:{META_DIR}/schema.json")
    assert [f["name"] for f in schema["fields"]] == ["id", "amount"]  # type: ignore[index]

    again = ingest(home, "raw", sources=[str(src / "d2.csv")])
    assert not again.created  # a source seen before stores nothing and moves nothing
    assert again.commit.id == second.commit.id


def test_replace_makes_the_sources_the_whole_table(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("raw")
    src = make_tree("exports", {"a.csv": b"x\n1\n2\n", "b.csv": b"x\n3\n"})
    ingest(home, "raw", sources=[str(src / "a.csv")])
    result = ingest(home, "raw", sources=[str(src / "b.csv")], replace=True)
    assert list(_parts(home, "raw").values()) == [1]
    assert result.report["table_rows"] == 1


def test_a_source_that_does_not_fit_the_schema_commits_nothing(
    home: DataRepos, make_tree: MakeTree
) -> None:
    home.create("raw")
    src = make_tree("exports", {"good.csv": b"id,v\n1,a\n", "bad.csv": b"id,v\nx,b\n"})
    first = ingest(home, "raw", sources=[str(src / "good.csv")])
    with pytest.raises(InvalidArgument, match=r"column 'id' of type string does not fit"):
        ingest(home, "raw", sources=[str(src / "bad.csv")])
    assert home.resolve("raw").require_commit().id == first.commit.id


def test_ingest_a_sql_query(home: DataRepos, tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("create table orders (id integer, total real)")
        conn.executemany("insert into orders values (?, ?)", [(i, i * 2.5) for i in range(10)])
    home.create("orders")
    result = ingest(home, "orders", url=f"sqlite:///{db}", query="select * from orders where id < 4")
    assert result.report["total_rows"] == 4
    part = next(iter(_parts(home, "orders")))
    table = read_table(home, f"orders:{part}")
    assert table.column("total").to_pylist() == [0.0, 2.5, 5.0, 7.5]
    assert result.commit.metadata["params"]["query"] == "select * from orders where id < 4"


def test_ingest_needs_exactly_one_kind_of_source(home: DataRepos) -> None:
    home.create("raw")
    with pytest.raises(InvalidArgument, match="ingest either files"):
        ingest(home, "raw")
    with pytest.raises(InvalidArgument, match="--query needs --url"):
        ingest(home, "raw", query="select 1")
    with pytest.raises(InvalidArgument, match="--url is not a database URL"):
        ingest(home, "raw", url="::nonsense::", query="select 1")
