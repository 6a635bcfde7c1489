"""The search filter language: every valid form parses to the right tree, every error says where."""

from __future__ import annotations

import pytest

from threadline.errors import InvalidArgument
from threadline.tracking.filters import Comparison, OrderKey, parse_filter, parse_order_by


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("metrics.auc > 0.9", [Comparison("metric", "auc", ">", 0.9)]),
        ("metric.auc <= -1e-3", [Comparison("metric", "auc", "<=", -0.001)]),
        ("metrics.loss = 2", [Comparison("metric", "loss", "=", 2.0)]),
        ("metrics.loss != 2", [Comparison("metric", "loss", "!=", 2.0)]),
        ("metrics.loss == 2", [Comparison("metric", "loss", "=", 2.0)]),
        ("params.C = '1.0'", [Comparison("param", "C", "=", "1.0")]),
        ('param.C != "x"', [Comparison("param", "C", "!=", "x")]),
        ("tags.x != 'y'", [Comparison("tag", "x", "!=", "y")]),
        ("tags.team LIKE 'ml%'", [Comparison("tag", "team", "LIKE", "ml%")]),
        ("attributes.status = 'FINISHED'", [Comparison("attribute", "status", "=", "FINISHED")]),
        ("attribute.run_name LIKE 'a%'", [Comparison("attribute", "run_name", "LIKE", "a%")]),
        ("run_name ILIKE 'A%'", [Comparison("attribute", "run_name", "ILIKE", "A%")]),
        ("attributes.start_time >= 1000", [Comparison("attribute", "start_time", ">=", 1000.0)]),
        ("params.model IN ('a', 'b')", [Comparison("param", "model", "IN", ("a", "b"))]),
        ("params.model not in ('a')", [Comparison("param", "model", "NOT IN", ("a",))]),
        ("metrics.`my key` > 1", [Comparison("metric", "my key", ">", 1.0)]),
        ('metrics."val/acc.top1" < 1', [Comparison("metric", "val/acc.top1", "<", 1.0)]),
        ("metrics.a.b > 1", [Comparison("metric", "a.b", ">", 1.0)]),
        ("params.s = 'it''s'", [Comparison("param", "s", "=", "it's")]),
        (
            "metrics.auc > 0.9 AND params.C = '1.0' and tags.x != 'y'",
            [Comparison("metric", "auc", ">", 0.9), Comparison("param", "C", "=", "1.0"),
             Comparison("tag", "x", "!=", "y")],
        ),
    ],
)
def test_valid_filters_parse(text: str, expected: list[Comparison]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.auc >", r"position 13 found end of filter, expected a number"),
        ("metrics.auc > 'x'", r"position 14 found \"'x'\", expected a number"),
        ("params.C > 1", r"position 9 found '>', expected one of =, !=, LIKE, ILIKE, IN, NOT IN"),
        ("params.C = 1", r"position 11 found '1', expected a quoted string"),
        ("metrics.auc LIKE 1", r"position 12 found 'LIKE', expected one of =, !=, <"),
        ("foo = 1", r"position 0 found 'foo', expected metrics.KEY, params.KEY"),
        ("metrics.a > 1 or metrics.b < 2", r"position 14 found 'OR', expected AND \(OR is not supported"),
        ("metrics.a > 1 metrics.b > 2", r"position 14 found 'metrics.b', expected AND or the end"),
        ("params.a IN (1)", r"position 13 found '1', expected a quoted string in the IN list"),
        ("params.a IN 'x'", r"position 12 found \"'x'\", expected '\(' to start the list"),
        ("params.a IN ('x' 'y')", r"position 17 found \"'y'\", expected ',' or '\)'"),
        ("params.a NOT 'x'", r"position 13 found \"'x'\", expected IN after NOT"),
        ("params.a = 'x", r"unexpected character \"'\" at position 11"),
        ("metrics.a ~ 1", r"unexpected character '~' at position 10"),
        ("attributes.bogus = 'x'", r"position 0 found 'attributes.bogus', expected one of the attributes"),
        ("`k` = 'x'", r"position 0 found '`k`', expected metrics.KEY"),
        ("= 1", r"position 0 found '=', expected a key such as metrics.auc"),
    ],
)
def test_bad_filters_name_the_token_position_and_expectation(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_filter(text)


def test_order_by_forms() -> None:
    assert parse_order_by(["metrics.auc DESC", "attributes.start_time", "params.C ASC",
                           "run_name desc", "tags.`a b`"]) == [
        OrderKey("metric", "auc", False), OrderKey("attribute", "start_time", True),
        OrderKey("param", "C", True), OrderKey("attribute", "run_name", False),
        OrderKey("tag", "a b", True),
    ]
    assert parse_order_by("metrics.x") == [OrderKey("metric", "x", True)]


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("metrics.auc DOWN", r"found 'DOWN', expected ASC, DESC or the end"),
        ("'x'", r"found \"'x'\", expected a key"),
        ("nothing", r"found 'nothing', expected metrics.KEY"),
    ],
)
def test_bad_order_by(clause: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_order_by([clause])
