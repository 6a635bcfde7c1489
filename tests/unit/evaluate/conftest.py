"""Evaluation fixtures: a registry with two churn models and a committed validation table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from threadline.registry import ModelRegistry

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos

FEATURES = ["a", "b", "c"]


@dataclass
class Churn:
    """A registry holding `churn` v1 (weak: sees only feature c) and v2 (strong: sees a and b)."""

    registry: ModelRegistry
    ref: str
    commit: str
    table: pa.Table


def churn_table(rows: int, seed: int) -> pa.Table:
    """Features a, b, c; a string `segment` (one value is markup); the label `churned`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    label = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    segment = np.array(["retail", "<script>alert(1)</script>", "smb"], dtype=object)[np.arange(rows) % 3]
    return pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "segment": segment, "churned": label})


@pytest.fixture
def churn(home: DataRepos, tmp_path: Path) -> Churn:
    """Two registered LogisticRegressions fitted on frames, and 600 committed validation rows."""
    from sklearn.linear_model import LogisticRegression

    train = churn_table(400, seed=1).to_pandas()
    registry = ModelRegistry(home)
    weak: Any = LogisticRegression().fit(train[["c"]].assign(a=0.0, b=0.0)[FEATURES], train["churned"])
    strong: Any = LogisticRegression().fit(train[FEATURES], train["churned"])
    for model in (weak, strong):
        registry.register("churn", model, example=train[FEATURES].head(5))
    home.create("churn-splits")
    folder = tmp_path / "splits"
    folder.mkdir()
    table = churn_table(600, seed=2)
    pq.write_table(table, folder / "validation.parquet")
    pq.write_table(table.drop(["b"]), folder / "no_b.parquet")
    commit = home.commit("churn-splits", [folder], "validation split").commit.id
    return Churn(registry, "churn-splits@main:validation.parquet", commit, table)
