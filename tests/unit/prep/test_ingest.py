"""Tests for threadline.prep.ingest: sources to content-named Parquet parts, streaming."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import sqlite3
import sys
from pathlib import Path

import blake3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.prep.ingest import (
    ingest_files,
    ingest_query,
    resolve_sources,
    schema_from_dict,
    schema_to_dict,
)

# `threadline.prep.ingest` is also the name of the step function the package exports
ingest_module = sys.modules["threadline.prep.ingest"]

ROWS = [{"id": 1, "name": "ann", "score": 1.5}, {"id": 2, "name": "bob", "score": 2.25}]


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def read_part(out: Path, part: str) -> pa.Table:
    return pq.read_table(out / part)


def parts_in(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.csv", "id,name,score\n1,ann,1.5\n2,bob,2.25\n"),
        ("a.tsv", "id\tname\tscore\n1\tann\t1.5\n2\tbob\t2.25\n"),
        ("a.jsonl", "".join(json.dumps(row) + "\n" for row in ROWS)),
    ],
)
def test_text_sources_round_trip(tmp_path: Path, name: str, content: str) -> None:
    source = write(tmp_path / name, content)
    report = ingest_files([source], tmp_path / "out")
    (part,) = report.parts
    assert re.fullmatch(r"part-[0-9a-f]{16}\.parquet", part.part)
    table = read_part(tmp_path / "out", part.part)
    assert table.to_pylist() == ROWS
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
    assert report.total_rows == part.rows == 2
    assert part.bytes == (tmp_path / "out" / part.part).stat().st_size
    data = json.loads(json.dumps(report.to_dict()))
    assert data["parts"][0]["file"] == str(source)
    assert data["schema"]["fields"][0] == {"name": "id", "type": "int64", "nullable": True}


def test_parquet_and_gzip_csv_round_trip(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet", row_group_size=1)
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"id,name,score\n1,ann,1.5\n2,bob,2.25\n"))
    report = ingest_files(resolve_sources([str(tmp_path)]), tmp_path / "out")
    assert [Path(p.source).name for p in report.parts] == ["a.parquet", "b.csv.gz"]
    for part in report.parts:
        assert read_part(tmp_path / "out", part.part).to_pylist() == ROWS
    assert report.total_rows == 4


def test_resolve_folder_glob_and_errors(tmp_path: Path) -> None:
    a = write(tmp_path / "d" / "b.csv", "x\n1\n")
    b = write(tmp_path / "d" / "sub" / "a.jsonl", '{"x": 1}\n')
    write(tmp_path / "d" / "notes.txt", "hi")
    assert resolve_sources([str(tmp_path / "d")]) == [a, b]
    assert resolve_sources([str(tmp_path / "d" / "*.csv"), str(a)]) == [a]
    assert resolve_sources([str(tmp_path / "d" / "**" / "*.jsonl")]) == [b]
    with pytest.raises(NotFound, match=r"nothing\*\.csv"):
        resolve_sources([str(tmp_path / "nothing*.csv")])
    with pytest.raises(NotFound, match=r"missing\.csv"):
        resolve_sources([str(tmp_path / "missing.csv")])
    with pytest.raises(InvalidArgument, match=r"notes\.txt: unsupported.*\.csv, \.tsv.*\.parquet"):
        resolve_sources([str(tmp_path / "d" / "notes.txt")])


def test_same_file_gives_same_part_and_bytes(tmp_path: Path) -> None:
    source = write(tmp_path / "a.csv", "id,name\n1,x\n")
    first = ingest_files([source], tmp_path / "one")
    second = ingest_files([source], tmp_path / "two")
    assert first.parts[0].part == second.parts[0].part
    name = first.parts[0].part
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    # Appending a source adds one part and leaves the other untouched.
    other = write(tmp_path / "b.csv", "id,name\n2,y\n")
    ingest_files([source, other], tmp_path / "one")
    assert len(parts_in(tmp_path / "one")) == 2


def test_part_is_named_by_the_source_bytes_and_a_copy_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain CSV is hashed while it is parsed, range by range; gzip CSV and Parquet before.
    monkeypatch.setattr(ingest_module, "CSV_RANGE_SIZE", 16)
    text = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(40))
    source = write(tmp_path / "a.csv", text)
    copy = write(tmp_path / "copy.csv", text)
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    report = ingest_files([source, copy, packed], tmp_path / "out", profile=lambda _part: True)
    expected = [f"part-{blake3.blake3(p.read_bytes()).hexdigest()[:16]}.parquet" for p in (source, packed)]
    assert [p.part for p in report.parts] == expected
    assert parts_in(tmp_path / "out") == sorted(expected)  # the copy left no file behind
    assert report.profile is not None
    assert report.profile.rows == 80  # the copy's rows are not counted twice


def test_later_sources_are_cast_to_first_schema(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "id,score\n1,1.5\n")
    b = write(tmp_path / "b.csv", "score,id\n2,2\n")  # int score, other column order
    report = ingest_files([a, b], tmp_path / "out")
    table = read_part(tmp_path / "out", report.parts[1].part)
    assert table.to_pylist() == [{"id": 2, "score": 2.0}]


def test_schema_mismatch_names_file_column_types_and_leaves_nothing(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "id,name\n1,x\n")
    b = write(tmp_path / "b.csv", "id,name\nabc,y\n")
    out = tmp_path / "out"
    with pytest.raises(InvalidArgument, match=r"b\.csv: column 'id' of type string does not fit .* int64"):
        ingest_files([a, b], out)
    assert parts_in(out) == []
    c = write(tmp_path / "c.csv", "id,other\n1,x\n")
    with pytest.raises(InvalidArgument, match=r"c\.csv: columns do not match.*'name'.*'other'"):
        ingest_files([a, c], out)
    assert parts_in(out) == []


def test_given_schema_is_applied(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "id,day\n1,2024-01-02\n")
    schema = pa.schema([("id", pa.float64()), ("day", pa.date32())])
    report = ingest_files([a], tmp_path / "out", schema=schema)
    table = read_part(tmp_path / "out", report.parts[0].part)
    assert table.schema == schema
    assert table.to_pylist() == [{"id": 1.0, "day": dt.date(2024, 1, 2)}]


def test_malformed_csv_names_file_and_row(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidArgument, match=r"bad\.csv: cannot read it: .*Row #3.*Expected 2 columns"):
        ingest_files([bad], tmp_path / "out")
    assert parts_in(tmp_path / "out") == []


def test_header_only_csv_gives_empty_string_columns(tmp_path: Path) -> None:
    source = write(tmp_path / "h.csv", "a,b\n")
    report = ingest_files([source], tmp_path / "out")
    table = read_part(tmp_path / "out", report.parts[0].part)
    assert table.num_rows == 0
    assert table.schema == pa.schema([("a", pa.string()), ("b", pa.string())])


def test_large_csv_streams_in_several_row_groups(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    line_count = 700_000
    with source.open("w") as fh:
        fh.write("id,value,label\n")
        fh.writelines(f"{i},{i * 0.5},label-{i:09d}\n" for i in range(line_count))
    assert source.stat().st_size > 20_000_000
    report = ingest_files([source], tmp_path / "out", row_group_rows=100_000)
    meta = pq.ParquetFile(tmp_path / "out" / report.parts[0].part).metadata
    # 8 MiB blocks are gathered into row groups of exactly 100,000 rows, the last one shorter
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert groups == [100_000] * 7
    assert meta.num_rows == report.total_rows == line_count


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_csv_split_into_ranges_reads_every_row_once_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: str
) -> None:
    # Ranges of 64 bytes cut most lines' neighbours apart; a 200-byte value spans several ranges.
    monkeypatch.setattr(ingest_module, "CSV_RANGE_SIZE", 64)
    rows = [(i, f"name-{i}" if i != 7 else "x" * 200, i * 0.5) for i in range(50)]
    text = newline.join(["id,name,score", *(f"{i},{n},{v}" for i, n, v in rows)])  # no final line end
    source = tmp_path / "a.csv"
    source.write_bytes(text.encode())
    report = ingest_files([source], tmp_path / "out")
    table = read_part(tmp_path / "out", report.parts[0].part)
    assert table.to_pylist() == [{"id": i, "name": n, "score": v} for i, n, v in rows]
    assert report.total_rows == 50


def test_csv_ranges_keep_the_first_blocks_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first block says `id` is an integer: a later range's text there is an error naming the
    # row, as the streaming reader gives, not a silent change of type.
    monkeypatch.setattr(ingest_module, "CSV_RANGE_SIZE", 32)
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_SIZE", 32)
    bad = write(tmp_path / "bad.csv", "id,b\n" + "".join(f"{i},x\n" for i in range(20)) + "oops,x\n")
    with pytest.raises(InvalidArgument, match=r"bad\.csv: cannot read it: .*int64.*oops"):
        ingest_files([bad], tmp_path / "out")
    assert parts_in(tmp_path / "out") == []


def test_gzip_csv_in_several_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "CSV_RANGE_SIZE", 100)
    lines = "".join(f"{i},v{i}\n" for i in range(300))
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(("a,b\n" + lines).encode()))
    report = ingest_files([tmp_path / "b.csv.gz"], tmp_path / "out")
    table = read_part(tmp_path / "out", report.parts[0].part)
    assert table.column("a").to_pylist() == list(range(300))
    assert table.column("b").to_pylist() == [f"v{i}" for i in range(300)]


def test_schema_dict_round_trip() -> None:
    schema = pa.schema(
        [
            pa.field("i", pa.int64(), nullable=False),
            ("f", pa.float64()),
            ("s", pa.string()),
            ("b", pa.bool_()),
            ("t", pa.timestamp("us")),
            ("tz", pa.timestamp("ms", tz="UTC")),
            ("d", pa.date32()),
            ("dec", pa.decimal128(10, 2)),
            ("l", pa.list_(pa.int32())),
            ("st", pa.struct([("x", pa.int8())])),
        ]
    )
    data = json.loads(json.dumps(schema_to_dict(schema)))
    assert data["format"] == "threadline.schema/1"
    assert data["fields"][4] == {"name": "t", "type": "timestamp[us]", "nullable": True}
    assert schema_from_dict(data) == schema
    with pytest.raises(InvalidArgument, match="unknown schema format"):
        schema_from_dict({"format": "other/9", "fields": []})


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("create table t (id integer, name text, score real)")
        db.executemany("insert into t values (?, ?, ?)", [(i, f"n{i}", i / 2) for i in range(10)])
    return path


def test_query_from_sqlite(tmp_path: Path, sqlite_db: Path) -> None:
    url = f"sqlite:///{sqlite_db}"
    out = tmp_path / "out"
    report = ingest_query(url, "select id, name, score from t order by id", out, batch_rows=3)
    (part,) = report.parts
    table = read_part(out, part.part)
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
    assert table.to_pylist() == [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(10)]
    assert pq.ParquetFile(out / part.part).metadata.num_row_groups == 4
    assert report.to_dict()["parts"][0]["query"].startswith("select")
    again = ingest_query(url, "select id, name, score from t order by id", tmp_path / "again")
    assert again.parts[0].part == part.part
    empty = ingest_query(url, "select id, name from t where id < 0", out)
    assert read_part(out, empty.parts[0].part).num_rows == 0


def test_query_error_has_message_without_password(tmp_path: Path, sqlite_db: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"failed: .*no such table: missing"):
        ingest_query(f"sqlite:///{sqlite_db}", "select * from missing", tmp_path / "out")
    assert parts_in(tmp_path / "out") == []
    # SQLite refuses a password; the refusal quotes the URL, which must come out masked.
    with pytest.raises(InvalidArgument, match=r"sqlite://user:\*\*\*@.*failed") as info:
        ingest_query(f"sqlite://user:s3cret@/{sqlite_db}", "select 1", tmp_path / "out")
    assert "s3cret" not in str(info.value)
    with pytest.raises(InvalidArgument, match="cannot parse the database URL") as info:
        ingest_query("not a url s3cret", "select 1", tmp_path / "out")
    assert "s3cret" not in str(info.value)
