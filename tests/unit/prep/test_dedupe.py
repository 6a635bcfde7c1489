"""De-duplication: exact rows, keys with keep policies, nulls, streaming, near-duplicates, reports."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from threadline.errors import InvalidArgument
from threadline.prep.dedupe import (
    FORMAT,
    DedupeReport,
    DedupeSpec,
    dedupe_table,
    lsh_params,
    minhash,
)


def run(
    table: pa.Table, spec: DedupeSpec, chunk: int | None = None
) -> tuple[list[Any], list[Any], DedupeReport]:
    """Dedupe `table`; return the ids kept, the ids removed (stream order) and the report."""
    report = DedupeReport.empty(spec)
    kept: list[Any] = []
    removed: list[Any] = []
    for status, batch in dedupe_table(
        lambda: table.to_batches(max_chunksize=chunk), spec, report=report, removed=True
    ):
        (kept if status == "kept" else removed).extend(batch.column("id").to_pylist())
    assert sorted(kept + removed) == sorted(table.column("id").to_pylist())
    assert report.rows_in == table.num_rows
    assert report.rows_kept == len(kept)
    assert sum(report.removed.values()) == len(removed)
    return sorted(kept), sorted(removed), report


KEYED = pa.table(
    {
        "id": [0, 1, 2, 3, 4, 5, 6, 7],
        "user": ["a", "b", "a", "c", "b", "a", "c", "d"],
        "ts": [5, 1, 9, 3, 1, 7, None, 2],
    }
)


# --- exact duplicates ---------------------------------------------------------------------------


def test_exact_duplicates_keep_the_first_of_each_identical_row() -> None:
    table = pa.table({"x": [1, 2, 1, 1, 2, 3, 1], "y": ["a", "b", "a", "b", "b", "c", "a"]})
    spec = DedupeSpec()
    report = DedupeReport.empty(spec)
    kept = pa.Table.from_batches(
        [b for s, b in dedupe_table(lambda: table.to_batches(), spec, report=report) if s == "kept"]
    )
    assert kept.to_pydict() == {"x": [1, 2, 1, 3], "y": ["a", "b", "b", "c"]}
    assert report.removed == {"exact": 3}
    assert (report.rows_in, report.rows_kept) == (7, 4)


def test_exact_duplicates_compare_every_column_including_the_id() -> None:
    table = pa.table({"id": [0, 1, 2], "v": [1, 1, 1]})
    assert run(table, DedupeSpec())[0] == [0, 1, 2]
    assert run(table.drop_columns([]), DedupeSpec(keys=("v",)))[0] == [0]


@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        ("first", [0, 1, 3, 7]),
        ("last", [4, 5, 6, 7]),
        # a: ts 5, 9, 7 -> row 2; b: ts tie 1, 1 -> the later row 4; c: 3 beats null -> row 3.
        ("latest:ts", [2, 3, 4, 7]),
    ],
)
def test_keys_with_each_keep_policy_keep_exactly_the_expected_rows(keep: str, kept: list[int]) -> None:
    got_kept, got_removed, report = run(KEYED, DedupeSpec(keys=("user",), keep=keep))
    assert got_kept == kept
    assert got_removed == sorted(set(range(8)) - set(kept))
    assert report.removed == {"keys": 4}


def test_latest_on_timestamps_and_floats_with_nan() -> None:
    table = pa.table(
        {
            "id": [0, 1, 2, 3],
            "k": [1, 1, 2, 2],
            "when": pa.array([2_000, 1_000, 5, 6], pa.timestamp("ms")),
            "score": [0.5, float("nan"), float("nan"), -1.0],
        }
    )
    assert run(table, DedupeSpec(keys=("k",), keep="latest:when"))[0] == [0, 3]
    assert run(table, DedupeSpec(keys=("k",), keep="latest:score"))[0] == [0, 3]


def test_null_keys_equal_each_other_but_not_zero_or_empty() -> None:
    table = pa.table(
        {
            "id": list(range(7)),
            "n": pa.array([None, 0, None, 0, None, 1, 1], pa.int64()),
            "s": ["", None, None, "", None, "x", "x"],
        }
    )
    assert run(table, DedupeSpec(keys=("n",)))[0] == [0, 1, 5]
    assert run(table, DedupeSpec(keys=("s",)))[0] == [0, 1, 5]
    assert run(table, DedupeSpec(keys=("n", "s")))[0] == [0, 1, 2, 3, 5]
    assert run(table, DedupeSpec(keys=("n", "s"), keep="last"))[0] == [0, 1, 3, 4, 6]


def test_float_keys_treat_negative_zero_and_nan_as_one_value() -> None:
    table = pa.table({"id": [0, 1, 2, 3], "f": [0.0, -0.0, float("nan"), float("nan")]})
    assert run(table, DedupeSpec(keys=("f",)))[0] == [0, 2]


def test_dictionary_and_binary_keys_hash_like_their_values() -> None:
    table = pa.table(
        {
            "id": [0, 1, 2, 3],
            "d": pa.array(["p", "q", "p", None]).dictionary_encode(),
            "b": pa.array([b"x", b"y", b"x", None]),
        }
    )
    assert run(table, DedupeSpec(keys=("d",)))[0] == [0, 1, 3]
    assert run(table, DedupeSpec(keys=("d", "b")))[0] == [0, 1, 3]


def random_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(n),
            "k": rng.integers(0, n // 4, n),
            "s": [f"s{v}" for v in rng.integers(0, 3, n)],
            "t": rng.integers(0, 10, n),
        }
    )


@pytest.mark.parametrize("keep", ["first", "last", "latest:t"])
def test_many_batches_give_the_same_result_as_one(keep: str) -> None:
    table = random_table(3000, seed=1)
    spec = DedupeSpec(keys=("k", "s"), keep=keep)
    whole = run(table, spec)
    assert 0 < len(whole[1]) < 3000
    for chunk in (1000, 97, 7):
        got = run(table, spec, chunk=chunk)
        assert got[:2] == whole[:2]
        assert got[2].to_dict() == whole[2].to_dict()


def test_keep_last_matches_a_python_model() -> None:
    table = random_table(2000, seed=2)
    model: dict[tuple[Any, ...], tuple[int, int]] = {}
    for row in table.to_pylist():
        key = (row["k"], row["s"])
        if key not in model or row["t"] >= model[key][0]:
            model[key] = (row["t"], row["id"])
    expected = sorted(i for _, i in model.values())
    assert run(table, DedupeSpec(keys=("k", "s"), keep="latest:t"), chunk=300)[0] == expected


def test_second_pass_that_differs_raises() -> None:
    calls: list[int] = []

    def source() -> list[pa.RecordBatch]:
        calls.append(1)
        batches: list[pa.RecordBatch] = (KEYED if len(calls) == 1 else KEYED.slice(0, 5)).to_batches()
        return batches

    with pytest.raises(InvalidArgument, match=r"5 rows on its second pass but 8 on its first"):
        list(dedupe_table(source, DedupeSpec(keys=("user",), keep="last")))


def test_without_removed_only_kept_batches_are_yielded_and_empty_input_yields_nothing() -> None:
    statuses = {s for s, _ in dedupe_table(lambda: KEYED.to_batches(), DedupeSpec(keys=("user",)))}
    assert statuses == {"kept"}
    empty = KEYED.slice(0, 0)
    for keep in ("first", "last"):
        assert list(dedupe_table(lambda: empty.to_batches(), DedupeSpec(keep=keep), removed=True)) == []


# --- near duplicates ----------------------------------------------------------------------------


def sentences(n: int, rng: random.Random) -> list[str]:
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(400)]
    out: set[str] = set()
    while len(out) < n:
        out.add(" ".join(rng.choices(words, k=20)))
    return sorted(out)


def small_edit(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(text))
        kind = rng.choice(("substitute", "delete", "insert"))
        if kind == "substitute":
            text = text[:i] + rng.choice("xyz") + text[i + 1 :]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + rng.choice("xyz") + text[i:]
    return text


def test_near_duplicates_finds_planted_pairs_with_few_false_merges() -> None:
    rng = random.Random(42)
    base = sentences(500, rng)
    originals = rng.sample(range(500), 20)
    rows = [(i, text) for i, text in enumerate(base)]
    rows += [(500 + j, small_edit(base[i], rng)) for j, i in enumerate(originals)]
    rng.shuffle(rows)
    table = pa.table({"id": [i for i, _ in rows], "text": [t for _, t in rows]})
    position = {i: p for p, (i, _) in enumerate(rows)}
    _kept, removed, report = run(table, DedupeSpec(keys=("id",), near="text"), chunk=128)
    found = 0
    planted: set[int] = set()
    for j, i in enumerate(originals):
        later = max(i, 500 + j, key=position.__getitem__)
        planted.add(later)
        found += later in removed
    false_merges = len(set(removed) - planted)
    assert found >= 18
    assert false_merges <= 2
    assert report.removed == {"keys": 0, "near": len(removed)}


def test_near_rule_runs_after_exact_and_keeps_the_first_of_a_group() -> None:
    text = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun"
    table = pa.table(
        {
            "id": [0, 1, 2, 3, 4, 5],
            "text": [text + "!", text, text, "something else entirely, nothing alike", None, None],
        }
    )
    spec = DedupeSpec(near="text", threshold=0.7)
    kept, _removed, report = run(table, spec, chunk=2)
    assert kept == [0, 3, 4, 5]
    assert report.removed == {"exact": 0, "near": 2}
    assert [r["id"] for r in report.examples["near"]] == [1, 2]
    by_text = DedupeSpec(keys=("text",), near="text", threshold=0.7)
    assert run(table, by_text)[2].removed == {"keys": 2, "near": 1}


def test_minhash_estimates_jaccard_and_handles_short_and_unicode_texts() -> None:
    spec = DedupeSpec(num_perm=256, shingle=3)
    a = "abcdefghijklmnopqrstuvwxyz0123456789"
    b = a[:18] + "ABCDEFGHIJKLMNOPQR"
    sa = {a[i : i + 3] for i in range(len(a) - 2)}
    sb = {b[i : i + 3] for i in range(len(b) - 2)}
    true = len(sa & sb) / len(sa | sb)
    sigs = minhash([a, b, "", "é", "é", "日本語テキスト"], spec)
    assert sigs.shape == (6, 256)
    assert abs(float((sigs[0] == sigs[1]).mean()) - true) < 0.1
    assert (sigs[3] == sigs[4]).all()
    assert (sigs[2] != sigs[3]).any()
    # The signature of a text does not depend on the other texts of its batch.
    assert (minhash(["日本語テキスト"], spec)[0] == sigs[5]).all()


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.5, 128), (0.8, 128), (0.9, 64), (1.0, 16)])
def test_lsh_params_fit_the_signature(threshold: float, num_perm: int) -> None:
    bands, rows = lsh_params(threshold, num_perm)
    assert 1 <= bands * rows <= num_perm
    # The S-curve's steepest point sits near the threshold.
    assert abs((1 / bands) ** (1 / rows) - threshold) < 0.2


# --- spec, validation, report -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, r"threshold 0 must be a number with 0 < threshold <= 1"),
        ({"threshold": 1.5}, r"threshold 1.5 must be"),
        ({"threshold": True}, r"threshold True must be"),
        ({"keep": "newest"}, r"keep policy 'newest' is not 'first', 'last' or 'latest:COLUMN'"),
        ({"keep": "latest:"}, r"keep policy 'latest:' is not"),
        ({"keys": ("a", "a")}, r"key columns \['a', 'a'\] repeat a column"),
        ({"num_perm": 1}, r"num_perm 1 must be an integer in \[2, 1024\]"),
        ({"shingle": 0}, r"shingle 0 must be an integer in \[1, 64\]"),
        ({"seed": -1}, r"seed -1 must be an integer"),
        ({"near": ""}, r"near column '' must be a non-empty string"),
    ],
)
def test_bad_spec_values_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        DedupeSpec(**kwargs)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DedupeSpec(keys=("nope",)), r"dedupe column 'nope' is not in the table; columns: \['id'"),
        (DedupeSpec(keep="latest:gone"), r"dedupe column 'gone' is not in the table"),
        (DedupeSpec(near="missing"), r"dedupe column 'missing' is not in the table"),
        (DedupeSpec(near="id"), r"dedupe column 'id' has type int64; it must be a string"),
        (DedupeSpec(keep="latest:user"), r"dedupe column 'user' has type string; it must be a number"),
    ],
)
def test_validate_names_the_bad_column(spec: DedupeSpec, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec.validate(KEYED.schema)
    with pytest.raises(InvalidArgument, match=message):
        list(dedupe_table(lambda: KEYED.to_batches(), spec))


def test_whole_row_dedupe_rejects_unhashable_columns() -> None:
    table = pa.table({"id": [1], "tags": [["a"]]})
    with pytest.raises(InvalidArgument, match=r"column 'tags' \(no keys: every column\) has type list"):
        DedupeSpec().validate(table.schema)
    DedupeSpec(keys=("id",)).validate(table.schema)


def test_report_counts_and_examples() -> None:
    table = pa.table({"id": list(range(20)), "k": [i % 3 for i in range(20)]})
    spec = DedupeSpec(keys=("k",))
    kept, _removed, report = run(table, spec, chunk=4)
    assert kept == [0, 1, 2]
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["rows_in"] == 20
    assert data["rows_kept"] == 3
    assert data["removed"] == {"keys": 17}
    assert data["examples"] == {"keys": [{"id": i, "k": i % 3} for i in range(3, 8)]}
    assert data["spec"] == spec.to_dict()


def test_spec_json_round_trip_and_bad_definitions() -> None:
    spec = DedupeSpec(
        keys=("a", "b"), keep="latest:t", near="text", threshold=0.75, num_perm=64, shingle=4, seed=9
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["format"] == FORMAT
    assert DedupeSpec.from_dict(data) == spec
    assert DedupeSpec.from_dict({"format": FORMAT}) == DedupeSpec()
    with pytest.raises(InvalidArgument, match=r"not a dedupe definition: format is 'threadline.split/1'"):
        DedupeSpec.from_dict({**data, "format": "threadline.split/1"})
    with pytest.raises(InvalidArgument, match=r"unknown keys \['extra'\]"):
        DedupeSpec.from_dict({**data, "extra": 1})
    with pytest.raises(InvalidArgument, match=r"'keys' must be a list"):
        DedupeSpec.from_dict({**data, "keys": "a"})
    with pytest.raises(InvalidArgument, match=r"threshold 2 must be"):
        DedupeSpec.from_dict({**data, "threshold": 2})


def test_seed_changes_hashes_but_not_exact_results() -> None:
    table = random_table(500, seed=3)
    assert run(table, DedupeSpec(keys=("k",), seed=1))[0] == run(table, DedupeSpec(keys=("k",), seed=2))[0]
