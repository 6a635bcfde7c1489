"""Preparation steps are commits: metadata, lineage to the input, nothing on failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.data.repos import commit_node
from threadline.lineage import LineageGraph
from threadline.prep.ops import META_DIR, run_step, write_json

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def test_a_step_commits_its_output_with_params_report_and_lineage(
    home: DataRepos, make_tree: MakeTree
) -> None:
    home.create("raw")
    home.create("prepared")
    raw = home.commit("raw", [make_tree("src", {"t.csv": b"a\n1\n2\n"})], "raw").commit

    def produce(folder: Path) -> dict[str, object]:
        (folder / "out.csv").write_bytes(b"a\n1\n")
        write_json(folder / META_DIR / "note.json", {"kept": 1})
        return {"rows_in": 2, "rows_out": 1}

    result = run_step(home, step="demo", input_ref="raw@main", into="prepared",
                      params={"keep": 1}, produce=produce)
    assert result.created
    assert result.report == {"rows_in": 2, "rows_out": 1}
    meta = result.commit.metadata
    assert meta == {"step": "demo", "params": {"keep": 1},
                    "input": {"ref": "raw@main", "commit": raw.id},
                    "report": {"rows_in": 2, "rows_out": 1}}
    assert {e.path for e in home.manifest(result.commit)} == {"out.csv", f"{META_DIR}/note.json"}
    edges = LineageGraph(home.db).edges(commit_node(result.commit.id), "up")
    assert [(e.source.id, e.relation) for e in edges] == [(raw.id, "prep.demo")]

    again = run_step(home, step="demo", input_ref="raw@main", into="prepared",
                     params={"keep": 1}, produce=produce)
    assert not again.created  # same output: the branch stays where it is
    assert again.commit.id == result.commit.id


def test_a_failing_step_commits_nothing(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("raw")
    home.create("prepared")
    home.commit("raw", [make_tree("src", {"t.csv": b"a\n1\n"})], "raw")

    def produce(folder: Path) -> dict[str, object]:
        (folder / "half.csv").write_bytes(b"a\n")
        raise ValueError("column 'b' does not exist")

    with pytest.raises(ValueError, match="column 'b' does not exist"):
        run_step(home, step="demo", input_ref="raw", into="prepared", params={}, produce=produce)
    assert home.resolve("prepared").commit is None
