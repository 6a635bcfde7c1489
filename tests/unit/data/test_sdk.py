"""The notebook-facing SDK: `tl.data.repo`, `tl.data.open`, `tl.data.read_table`, HTML reprs,
and row counts of committed tables."""

from __future__ import annotations

import io
import json
import random
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import threadline as tl
from threadline.data.maintenance import gc
from threadline.errors import IntegrityError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


#: 2 MiB of distinct, incompressible bytes: several chunks, none alike
BIG = random.Random(7).randbytes(2 << 20)


def _parquet_bytes(rows: int) -> bytes:
    table = pa.table({"id": list(range(rows)), "label": [f"x{i % 3}" for i in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def sales(home: DataRepos, make_tree: MakeTree) -> tl.data.Repo:
    repo = tl.data.repo("sales", create=True)
    lines = b"id,amount\n" + b"".join(b"%d,%d.5\n" % (i, i) for i in range(5000))
    jsonl = b"".join(json.dumps({"id": i, "ok": i % 2 == 0}).encode() + b"\n" for i in range(7))
    src = make_tree("src", {
        "orders.csv": lines,
        "events.parquet": _parquet_bytes(1234),
        "log.jsonl": jsonl,
        "notes.txt": b"no trailing newline",
        "big.bin": BIG,
    })
    repo.commit(src, message="first")
    return repo


def test_row_counts_recorded_for_csv_and_parquet(sales: tl.data.Repo) -> None:
    rows = {e.path: e.rows for e in sales.ls()}
    assert rows == {"big.bin": None, "events.parquet": 1234, "log.jsonl": None,
                    "notes.txt": None, "orders.csv": 5000}


def test_csv_row_count_without_trailing_newline(home: DataRepos, make_tree: MakeTree) -> None:
    repo = tl.data.repo("r", create=True)
    repo.commit(make_tree("s", {"a.csv": b"h\n1\n2", "b.tsv": b"h\tx\n", "c.csv": b""}),
                message="m")
    assert {e.path: e.rows for e in repo.ls()} == {"a.csv": 2, "b.tsv": 0, "c.csv": 0}


def test_read_table_as_arrow_and_pandas(sales: tl.data.Repo) -> None:
    table = tl.data.read_table("sales@main:orders.csv")
    assert table.num_rows == 5000
    assert table.column_names == ["id", "amount"]
    assert table.column("amount")[3].as_py() == 3.5
    frame = tl.data.read_table("sales@main:events.parquet", pandas=True)
    assert len(frame) == 1234
    assert list(frame["label"][:4]) == ["x0", "x1", "x2", "x0"]
    events = tl.data.read_table("sales:log.jsonl")
    assert events.column("ok").to_pylist() == [True, False, True, False, True, False, True]


def test_read_table_refuses_non_tables_and_missing_paths(sales: tl.data.Repo) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot read 'big\.bin' as a table; use \.parquet"):
        tl.data.read_table("sales:big.bin")
    with pytest.raises(NotFound, match=r"no file 'nope\.csv' in commit"):
        tl.data.read_table("sales:nope.csv")
    with pytest.raises(InvalidArgument, match="names no file; add `:path/in/repo`"):
        tl.data.read_table("sales@main")


def test_open_is_a_seekable_verified_stream(sales: tl.data.Repo) -> None:
    expected = BIG
    with tl.data.open("sales:big.bin") as fh:
        assert fh.read(10) == expected[:10]
        fh.seek(1_500_000)
        assert fh.read(300_000) == expected[1_500_000:1_800_000]
        fh.seek(-5, io.SEEK_END)
        assert fh.read() == expected[-5:]
        assert fh.tell() == len(expected)
        fh.seek(0)
        assert fh.read() == expected


def test_open_raises_on_a_corrupt_chunk(sales: tl.data.Repo, home: DataRepos) -> None:
    entry = next(e for e in sales.ls() if e.path == "big.bin")
    key, _ = home.content.chunk_list(entry.stored)[-1]
    (loc,) = home.content.locate([key])
    pack = home.content.objects.root / "packs" / f"{loc.pack}.pack"  # type: ignore[attr-defined]
    with open(pack, "r+b") as fh:  # flip one byte of the last chunk's stored bytes
        fh.seek(loc.offset + loc.stored // 2)
        byte = fh.read(1)
        fh.seek(-1, io.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with tl.data.open("sales:big.bin") as fh:
        assert fh.read(1000) == BIG[:1000]  # an intact chunk still reads
        with pytest.raises(IntegrityError, match=rf"object {key.hex()} is corrupt"):
            fh.read()


def test_a_long_lived_handle_reads_what_another_process_committed(
    home: DataRepos, make_tree: MakeTree
) -> None:
    reader = tl.data.repo("shared", create=True)  # loads the pack index now
    writer = home  # a second connection, as another process would have
    writer.commit("shared", [make_tree("s", {"x.csv": b"a\n1\n"})], "from elsewhere")
    assert [e.rows for e in reader.ls()] == [1]
    with tl.data.open("shared:x.csv") as fh:
        assert fh.read() == b"a\n1\n"


def test_a_long_lived_handle_survives_gc_rewriting_packs_elsewhere(
    home: DataRepos, make_tree: MakeTree
) -> None:
    shared, dropped = random.Random(1).randbytes(50_000), random.Random(2).randbytes(50_000)
    home.create("x")
    home.commit("x", [make_tree("sx", {"a": shared, "b": dropped})], "x")  # one pack: a + b
    reader = tl.data.repo("y", create=True)
    reader.commit(make_tree("sy", {"a": shared}), message="y")  # reuses a from x's pack
    assert [e.path for e in reader.ls()] == ["a"]  # the reader's index now knows x's pack
    home.delete("x")
    plan = gc(home, dry_run=False, grace_seconds=0)  # rewrites x's pack without b
    assert plan.to_dict()["packs_rewritten"] == 1
    with tl.data.open("y:a") as fh:
        assert fh.read() == shared


def test_repo_handle_and_html_reprs(sales: tl.data.Repo, make_tree: MakeTree) -> None:
    first = sales.log()[0]
    second = sales.commit(make_tree("v2", {"orders.csv": b"id,amount\n1,2\n"}),
                          message="only orders <b>now</b>")
    diff = sales.diff("main~1")
    assert {c.path: c.status for c in diff.changes} == {
        "big.bin": "removed", "events.parquet": "removed", "log.jsonl": "removed",
        "notes.txt": "removed", "orders.csv": "modified"}
    html = diff._repr_html_()
    assert "<td>removed</td><td>big.bin</td>" in html
    assert "only orders &lt;b&gt;now&lt;/b&gt;" in second._repr_html_()  # escaped, not markup
    assert first.short_id in sales._repr_html_() or second.short_id in sales._repr_html_()
    assert f"<code>{second.short_id}</code>" in sales._repr_html_()
    sales.tag("v1", first.id[:10])
    sales.rollback("v1")
    assert sales.log()[0].id == first.id
    out = sales.checkout(sales.repos.stat_cache_path.parent.parent.parent / "co", "v1")
    assert sorted(p.name for p in out.iterdir()) == [
        "big.bin", "events.parquet", "log.jsonl", "notes.txt", "orders.csv"]


def test_import_threadline_exposes_a_small_lazy_sdk() -> None:
    assert set(tl.__all__) == {"__version__", "autolog", "data", "evaluate", "init", "lineage",
                               "load_model", "prep", "registry", "start_run", "tracking", "train"}
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = tl.nope  # type: ignore[attr-defined]
