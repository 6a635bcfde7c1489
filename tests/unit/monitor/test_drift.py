"""Drift checks on planted drifts with known truth: every drift found, few false alarms."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.monitor.drift import check_drift
from threadline.monitor.reference import Reference
from threadline.monitor.window import summarise
from threadline.prep.profile import TableProfile

CATEGORIES = np.array(["a", "b", "c", "d", "e", "f", "g", "h"])
SHARES = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
#: column index -> (kind of drift, strength); every fifth column is categorical
PLANTED: dict[int, tuple[str, float]] = {
    0: ("mean", 0.1), 1: ("mean", 0.3), 2: ("scale", 1.2), 3: ("nulls", 0.05), 5: ("mean", 1.0),
    6: ("scale", 0.7), 4: ("shares", 0.05), 9: ("new", 0.02), 14: ("nulls", 0.03),
}


def planted(
    n: int, columns: int, seed: int, drifts: dict[int, tuple[str, float]]
) -> tuple[pa.Table, pa.Table]:
    """Reference and current tables; columns not in `drifts` have the same distribution in both."""
    rng = np.random.default_rng(seed)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    for j in range(columns):
        name = f"c{j:02d}"
        kind, strength = drifts.get(j, ("", 0.0))
        if j % 5 == 4:
            ref[name] = pa.array(rng.choice(CATEGORIES, n, p=SHARES))
            cats, shares = CATEGORIES, SHARES.copy()
            if kind == "shares":
                shares[0] -= strength
                shares[3] += strength
            elif kind == "new":
                cats, shares = np.append(CATEGORIES, "zz"), np.append(SHARES * (1 - strength), strength)
            mask = rng.random(n) < strength if kind == "nulls" else None
            cur[name] = pa.array(rng.choice(cats, n, p=shares), mask=mask)
        else:
            ref[name] = rng.normal(0.0, 1.0, n)
            x = rng.normal(0.0, 1.0, n)
            if kind == "mean":
                x += strength
            elif kind == "scale":
                x *= strength
            elif kind == "nulls":
                x[rng.random(n) < strength] = np.nan
            cur[name] = x
    return pa.table(ref), pa.table(cur)


@pytest.mark.parametrize("source", ["data", "profile"])
def test_every_planted_drift_is_found_with_at_most_one_false_alarm_per_100_clean_columns(source: str) -> None:
    expected = {f"c{j:02d}" for j in PLANTED}
    false_alarms, clean_checks = 0, 0
    for seed in range(5):
        ref_rows, cur_rows = planted(20_000, 30, seed, PLANTED)
        if source == "data":
            reference = Reference.from_table(ref_rows)
        else:
            reference = Reference.from_profile(TableProfile.from_table(ref_rows).to_dict())
        report = check_drift(reference, summarise(reference, cur_rows))
        found = set(report.drifted)
        assert expected <= found, f"seed {seed}: missed {sorted(expected - found)}"
        false_alarms += len(found - expected)
        clean_checks += 30 - len(expected)
        assert report.no_verdict == []
    assert clean_checks >= 100
    assert false_alarms <= clean_checks / 100


def test_clean_columns_at_100k_rows_raise_no_alarm_though_tiny_shifts_are_significant() -> None:
    ref_rows, cur_rows = planted(100_000, 10, 11, {0: ("mean", 0.03), 4: ("shares", 0.01)})
    reference = Reference.from_table(ref_rows)
    report = check_drift(reference, summarise(reference, cur_rows))
    assert report.drifted == []
    tiny = report.column("c00")
    assert tiny.p_adjusted is not None
    assert tiny.p_adjusted < 0.05  # the shift is detected and shown...
    assert tiny.effect == "wasserstein"
    assert 0.01 < (tiny.effect_value or 0) < 0.05  # ...but under the minimum effect: no alarm
    stricter = {"wasserstein": 0.02, "psi": 0.001}
    assert check_drift(reference, summarise(reference, cur_rows), min_effect=stricter).drifted[:1] == ["c00"]


def test_the_report_names_the_effect_and_the_new_category() -> None:
    ref_rows, cur_rows = planted(20_000, 15, 7, PLANTED)
    reference = Reference.from_table(ref_rows)
    report = check_drift(reference, summarise(reference, cur_rows))
    assert report.column("c03").effect == "null_rate"
    assert report.column("c03").effect_value == pytest.approx(0.05, abs=0.01)
    assert report.column("c05").effect_value == pytest.approx(1.0, rel=0.1)  # in standard deviations
    assert report.column("c09").unlisted.keys() == {"zz"}
    assert report.column("c00").test == "chisquare"
    assert report.share == len(report.drifted) / 15
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["drifted"] == report.drifted
    assert {"psi", "jensenshannon", "null_rate", "wasserstein"} <= set(as_json["columns"][0]["effects"])


def test_small_windows_use_ks_and_still_find_a_large_shift() -> None:
    rng = np.random.default_rng(3)
    reference = Reference.from_table({"x": rng.normal(size=5000), "y": rng.normal(size=5000)})
    window = summarise(reference, {"x": rng.normal(0.8, 1.0, 200), "y": rng.normal(size=200)})
    report = check_drift(reference, window)
    assert report.column("x").test == "ks"
    assert report.drifted == ["x"]


def test_empty_all_null_single_row_and_missing_columns_give_no_verdict() -> None:
    rng = np.random.default_rng(4)
    reference = Reference.from_table({"x": rng.normal(size=1000), "c": rng.choice(np.array(["a", "b"]), 1000),
                                      "gone": rng.normal(size=1000)})
    windows = {
        "empty": {"x": np.empty(0), "c": np.empty(0, dtype=object)},
        "all NaN": {"x": np.full(50, np.nan), "c": pa.array([None] * 50, pa.string())},
        "one row": {"x": np.array([0.3]), "c": np.array(["a"])},
    }
    for what, rows in windows.items():
        report = check_drift(reference, summarise(reference, rows))
        assert report.no_verdict == ["x", "c", "gone"], what
        assert report.drifted == []
        assert report.share == 0.0
        assert all(c.reason for c in report.columns)
        assert json.dumps(report.to_dict(), allow_nan=False)
    assert "not in the window" in report.column("gone").reason
    empty_ref = Reference.from_table({"x": np.full(20, np.nan)})
    judged = check_drift(empty_ref, summarise(empty_ref, {"x": np.arange(20.0)}))
    assert "reference has no values" in judged.column("x").reason


def test_per_column_test_overrides_and_holm() -> None:
    ref_rows, cur_rows = planted(20_000, 10, 8, PLANTED)
    reference = Reference.from_table(ref_rows)
    window = summarise(reference, cur_rows)
    report = check_drift(reference, window, tests={"c01": "ks", "c04": "psi", "c02": "wasserstein"},
                         correction="holm")
    assert report.column("c01").test == "ks"
    assert report.column("c01").drifted
    assert report.column("c04").p_value is None
    assert report.column("c04").test == "psi"
    assert report.column("c02").statistic == report.column("c02").effects["wasserstein"]
    assert report.correction == "holm"
    with pytest.raises(InvalidArgument, match="Wasserstein needs ordered values"):
        check_drift(reference, window, tests={"c04": "wasserstein"})
    with pytest.raises(InvalidArgument, match="unknown test 'tt'"):
        check_drift(reference, window, tests={"c01": "tt"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="alpha=2"):
        check_drift(reference, window, alpha=2)
    with pytest.raises(InvalidArgument, match="unknown correction"):
        check_drift(reference, window, correction="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="summarised against another reference"):
        check_drift(Reference.from_table({"z": np.arange(5.0)}), window)
    with pytest.raises(InvalidArgument, match="not in the drift report"):
        report.column("nope")


def test_merged_window_summaries_check_like_the_whole_window() -> None:
    ref_rows, cur_rows = planted(20_000, 10, 9, PLANTED)
    reference = Reference.from_table(ref_rows)
    whole = check_drift(reference, summarise(reference, cur_rows))
    parts = [summarise(reference, cur_rows.slice(i, 5000)) for i in range(0, 20_000, 5000)]
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    assert check_drift(reference, merged).to_dict() == whole.to_dict()
