"""Tests of declarative cleansing and the safe expression language."""

from __future__ import annotations

import datetime
from typing import Any

import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.prep.cleanse import CleanseReport, CleanseSpec, FittedCleanse, cleanse_table
from threadline.prep.expressions import MAX_DEPTH, MAX_LENGTH, compile_expression


def run(table: pa.Table, spec: CleanseSpec | FittedCleanse, report: CleanseReport | None = None) -> pa.Table:
    batches = list(cleanse_table(lambda: table.to_batches(), spec, report=report))
    return pa.Table.from_batches(batches)


def table(**columns: list[Any]) -> pa.Table:
    return pa.table(columns)


def spec(*steps: dict[str, Any]) -> CleanseSpec:
    return CleanseSpec(list(steps))


# --- steps -----------------------------------------------------------------------------------


def test_coerce_casts_and_nulls_bad_values_when_asked() -> None:
    data = table(x=["1", "2", "x", None, "y"])
    report = CleanseReport()
    out = run(data, spec({"coerce": {"x": "int64"}, "on_error": "null"}), report)
    assert out.schema.field("x").type == pa.int64()
    assert out.column("x").to_pylist() == [1, 2, None, None, None]
    assert report.steps[0].nulled == 2


def test_coerce_fails_by_default_naming_column_count_and_examples() -> None:
    data = table(x=["1", "x", "x", "y"])
    with pytest.raises(
        InvalidArgument,
        match=r"step 0 \(coerce\): 3 values of column 'x'.*\['x', 'y'\]|"
        r"step 0 \(coerce\): 3 values of column 'x'.*\['y', 'x'\]",
    ):
        run(data, spec({"coerce": {"x": "int64"}}))


def test_string_steps() -> None:
    data = table(a=["  Hi ", "X", None], b=[" a \t b\n c ", "d", "e  f"])
    report = CleanseReport()
    out = run(data, spec({"strip": ["a"]}, {"lower": ["a"]}, {"normalize_whitespace": ["b"]}), report)
    assert out.column("a").to_pylist() == ["hi", "x", None]
    assert out.column("b").to_pylist() == ["a b c", "d", "e f"]
    assert [s.changed for s in report.steps] == [1, 2, 2]


def test_missing_drop_and_constant() -> None:
    data = table(a=[1, None, 3], b=[None, "x", "y"])
    out = run(
        data, spec({"missing": {"a": {"strategy": "drop"}, "b": {"strategy": "constant", "value": "?"}}})
    )
    assert out.to_pydict() == {"a": [1, 3], "b": ["?", "y"]}


def test_missing_mean_median_mode() -> None:
    data = table(a=[1.0, None, 2.0, 6.0], b=[1, 2, 100, None], c=["x", "y", "y", None])
    steps = {
        "missing": {
            "a": {"strategy": "mean"},
            "b": {"strategy": "median"},
            "c": {"strategy": "mode"},
        }
    }
    fitted = spec(steps).fit(lambda: data.to_batches())
    assert fitted.statistics == {0: {"a": {"value": 3.0}, "b": {"value": 2.0}, "c": {"value": "y"}}}
    out = run(data, fitted)
    assert out.to_pydict() == {"a": [1.0, 3.0, 2.0, 6.0], "b": [1, 2, 100, 2], "c": ["x", "y", "y", "y"]}


def test_mean_into_integer_column_rounds_half_to_even() -> None:
    data = table(a=[1, 4, None])
    out = run(data, spec({"missing": {"a": {"strategy": "mean"}}}))
    assert out.column("a").to_pylist() == [1, 4, 2]


def test_outliers_bounds_clip_and_drop() -> None:
    data = table(a=[-5, 0, 5, 50, None], b=[1.0, 2.0, 3.0, 4.0, 5.0])
    report = CleanseReport()
    out = run(data, spec({"outliers": {"a": {"method": "clip", "min": 0, "max": 10}}}), report)
    assert out.column("a").to_pylist() == [0, 0, 5, 10, None]
    assert report.steps[0].changed == 2
    out = run(data, spec({"outliers": {"b": {"method": "drop", "min": 1.5, "max": 4.5}}}))
    assert out.column("b").to_pylist() == [2.0, 3.0, 4.0]


def test_outliers_quantiles_are_fitted() -> None:
    data = table(a=[float(i) for i in range(101)])
    fitted = spec({"outliers": {"a": {"method": "clip", "quantiles": [0.1, 0.9]}}}).fit(
        lambda: data.to_batches()
    )
    assert fitted.statistics == {0: {"a": {"min": 10.0, "max": 90.0}}}
    out = run(data, fitted)
    assert min(out.column("a").to_pylist()) == 10.0
    assert max(out.column("a").to_pylist()) == 90.0


def test_rename_drop_derive() -> None:
    data = table(a=[1, 2], b=[3, 4], c=["x", "y"])
    out = run(data, spec({"rename": {"a": "x1"}}, {"drop": ["c"]}, {"derive": {"s": "x1 + b", "t": "s * 2"}}))
    assert out.to_pydict() == {"x1": [1, 2], "b": [3, 4], "s": [4, 6], "t": [8, 12]}


def test_fit_then_apply_reuses_statistics_on_new_data() -> None:
    train = table(a=[1.0, 2.0, 3.0, None])
    new = table(a=[100.0, None, 300.0])
    fitted = spec({"missing": {"a": {"strategy": "mean"}}}).fit(lambda: train.to_batches())
    passes = 0

    def source() -> list[pa.RecordBatch]:
        nonlocal passes
        passes += 1
        return new.to_batches()

    report = CleanseReport()
    out = list(cleanse_table(source, fitted, report=report))
    assert pa.Table.from_batches(out).column("a").to_pylist() == [100.0, 2.0, 300.0]
    assert passes == 1  # no refit
    assert report.to_dict()["statistics"] == [{"step": 0, "columns": {"a": {"value": 2.0}}}]
    # the unfitted spec fits on the new data instead: two passes, another fill value
    assert run(new, spec({"missing": {"a": {"strategy": "mean"}}})).column("a").to_pylist()[1] == 200.0


def test_fit_sees_the_data_after_earlier_steps() -> None:
    data = table(a=["1", "3", None, "x"])
    cleanse = spec({"coerce": {"a": "float64"}, "on_error": "null"}, {"missing": {"a": {"strategy": "mean"}}})
    assert run(data, cleanse).column("a").to_pylist() == [1.0, 3.0, 2.0, 2.0]


def test_fitted_round_trips_through_yaml() -> None:
    data = table(a=[1.0, 3.0, None])
    fitted = spec({"missing": {"a": {"strategy": "median"}}}).fit(lambda: data.to_batches())
    again = FittedCleanse.from_yaml(fitted.to_yaml())
    assert again == fitted
    assert again.to_dict()["statistics"] == [{"step": 0, "columns": {"a": {"value": 2.0}}}]


def test_multiple_batches_equal_one_batch() -> None:
    values = [float(i % 7) if i % 5 else None for i in range(60)]
    names = [f"  N{i % 3}  " for i in range(60)]
    whole = table(a=values, n=names)
    chunked = pa.Table.from_batches(whole.to_batches(max_chunksize=7))
    cleanse = spec(
        {"strip": ["n"]},
        {"missing": {"a": {"strategy": "median"}}},
        {"outliers": {"a": {"method": "drop", "quantiles": [0.05, 0.95]}}},
        {"derive": {"z": "if_else(a > 3, upper(n), lower(n))"}},
    )
    one = run(whole.combine_chunks(), cleanse)
    many = run(chunked, cleanse)
    assert many.to_pydict() == one.to_pydict()
    assert many.schema == one.schema


def test_report_counts() -> None:
    data = table(a=[1, None, 3])
    report = CleanseReport()
    run(data, spec({"missing": {"a": {"strategy": "drop"}}}), report)
    assert report.to_dict() == {
        "rows_in": 3,
        "rows_out": 2,
        "steps": [{"index": 0, "kind": "missing", "changed": 0, "dropped": 1, "nulled": 0}],
        "statistics": [],
    }


def test_derived_schema_is_the_same_for_every_batch() -> None:
    batches = [
        pa.record_batch({"a": pa.array([None, None], type=pa.int64())}),
        pa.record_batch({"a": pa.array([1, 2], type=pa.int64())}),
    ]
    out = list(cleanse_table(lambda: batches, spec({"derive": {"b": "coalesce(a, 0) / 2"}})))
    assert [b.schema for b in out] == [out[0].schema] * 2
    assert out[0].schema.field("b").type == pa.float64()


# --- spec validation ---------------------------------------------------------------------------


def test_yaml_round_trip() -> None:
    text = """
format: threadline.cleanse/1
steps:
  - coerce: {age: int64}
    on_error: null
  - strip: [name]
  - missing: {age: {strategy: mean}, name: {strategy: constant, value: unknown}}
  - outliers: {age: {method: clip, quantiles: [0.01, 0.99]}}
  - rename: {name: full_name}
  - derive: {adult: "age >= 18"}
  - drop: [full_name]
"""
    loaded = CleanseSpec.from_yaml(text)
    assert loaded.steps[0].on_error == "null"
    assert CleanseSpec.from_yaml(loaded.to_yaml()) == loaded
    out = loaded.validate(pa.schema([("age", pa.string()), ("name", pa.string())]))
    assert out == pa.schema([("age", pa.int64()), ("adult", pa.bool_())])


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"explode": ["a"]}], r"step 0: unknown step kind explode"),
        ([{"strip": "a"}], r"step 0 \(strip\) needs a non-empty list"),
        ([{"coerce": {"a": "complex"}}], r"step 0 \(coerce\): column 'a': type 'complex'"),
        ([{"missing": {"a": {"strategy": "guess"}}}], r"step 0 \(missing\): column 'a': needs"),
        ([{"missing": {"a": {"strategy": "constant"}}}], r"'value' is required"),
        ([{"outliers": {"a": {"method": "clip", "quantiles": [0.9, 0.1]}}}], r"0 <= lo < hi <= 1"),
        ([{"outliers": {"a": {"method": "clip", "min": 3, "max": 1}}}], r"min 3 is above max 1"),
        ([{"strip": ["a"]}, {"derive": {"b": "a +"}}], r"step 1 \(derive\): column 'b'.*position 3"),
        ([{"lower": ["a"], "on_error": "null"}], r"on_error applies only to coerce"),
    ],
)
def test_bad_specs_name_step_and_column(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        CleanseSpec(steps)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"strip": ["nope"]}], r"step 0 \(strip\): unknown column 'nope'"),
        ([{"rename": {"a": "z"}}, {"drop": ["a"]}], r"step 1 \(drop\): unknown column 'a'"),
        ([{"strip": ["n"]}], r"step 0 \(strip\): column 'n' is int64, not a string"),
        ([{"missing": {"s": {"strategy": "mean"}}}], r"column 's' is string; mean needs numbers"),
        ([{"missing": {"n": {"strategy": "constant", "value": "x"}}}], r"value 'x' does not fit int64"),
        ([{"derive": {"d": "s * 2"}}], r"step 0 \(derive\): column 'd'.*operator '\*'.*position 2"),
        ([{"derive": {"d": "q + 1"}}], r"unknown column 'q' at position 0"),
        ([{"rename": {"a": "n"}}], r"a new name is already a column"),
        ([{"coerce": {"n": "date32"}}], r"cannot cast int64 to date32"),
    ],
)
def test_validate_checks_the_schema(steps: list[dict[str, Any]], message: str) -> None:
    schema = pa.schema([("a", pa.string()), ("n", pa.int64()), ("s", pa.string())])
    with pytest.raises(InvalidArgument, match=message):
        CleanseSpec(steps).validate(schema)


def test_bad_yaml_and_format() -> None:
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        CleanseSpec.from_yaml("steps: [")
    with pytest.raises(InvalidArgument, match="format is 'other/1'"):
        CleanseSpec.from_yaml("format: other/1\nsteps: []")
    with pytest.raises(InvalidArgument, match=r"needs \[0\]; run CleanseSpec.fit"):
        FittedCleanse(spec({"missing": {"a": {"strategy": "mean"}}}), {})


# --- expressions -------------------------------------------------------------------------------

BATCH = pa.record_batch(
    {
        "a": [1, 2, None, 7],
        "b": [2.0, 0.0, 1.0, 4.0],
        "s": [" Ab ", "c", None, "d"],
        "odd name": [1, 1, 1, 1],
        "t": [datetime.date(2021, 3, 4)] * 4,
        "f": [True, False, None, True],
    }
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * 2", [5.0, 2.0, None, 15.0]),
        ("(a + b) * 2", [6.0, 4.0, None, 22.0]),
        ("-a + 1", [0, -1, None, -6]),
        ("a / 2", [0.5, 1.0, None, 3.5]),
        ("a % 3", [1, 2, None, 1]),
        ("-7 % 3", [2, 2, 2, 2]),
        ("2 - 3 - 4", [-5, -5, -5, -5]),
        ("a > 1 and b < 3", [False, True, None, False]),
        ("a > 1 or f", [True, True, None, True]),
        ("not f", [False, True, None, False]),
        ("a == 2 or a != 2 and false", [False, True, None, False]),
        ("a <= 2", [True, True, None, False]),
        ("abs(-a)", [1, 2, None, 7]),
        ("round(b / 3, 2)", [0.67, 0.0, 0.33, 1.33]),
        ("floor(b / 3) + ceil(b / 3)", [1.0, 0.0, 1.0, 3.0]),
        ("sqrt(b)", [2.0**0.5, 0.0, 1.0, 2.0]),
        ("exp(0) + log(1)", [1.0] * 4),
        ("upper(strip(s))", ["AB", "C", None, "D"]),
        ("length(s)", [4, 1, None, 1]),
        ("s + '!'", [" Ab !", "c!", None, "d!"]),
        ("coalesce(a, 0)", [1, 2, 0, 7]),
        ("if_else(a > 1, 'big', 'small')", ["small", "big", None, "big"]),
        ("is_null(a)", [False, False, True, False]),
        ("year(t) * 10000 + month(t) * 100 + day(t)", [20210304] * 4),
        ("`odd name` + 1", [2, 2, 2, 2]),
        ("a + null", [None] * 4),
        ("'it''s'", ["it's"] * 4),
        ("1.5e1", [15.0] * 4),
    ],
)
def test_expressions_evaluate(text: str, expected: list[Any]) -> None:
    assert compile_expression(text).evaluate(BATCH).to_pylist() == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", r"unexpected character '\.' at position 16"),
        ("__import__('os')", r"unknown function '__import__' .*at position 0"),
        ("a.__class__", r"unexpected character '\.' at position 1"),
        ("lambda x: x", r"unexpected character ':' at position 8"),
        ("a[0]", r"unexpected character '\[' at position 1"),
        ("a; b", r"unexpected character ';' at position 1"),
        ("eval('1')", r"unknown function 'eval'"),
        ("open('/etc/passwd')", r"unknown function 'open'"),
        ("a +", r"unexpected end of expression at position 3"),
        ("(a + 1", r"expected '\)' but found end of expression at position 6"),
        ("a b", r"unexpected 'b' at position 2"),
        ("a < b < 3", r"comparisons do not chain"),
        ("'abc", r"unterminated ' quote at position 0"),
        ("1..2", r"malformed number"),
        ("round(a, 1, 2)", r"'round' takes 1 to 2 arguments, got 3 at position 0"),
        ("and", r"unexpected 'and' at position 0"),
    ],
)
def test_expression_syntax_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        compile_expression(text)


def test_refused_code_is_never_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    called: list[str] = []
    monkeypatch.setattr(builtins, "__import__", lambda *a, **k: called.append("import"))
    for text in ("__import__('os').system('x')", "__import__('os')"):
        with pytest.raises(InvalidArgument):
            compile_expression(text)
    assert called == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("missing + 1", r"unknown column 'missing' at position 0"),
        ("s * 2", r"operator '\*' cannot apply to \(string, int64\).*position 2"),
        ("lower(a)", r"function 'lower' cannot apply to \(int64\).*needs a string.*position 0"),
        ("year(a)", r"needs a date or timestamp"),
        ("a and f", r"operator 'and'.*needs booleans"),
        ("round(b, a)", r"integer literal"),
    ],
)
def test_expression_type_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        compile_expression(text).output_type(BATCH.schema)


def test_expression_limits() -> None:
    with pytest.raises(InvalidArgument, match=f"the limit is {MAX_LENGTH}"):
        compile_expression("1+" * MAX_LENGTH + "1")
    with pytest.raises(InvalidArgument, match=f"nesting deeper than {MAX_DEPTH}"):
        compile_expression("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    assert compile_expression("(" * 20 + "a" + ")" * 20).columns == frozenset({"a"})


def test_a_fit_runs_only_the_earlier_steps_that_can_change_its_statistic() -> None:
    from threadline.prep.cleanse import _fit_plan

    steps = spec(
        {"strip": ["region"]},  # another column: skipped
        {"derive": {"amount": "price * quantity"}},  # defines the fitted column: runs
        {"missing": {"quantity": {"strategy": "drop"}}},  # drops rows: runs
        {"missing": {"amount": {"strategy": "mean"}}},
    ).steps
    run, columns = _fit_plan(steps, 3)
    assert [i for i, _ in run] == [1, 2]
    assert columns == ["price", "quantity"]
    renamed = spec({"rename": {"a": "b"}}, {"missing": {"b": {"strategy": "median"}}}).steps
    assert _fit_plan(renamed, 1) == ([(0, renamed[0])], None)
