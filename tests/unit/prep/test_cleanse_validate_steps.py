"""The cleanse and validate steps on a data repo: outputs, recorded specs, re-runs, no commit
on failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.data.tables import open_file, read_table
from threadline.prep.cleanse import CleanseSpec, load_cleanse
from threadline.prep.ops import META_DIR
from threadline.prep.steps import check, cleanse, infer_schema, validate
from threadline.prep.validate import TableSchema, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]

DIRTY = b"""id,name,amount,region
1,  Ann ,10.0,north
2,Bob,,south
3,cy,30.0,west
4,Dee,1000.0,north
5,Eve,20.0,mars
"""

SPEC = """
format: threadline.cleanse/1
steps:
  - strip: [name]
  - missing: {amount: {strategy: mean}}
  - outliers: {amount: {method: clip, min: 0, max: 100}}
  - derive: {amount_x2: "amount * 2"}
"""


@pytest.fixture
def dirty(home: DataRepos, make_tree: MakeTree) -> str:
    for repo in ("raw", "clean", "valid"):
        home.create(repo)
    home.commit("raw", [make_tree("src", {"t.csv": DIRTY})], "raw")
    return "raw:t.csv"


def test_cleanse_records_its_statistics_and_reruns_identically(
    home: DataRepos, dirty: str, make_tree: MakeTree
) -> None:
    result = cleanse(home, dirty, "clean", CleanseSpec.from_yaml(SPEC))
    assert result.report == {"rows_in": 5, "rows_out": 5}
    table = read_table(home, "clean:t.parquet")
    assert table.column("name").to_pylist() == ["Ann", "Bob", "cy", "Dee", "Eve"]
    # The missing amount is filled with the mean (10+30+1000+20)/4 = 265, then clipped to 100.
    amounts = table.column("amount").to_pylist()
    assert amounts == [10.0, 100.0, 30.0, 100.0, 20.0]
    assert table.column("amount_x2").to_pylist() == [a * 2 for a in amounts]

    with open_file(home, f"clean:{META_DIR}/cleanse.yaml") as fh:
        fitted = load_cleanse(fh.read().decode())
    # New data whose mean is 90: the recorded fill value (265, clipped to 100) is used, not 90.
    new_rows = b"id,name,amount,region\n9,x,,north\n10,y,90.0,south\n"
    home.commit("raw", [make_tree("src2", {"t.csv": new_rows})], "new")
    again = cleanse(home, "raw:t.csv", "clean", fitted)
    assert again.report["rows_out"] == 2
    assert read_table(home, "clean:t.parquet").column("amount").to_pylist() == [100.0, 90.0]


def test_validate_infers_checks_and_commits_valid_rows_with_quarantine(home: DataRepos, dirty: str) -> None:
    rules = TableSchema.from_yaml("""
format: threadline.schema-rules/1
columns:
  - {name: id, type: int64, nullable: false, unique: true}
  - {name: name, type: string}
  - {name: amount, type: double, min: 0, max: 500, policy: {range: drop}}
  - {name: region, type: string, allowed: [north, south, east, west], policy: {allowed: quarantine}}
""")
    report = check(home, dirty, rules)
    assert (report.rows_valid, report.rows_dropped, report.rows_quarantined) == (3, 1, 1)
    result = validate(home, dirty, "valid", rules)
    assert read_table(home, "valid:t.parquet").column("id").to_pylist() == [1, 2, 3]
    quarantine = read_table(home, f"valid:{META_DIR}/quarantine.parquet")
    assert quarantine.column("id").to_pylist() == [5]
    assert quarantine.column("_violations").to_pylist() == ["region:allowed"]
    assert result.report == {"rows_in": 5, "rows_valid": 3, "rows_dropped": 1, "rows_quarantined": 1}
    inferred = infer_schema(home, dirty)
    assert [c.name for c in inferred.columns] == ["id", "name", "amount", "region"]


def test_a_failing_rule_commits_nothing(home: DataRepos, dirty: str) -> None:
    rules = TableSchema.from_yaml("""
format: threadline.schema-rules/1
columns:
  - {name: id, type: int64}
  - {name: name, type: string}
  - {name: amount, type: double, nullable: false}
  - {name: region, type: string}
""")
    with pytest.raises(ValidationFailed, match="amount"):
        validate(home, dirty, "valid", rules)
    assert home.resolve("valid").commit is None


def test_cleanse_keeps_the_input_profile_of_columns_it_does_not_touch(home: DataRepos, dirty: str) -> None:
    import json

    from threadline.prep.cleanse import untouched_columns
    from threadline.prep.profile import TableProfile

    home.create("cleaner")
    cleanse(home, dirty, "clean", CleanseSpec.from_yaml(SPEC))  # a prepared input with a profile
    spec = CleanseSpec.from_yaml("format: threadline.cleanse/1\nsteps:\n  - lower: [name]\n"
                                 "  - derive: {id2: \"id * 2\"}\n")
    assert untouched_columns(spec, ["id", "name", "amount", "region"]) == {"id", "amount", "region"}
    cleanse(home, "clean:t.parquet", "cleaner", spec)

    def stored(ref: str) -> dict[str, dict[str, object]]:
        with open_file(home, ref) as fh:
            return {c["name"]: c for c in json.load(fh)["columns"]}

    before, after = stored(f"clean:{META_DIR}/profile.json"), stored(f"cleaner:{META_DIR}/profile.json")
    fresh = {c["name"]: c for c in TableProfile.from_table(read_table(home, "cleaner:t.parquet"))
             .to_dict()["columns"]}
    assert list(after) == list(fresh) == ["id", "name", "amount", "region", "amount_x2", "id2"]
    assert after["amount"] == before["amount"]  # carried over, not recomputed
    assert after == fresh  # and exactly what profiling the output would give
    assert after["name"]["top"] != before["name"]["top"]  # "Ann" became "ann"


def test_a_spec_that_can_drop_rows_leaves_no_column_untouched() -> None:
    from threadline.prep.cleanse import untouched_columns

    spec = CleanseSpec.from_yaml("format: threadline.cleanse/1\nsteps:\n"
                                 "  - missing: {amount: {strategy: drop}}\n")
    assert untouched_columns(spec, ["id", "amount"]) == set()
    renamed = CleanseSpec.from_yaml("format: threadline.cleanse/1\nsteps:\n  - rename: {id: key}\n")
    assert untouched_columns(renamed, ["id", "amount"]) == {"amount"}
