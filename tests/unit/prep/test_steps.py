"""The split and profile steps on committed tables: parts, profiles, definition, lineage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from threadline.data.repos import commit_node
from threadline.data.tables import open_file
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage import LineageGraph
from threadline.prep.ops import META_DIR
from threadline.prep.profile import TableProfile
from threadline.prep.split import SplitSpec
from threadline.prep.steps import profile, split

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def _csv(rows: int) -> bytes:
    lines = ["id,label,amount,day"]
    lines += [f"u{i},{'yes' if i % 4 == 0 else 'no'},{i * 1.5},2025-01-{1 + i % 28:02d}"
              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def raw(home: DataRepos, make_tree: MakeTree) -> str:
    home.create("raw")
    home.create("splits")
    home.commit("raw", [make_tree("src", {"t.csv": _csv(1000)})], "raw")
    return "raw@main:t.csv"


def _read(home: DataRepos, ref: str) -> object:
    with open_file(home, ref) as fh:
        return pq.read_table(fh)


def test_stratified_split_commits_exact_parts_profiles_and_definition(
    home: DataRepos, raw: str
) -> None:
    spec = SplitSpec({"train": 0.8, "validation": 0.2}, method="stratify", stratify="label", seed=3)
    result = split(home, raw, "splits", spec)
    assert result.report == {"rows": {"train": 800, "validation": 200}, "total": 1000}
    train = _read(home, "splits:train.parquet")
    validation = _read(home, "splits:validation.parquet")
    assert train.num_rows == 800
    assert validation.num_rows == 200
    labels = validation.column("label").to_pylist()  # type: ignore[attr-defined]
    assert labels.count("yes") == 50
    assert labels.count("no") == 150
    ids = set(train.column("id").to_pylist()) | set(validation.column("id").to_pylist())  # type: ignore[attr-defined]
    assert len(ids) == 1000

    with open_file(home, f"splits:{META_DIR}/split.json") as fh:
        definition = json.load(fh)
    assert SplitSpec.from_dict(definition["spec"]) == spec
    assert definition["rows"] == {"train": 800, "validation": 200}
    with open_file(home, f"splits:{META_DIR}/profile.validation.json") as fh:
        prof = TableProfile.from_dict(json.load(fh))
    assert prof.rows == 200
    assert prof.columns["amount"].count == 200

    meta = result.commit.metadata
    assert meta["step"] == "split"
    assert meta["params"] == spec.to_dict()
    source = home.resolve("raw").require_commit()
    up = LineageGraph(home.db).edges(commit_node(result.commit.id), "up")
    assert [(e.source.id, e.relation) for e in up] == [(source.id, "prep.split")]


def test_hash_split_keeps_rows_in_their_part_when_data_grows(
    home: DataRepos, raw: str, make_tree: MakeTree
) -> None:
    spec = SplitSpec({"train": 0.7, "test": 0.3}, method="hash", by=("id",))
    split(home, raw, "splits", spec)
    before = {p: set(_read(home, f"splits:{p}.parquet").column("id").to_pylist())  # type: ignore[attr-defined]
              for p in spec.parts}
    home.commit("raw", [make_tree("src", {"t.csv": _csv(1500)})], "more rows")
    split(home, "raw:t.csv", "splits", spec)
    after = {p: set(_read(home, f"splits:{p}.parquet").column("id").to_pylist())  # type: ignore[attr-defined]
             for p in spec.parts}
    assert before["train"] <= after["train"]
    assert before["test"] <= after["test"]
    assert sum(len(v) for v in after.values()) == 1500


def test_bad_parameters_commit_nothing(home: DataRepos, raw: str) -> None:
    with pytest.raises(InvalidArgument, match="split column 'nope' is not in the table"):
        split(home, raw, "splits", SplitSpec({"a": 0.5, "b": 0.5}, method="hash", by=("nope",)))
    with pytest.raises(NotFound, match=r"no file 't\.txt' in commit"):
        split(home, "raw:t.txt", "splits", SplitSpec({"a": 1.0}))
    assert home.resolve("splits").commit is None


def test_profile_of_a_committed_csv(home: DataRepos, raw: str) -> None:
    prof = profile(home, raw)
    assert prof.rows == 1000
    assert prof.columns["amount"].min == 0.0
    assert prof.columns["amount"].max == 1498.5
    assert dict(prof.columns["label"].top or []) == {"no": 750, "yes": 250}


def test_steps_report_every_row_they_read_to_progress(home: DataRepos, raw: str) -> None:
    from threadline.prep.cleanse import CleanseSpec
    from threadline.prep.dedupe import DedupeSpec
    from threadline.prep.steps import cleanse, dedupe

    home.create("clean")
    home.create("cleansed")
    counts: dict[str, list[int]] = {"split": [], "dedupe": [], "cleanse": [], "profile": []}
    split(home, raw, "splits", SplitSpec({"a": 0.5, "b": 0.5}), progress=counts["split"].append)
    dedupe(home, raw, "clean", DedupeSpec(), progress=counts["dedupe"].append)
    # a mean fill reads the table twice: once to fit the mean, once to apply it
    spec = CleanseSpec.from_dict({"format": "threadline.cleanse/1",
                                  "steps": [{"missing": {"amount": {"strategy": "mean"}}}]})
    cleanse(home, raw, "cleansed", spec, progress=counts["cleanse"].append)
    profile(home, raw, progress=counts["profile"].append)
    assert {step: sum(rows) for step, rows in counts.items()} == {
        "split": 1000, "dedupe": 1000, "cleanse": 2000, "profile": 1000}
