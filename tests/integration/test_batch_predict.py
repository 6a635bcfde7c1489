"""Batch prediction: a registered model scores a committed table on worker processes, and the
predictions land as one commit with lineage; through the SDK and the CLI."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from threadline.compute import TaskFailed
from threadline.data.repos import commit_node
from threadline.data.tables import read_table
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage.graph import LineageGraph
from threadline.registry import ModelRegistry
from threadline.registry.versions import version_node
from threadline.serving.batch import predict_dataset

from .homes import CHILD_TIMEOUT, cli_executable

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos

FEATURES = ["a", "b", "c"]
ROWS = 3000


@dataclass
class Setup:
    registry: ModelRegistry
    model: Any
    table: pa.Table
    data_commit: str


@pytest.fixture
def scored(home: DataRepos, tmp_path: Path) -> Setup:
    """churn v1 (a LogisticRegression on a, b, c) and a 3000-row table in 6 row groups whose
    ids are shuffled, so that an order mix-up cannot go unnoticed."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    rng = np.random.default_rng(7)
    x = rng.normal(size=(ROWS, 3))
    table = pa.table({"id": rng.permutation(ROWS), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                      "segment": np.array(["x", "y", "z"], dtype=object)[np.arange(ROWS) % 3]})
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(table.select(FEATURES).to_pandas(), label)
    registry = ModelRegistry(home)
    registry.register("churn", model, example=table.select(FEATURES).to_pandas().head(5))
    registry.set_alias("churn", "production", 1)
    folder = tmp_path / "customers"
    folder.mkdir()
    pq.write_table(table, folder / "all.parquet", row_group_size=500)
    pq.write_table(table.drop(["c"]), folder / "no_c.parquet", row_group_size=500)
    home.create("customers")
    commit = home.commit("customers", [folder], "customers").commit.id
    return Setup(registry, model, table, commit)


def test_predictions_match_the_model_in_input_order_with_lineage(scored: Setup) -> None:
    seen: list[tuple[int, int]] = []
    result = predict_dataset(scored.registry, "churn@production", "customers@main:all.parquet",
                             "scores@main", workers=2, progress=lambda d, t: seen.append((d, t)))
    assert (result.model, result.version, result.rows) == ("churn", 1, ROWS)
    assert result.parts > 1
    assert result.data_commit == scored.data_commit
    out = read_table(scored.registry.repos, result.ref)
    assert out.column_names == ["id", "a", "b", "c", "segment", "prediction"]
    assert out["id"].to_pylist() == scored.table["id"].to_pylist()
    expected = scored.model.predict(scored.table.select(FEATURES).to_pandas())
    assert np.array_equal(out["prediction"].to_numpy(), expected)
    assert seen[-1] == (ROWS, ROWS)

    head = scored.registry.repos.resolve("scores@main").require_commit()
    assert head.id == result.commit
    assert head.metadata["params"]["version"] == 1  # the alias, pinned to its version
    assert head.metadata["input"]["commit"] == scored.data_commit
    edges = {(e.source, e.relation) for e in
             LineageGraph(scored.registry.repos.db).direct(commit_node(result.commit))}
    assert (version_node("churn", 1), "scored") in edges
    assert (commit_node(scored.data_commit), "scored_from") in edges


def test_a_second_run_adds_its_file_beside_the_first(scored: Setup) -> None:
    predict_dataset(scored.registry, "churn@1", "customers@main:all.parquet",
                    "scores@main:first.parquet", workers=1)
    result = predict_dataset(scored.registry, "churn", "customers@main:all.parquet",
                             "scores@monthly:second.parquet", workers=2)
    assert result.branch == "monthly"
    repos = scored.registry.repos
    assert [e.path for e in repos.manifest(repos.resolve("scores@main").require_commit())] == [
        "first.parquet"]
    assert read_table(repos, "scores@monthly:second.parquet").num_rows == ROWS


def test_a_missing_feature_column_is_named_and_nothing_is_committed(scored: Setup) -> None:
    with pytest.raises(InvalidArgument, match=r"lacks feature column\(s\) 'c' that churn@1 takes"):
        predict_dataset(scored.registry, "churn@1", "customers@main:no_c.parquet", "scores@main",
                        workers=2)
    with pytest.raises(NotFound):
        scored.registry.repos.get("scores")


def test_a_failing_task_commits_nothing(scored: Setup) -> None:
    scored.registry.repos.create("scores")
    # a string column among the features: the model raises inside the workers
    with pytest.raises(TaskFailed, match="predict part"):
        predict_dataset(scored.registry, "churn@1", "customers@main:all.parquet", "scores@main",
                        workers=2, columns=["a", "b", "segment"])
    assert scored.registry.repos.resolve("scores@main").commit is None


def test_an_existing_output_column_is_refused(scored: Setup) -> None:
    with pytest.raises(InvalidArgument, match="has a column 'id' already"):
        predict_dataset(scored.registry, "churn@1", "customers@main:all.parquet", "scores@main",
                        output_column="id")


def test_the_cli_scores_and_prints_json(scored: Setup, tmp_path: Path) -> None:
    done = subprocess.run(
        [cli_executable(), "predict", "churn@production", "customers@main:all.parquet",
         "--into", "scores@cli:p.parquet", "--workers", "2", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["rows"], report["version"], report["branch"]) == (ROWS, 1, "cli")
    out = read_table(scored.registry.repos, "scores@cli:p.parquet")
    assert out["id"].to_pylist() == scored.table["id"].to_pylist()

    missing = subprocess.run(
        [cli_executable(), "predict", "churn@1", "customers@main:no_c.parquet", "--into", "scores"],
        cwd=tmp_path, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert missing.returncode == InvalidArgument.exit_code
    assert "lacks feature column(s) 'c'" in missing.stderr


def test_a_model_fitted_on_an_array_takes_the_named_columns(scored: Setup) -> None:
    from sklearn.linear_model import LinearRegression

    x = scored.table.select(["a", "b"]).to_pandas().to_numpy()
    model = LinearRegression().fit(x, x[:, 0] - x[:, 1])
    scored.registry.register("diff", model, example=x[:3])  # a tensor signature of width 2
    with pytest.raises(InvalidArgument, match="takes an array of 2 features"):
        predict_dataset(scored.registry, "diff", "customers@main:all.parquet", "scores", workers=1)
    result = predict_dataset(scored.registry, "diff", "customers@main:all.parquet", "scores",
                             workers=1, columns=["a", "b"])
    out = read_table(scored.registry.repos, result.ref)
    assert np.allclose(out["prediction"].to_numpy(), model.predict(x))
