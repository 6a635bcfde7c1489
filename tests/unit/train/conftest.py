"""Training fixtures: generated tables committed to a data repo in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from threadline.compute import LocalExecutor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from threadline.data.repos import DataRepos


@pytest.fixture
def commit_table(home: DataRepos, tmp_path: Path) -> Callable[..., str]:
    """`commit_table(X, y)`: commit a Parquet table (x0.., label) and return its ref."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    made: set[str] = set()

    def commit(X: Any, y: Any, repo: str = "ds", path: str = "train.parquet") -> str:
        if repo not in made:
            home.create(repo)
            made.add(repo)
        columns = {f"x{i}": X[:, i] for i in range(X.shape[1])}
        folder = tmp_path / f"src-{repo}"
        folder.mkdir(exist_ok=True)
        pq.write_table(pa.table({**columns, "label": y}), folder / path, row_group_size=max(1, len(y) // 4))
        home.commit(f"{repo}@main", [folder / path], "training data")
        return f"{repo}@main:{path}"

    return commit


@pytest.fixture(scope="session")
def pool() -> Iterator[LocalExecutor]:
    """One two-worker local executor shared by the training tests (workers import sklearn once)."""
    with LocalExecutor(workers=2) as executor:
        yield executor
