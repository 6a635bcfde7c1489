"""Tests for threadline.prep.validate: schema inference, the YAML file, and validation policies."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
import yaml

from threadline.errors import InvalidArgument
from threadline.prep.validate import (
    QUARANTINE,
    VALID,
    ColumnRules,
    TableSchema,
    ValidationFailed,
    ValidationReport,
    validate_table,
)


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5, 6], type=pa.int64()),
            "amount": [10.5, 20.0, None, 3.25, 99.0, 50.0],
            "region": ["eu", "us", "eu", "apac", "us", "eu"],
            "day": pa.array([dt.date(2024, 1, d) for d in (5, 1, 9, 2, 3, 4)], type=pa.date32()),
            "ts": pa.array([dt.datetime(2024, 1, 1, h) for h in range(6)], type=pa.timestamp("us")),
        }
    )


Rows = dict[str, list[dict[str, Any]]]


def _run(batches: list[pa.RecordBatch], schema: TableSchema) -> tuple[Rows, ValidationReport]:
    report = ValidationReport()
    out: Rows = {VALID: [], QUARANTINE: []}
    for status, batch in validate_table(lambda: batches, schema, report=report):
        out[status].extend(batch.to_pylist())
    return out, report


def _schema(*columns: ColumnRules, extra: str = "fail") -> TableSchema:
    return TableSchema(columns, extra_columns=extra)


# --- inference and the YAML file ----------------------------------------------------------------


def test_infer_known_table_gives_expected_yaml_and_round_trips() -> None:
    schema = TableSchema.infer(_table().to_batches(max_chunksize=2))
    text = schema.to_yaml()
    assert text.startswith("# Table schema with rules")
    data = yaml.safe_load(text)
    assert data["format"] == "threadline.schema-rules/1"
    assert data["extra_columns"] == "fail"
    assert data["columns"] == [
        {"name": "id", "type": "int64", "nullable": False, "min": 1, "max": 6, "unique": True},
        {"name": "amount", "type": "double", "nullable": True, "min": 3.25, "max": 99.0, "unique": False},
        {"name": "region", "type": "string", "nullable": False, "allowed": ["apac", "eu", "us"],
         "unique": False},
        {"name": "day", "type": "date32[day]", "nullable": False, "min": "2024-01-01", "max": "2024-01-09",
         "unique": True},
        {"name": "ts", "type": "timestamp[us]", "nullable": False, "min": "2024-01-01T00:00:00",
         "max": "2024-01-01T05:00:00", "unique": True},
    ]
    assert TableSchema.from_yaml(text) == schema
    out, report = _run(_table().to_batches(), schema)
    assert len(out[VALID]) == 6
    assert report.rows_valid == 6


def test_infer_categories_limit_and_unique_within_batch() -> None:
    batch = pa.record_batch({"k": ["a", "b", "c", "a"], "n": [1, 1, 2, None]})
    schema = TableSchema.infer([batch], max_categories=2)
    k, n = schema.columns
    assert k.allowed is None  # 3 distinct values > 2
    assert not k.unique
    assert (n.nullable, n.unique, n.min, n.max) == (True, False, 1, 2)


def test_infer_no_batches_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="no batches"):
        TableSchema.infer([])


def test_hand_edited_yaml_with_each_rule() -> None:
    text = """
format: threadline.schema-rules/1
extra_columns: ignore
columns:
  - name: code
    type: string
    nullable: false
    regex: '[A-Z]{2}-\\d+'
    unique: true
    policy: {regex: quarantine, unique: drop, nullable: drop}
  - name: amount
    type: double
    min: 0
    max: 100
    policy: {range: drop}
  - name: region
    type: string
    allowed: [eu, us]
    policy: {allowed: quarantine}
  - name: day
    type: date32[day]
    min: 2024-01-01
    max: 2024-12-31
    policy: {range: quarantine}
"""
    schema = TableSchema.from_yaml(text)
    batch = pa.record_batch(
        {
            "code": ["AB-1", "AB-1", "bad", None, "CD-2", "EF-3", "GH-4"],
            "amount": [1.0, 2.0, 3.0, 4.0, 200.0, 5.0, 6.0],
            "region": ["eu", "us", "eu", "eu", "eu", "asia", "us"],
            "day": pa.array([dt.date(2024, 3, 1)] * 6 + [dt.date(2025, 1, 1)], type=pa.date32()),
            "note": ["x"] * 7,
        }
    )
    out, report = _run([batch], schema)
    assert [r["code"] for r in out[VALID]] == ["AB-1"]
    assert out[VALID][0]["note"] == "x"  # an ignored extra column passes through
    assert [(r["code"], r["_violations"]) for r in out[QUARANTINE]] == [
        ("bad", "code:regex"), ("EF-3", "region:allowed"), ("GH-4", "day:range"),
    ]
    assert (report.rows_in, report.rows_valid, report.rows_dropped, report.rows_quarantined) == (7, 1, 3, 3)
    assert report.violations[("code", "unique")] == 1
    assert report.violations[("code", "nullable")] == 1
    assert report.violations[("amount", "range")] == 1
    assert report.examples[("amount", "range")] == [200.0]
    assert report.to_dict()["rows_in"] == 7


# --- policies -----------------------------------------------------------------------------------


def _amount_batch() -> pa.RecordBatch:
    return pa.record_batch({"id": [1, 2, 3, 4, 5], "amount": [5.0, -1.0, 50.0, 500.0, -7.0]})


def _amount_schema(policy: str) -> TableSchema:
    return _schema(
        ColumnRules("id", "int64"),
        ColumnRules("amount", "double", min=0, max=100, policy={"range": policy}),
    )


def test_fail_policy_raises_naming_rule_column_count_and_examples() -> None:
    report = ValidationReport()
    with pytest.raises(
        ValidationFailed,
        match=r"column 'amount' broke rule 'range' \(min 0, max 100\) in 3 rows of this batch, "
        r"e\.g\. \[-1\.0, 500\.0, -7\.0\]",
    ) as info:
        list(validate_table(lambda: [_amount_batch()], _amount_schema("fail"), report=report))
    assert info.value.report is report
    assert (info.value.column, info.value.rule) == ("amount", "range")
    assert report.violations[("amount", "range")] == 3
    assert isinstance(info.value, InvalidArgument)


def test_fail_without_report_argument_still_carries_one() -> None:
    with pytest.raises(ValidationFailed, match="range") as info:
        list(validate_table(lambda: [_amount_batch()], _amount_schema("fail")))
    assert info.value.report.rows_in == 5


def test_drop_policy_removes_exactly_the_bad_rows() -> None:
    out, report = _run([_amount_batch()], _amount_schema("drop"))
    assert [r["id"] for r in out[VALID]] == [1, 3]
    assert out[QUARANTINE] == []
    assert (report.rows_valid, report.rows_dropped, report.rows_quarantined) == (2, 3, 0)


def test_quarantine_policy_moves_exactly_the_bad_rows() -> None:
    out, _ = _run([_amount_batch()], _amount_schema("quarantine"))
    assert [r["id"] for r in out[VALID]] == [1, 3]
    assert [(r["id"], r["_violations"]) for r in out[QUARANTINE]] == [
        (2, "amount:range"), (4, "amount:range"), (5, "amount:range"),
    ]


def test_row_breaking_two_rules_lists_both_and_quarantine_beats_drop() -> None:
    schema = _schema(
        ColumnRules("amount", "double", max=100, policy={"range": "drop"}),
        ColumnRules("region", "string", allowed=("eu",), policy={"allowed": "quarantine"}),
    )
    batch = pa.record_batch({"amount": [1.0, 500.0, 500.0], "region": ["eu", "eu", "mars"]})
    out, report = _run([batch], schema)
    broken = "amount:range;region:allowed"
    assert out[QUARANTINE] == [{"amount": 500.0, "region": "mars", "_violations": broken}]
    assert (report.rows_valid, report.rows_dropped, report.rows_quarantined) == (1, 1, 1)


def test_type_rule_flags_only_values_that_do_not_cast_safely() -> None:
    schema = _schema(ColumnRules("n", "int64", policy={"type": "quarantine"}))
    batch = pa.record_batch({"n": ["1", "x", None, "4", "2.5"]})
    out, report = _run([batch], schema)
    assert out[VALID] == [{"n": 1}, {"n": None}, {"n": 4}]
    assert [r["n"] for r in out[QUARANTINE]] == ["x", "2.5"]
    assert report.examples[("n", "type")] == ["x", "2.5"]
    floats = pa.record_batch({"n": [1.0, 1.5, 2.0]})
    with pytest.raises(ValidationFailed, match=r"rule 'type' \(type int64\) in 1 rows.*\[1\.5\]"):
        list(validate_table(lambda: [floats], _schema(ColumnRules("n", "int64"))))


def test_valid_output_has_the_declared_schema() -> None:
    schema = _schema(ColumnRules("n", "int64", nullable=False))
    batch = pa.record_batch({"n": pa.array([1, 2], type=pa.int8())})
    (status, out), = validate_table(lambda: [batch], schema)
    assert status == VALID
    assert out.schema == schema.to_arrow()


def test_unique_across_batches() -> None:
    schema = _schema(ColumnRules("k", "string", unique=True, policy={"unique": "quarantine"}))
    batches = [pa.record_batch({"k": ["a", "b", "a"]}), pa.record_batch({"k": ["c", "b", None, None]})]
    out, report = _run(batches, schema)
    assert [r["k"] for r in out[VALID]] == ["a", "b", "c", None, None]
    assert [r["k"] for r in out[QUARANTINE]] == ["a", "b"]
    assert report.violations[("k", "unique")] == 2


def test_multiple_batches_equal_one_batch() -> None:
    schema = TableSchema.from_yaml(TableSchema.infer(_table().to_batches()).to_yaml())
    loose = _schema(*(
        ColumnRules(c.name, c.type, min=c.min, max=c.max if c.name != "amount" else 60, allowed=("eu", "us")
                    if c.name == "region" else None, unique=c.unique,
                    policy={"range": "quarantine", "allowed": "drop", "unique": "quarantine"})
        for c in schema.columns
    ))
    table = pa.concat_tables([_table(), _table()])
    one, report_one = _run(table.combine_chunks().to_batches(), loose)
    many, report_many = _run(table.to_batches(max_chunksize=1), loose)
    assert one == many
    assert report_one == report_many
    assert report_one.rows_in == 12
    assert report_one.violations[("id", "unique")] == 6


# --- columns ------------------------------------------------------------------------------------


def test_missing_declared_column_fails_clearly() -> None:
    schema = _schema(ColumnRules("id", "int64"), ColumnRules("label", "string"))
    with pytest.raises(ValidationFailed, match=r"column 'label' declared in the schema is missing") as info:
        list(validate_table(lambda: [pa.record_batch({"id": [1]})], schema))
    assert info.value.rule == "missing"


def test_extra_columns_fail_by_default() -> None:
    batch = pa.record_batch({"id": [1], "z": [2]})
    with pytest.raises(ValidationFailed, match=r"columns \['z'\] the schema does not declare.*extra_columns"):
        list(validate_table(lambda: [batch], _schema(ColumnRules("id", "int64"))))


# --- bad schema files ---------------------------------------------------------------------------


def _yaml(column: str) -> str:
    return f"format: threadline.schema-rules/1\ncolumns:\n  - {column}\n"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("{name: a, type: int64, maxx: 3}", r"schema column 'a': unknown keys \['maxx'\]"),
        ("{name: a, type: int64, policy: {ranges: drop}}", r"column 'a': policy names unknown rule 'ranges'"),
        ("{name: a, type: int64, policy: {range: skip}}", r"'a': policy 'skip' for rule 'range' must be"),
        ("{name: a, type: string, regex: '([a-z'}", r"column 'a': regex '\(\[a-z' does not compile"),
        ("{name: a, type: int64, min: 5, max: 1}", r"column 'a': min 5 is greater than max 1"),
        ("{name: a, type: int64, min: five}", r"column 'a': min 'five' must be a number for type int64"),
        ("{name: a, type: integer}", r"column 'a': unknown Arrow type 'integer'"),
        ("{name: a, type: int64, nullable: maybe}", r"column 'a': nullable 'maybe' must be true or false"),
        ("{name: a, type: int64, regex: x}", r"column 'a': regex needs a string column, not int64"),
        ("{name: a, type: int64, allowed: [1, x]}", r"column 'a': allowed \['1', 'x'\] are not all int64"),
        ("{type: int64}", r"schema column '#1': the 'name' key is missing"),
        ("{name: a, type: 'date32[day]', min: '2024-13-01'}", r"'a': min '2024-13-01' must be an ISO date"),
        ("{name: a, type: 'date32[day]', min: 2024-13-01}", r"not valid YAML: month must be in 1\.\.12"),
    ],
)
def test_bad_yaml_values_give_clear_errors(column: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        TableSchema.from_yaml(_yaml(column))


def test_bad_yaml_documents_give_clear_errors() -> None:
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        TableSchema.from_yaml("columns: [")
    with pytest.raises(InvalidArgument, match=r"format is 'other', expected 'threadline\.schema-rules/1'"):
        TableSchema.from_yaml("format: other\ncolumns: []\n")
    with pytest.raises(InvalidArgument, match=r"extra_columns 'keep' must be 'fail' or 'ignore'"):
        TableSchema.from_yaml("format: threadline.schema-rules/1\nextra_columns: keep\ncolumns: []\n")
    with pytest.raises(InvalidArgument, match=r"declares columns \['a'\] more than once"):
        TableSchema.from_yaml(_yaml("{name: a, type: int64}") + "  - {name: a, type: string}\n")
