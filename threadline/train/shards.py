"""Training data: read a committed table (or take arrays), split it into shards, spill them.

The driver reads the table once, permutes its rows with the seed and writes each shard as
two `.npy` files in a scratch folder. Workers memory-map their shard by path (and keep it
open between epochs), so a shard crosses the process boundary as a path, not as pickled
arrays: the local pool and a Ray cluster on this machine share the disk. A Ray cluster on
other machines would need the scratch folder on shared storage (`spill(scratch=...)`), or
workers that read their row range from the data repo themselves: not built yet.

Labels are stored as numbers or fixed-width strings, never as object arrays, so loading a
shard never unpickles anything.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.data.repos import DataRepos

__all__ = ["Shard", "TrainData", "load_data", "load_shard", "seed_for", "spill"]


def seed_for(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from `seed` and integer keys (shard, epoch...), stable everywhere."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


@dataclass
class TrainData:
    """Features and labels held by the driver, and where they came from.

    Attributes:
        X: a 2-D float array.
        y: 1-D labels (numbers or strings).
        features: column names (or x0, x1... for arrays).
        target: the label column's name.
        ref: the data ref read ("" for arrays given in memory).
        commit_ref: the same ref pinned to its commit (`repo@<commit id>:path`), for resume.
    """

    X: np.ndarray
    y: np.ndarray
    features: list[str]
    target: str
    ref: str = ""
    commit_ref: str = ""

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])


def _labels(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        array = array.astype(str)  # fixed-width unicode: saved and loaded without pickle
    return array


def load_data(
    data: str | tuple[Any, Any], target: str, features: Sequence[str] | None, repos: DataRepos | None
) -> TrainData:
    """Read `data` - a committed table ref, or an `(X, y)` pair - into arrays.

    Raises:
        InvalidArgument: the target or a feature column is missing, or a feature is not numeric.
    """
    if isinstance(data, tuple):
        X, y = np.asarray(data[0], dtype=np.float64), _labels(data[1])
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise InvalidArgument(f"data=(X, y) needs a 2-D X and a 1-D y of as many rows; got shapes "
                                  f"{X.shape} and {y.shape}")
        return TrainData(X, y, [f"x{i}" for i in range(X.shape[1])], target or "y")
    if not isinstance(data, str):
        raise InvalidArgument(f"data must be a table ref like 'repo@main:train.parquet' or an (X, y) pair, "
                          f"not {type(data).__name__}")
    from threadline.data.tables import read_table

    assert repos is not None
    table = read_table(repos, data)
    names = list(table.column_names)
    if target not in names:
        raise InvalidArgument(f"{data} has no target column {target!r}; its columns are {', '.join(names)}")
    chosen = list(features) if features else [n for n in names if n != target]
    missing = [n for n in chosen if n not in names]
    if missing:
        raise InvalidArgument(f"{data} has no feature column(s) {', '.join(missing)}")
    try:
        X = np.column_stack([table.column(n).to_numpy().astype(np.float64) for n in chosen])
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{data}: features must be numeric ({exc}); encode them first "
                              "(threadline prep) or pass features=[...]") from exc
    resolved = repos.resolve(data)
    commit = resolved.require_commit()
    commit_ref = f"{resolved.repo.name}@{commit.id}:{resolved.path}"
    return TrainData(X, _labels(table.column(target).to_numpy(zero_copy_only=False)), chosen, target,
                     data, commit_ref)


@dataclass(frozen=True)
class Shard:
    """One shard on disk: `x.npy` and `y.npy` in `path`, `rows` rows."""

    path: str
    rows: int


@dataclass
class Spill:
    """A scratch folder of shards; `close()` removes it."""

    root: Path
    shards: list[Shard] = field(default_factory=list)

    def add(self, name: str, X: np.ndarray, y: np.ndarray) -> Shard:
        """Write one shard and return it."""
        folder = self.root / name
        folder.mkdir()
        np.save(folder / "x.npy", np.ascontiguousarray(X), allow_pickle=False)
        np.save(folder / "y.npy", y, allow_pickle=False)
        shard = Shard(str(folder), int(X.shape[0]))
        self.shards.append(shard)
        return shard

    def close(self) -> None:
        """Delete the scratch folder."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spill(scratch: str | Path | None = None) -> Spill:
    """A new scratch folder for shards (under `scratch`, default the system temp folder)."""
    return Spill(Path(tempfile.mkdtemp(prefix="tl-train-", dir=scratch)))


def split_rows(rows: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous [start, stop) ranges covering `rows` rows, sizes differing by at most one."""
    bounds = np.linspace(0, rows, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def shard_data(data: TrainData, parts: int, seed: int, out: Spill, *, classifier: bool) -> list[Shard]:
    """Permute the rows with `seed`, cut them into `parts` row ranges and write each as a shard.

    Raises:
        InvalidArgument: a classifier's shard would miss a class (the combined model could not
            agree on `classes_`).
    """
    if parts < 1 or parts > data.rows:
        raise InvalidArgument(f"cannot split {data.rows} rows into {parts} shards")
    order = np.random.default_rng(seed_for(seed, 0)).permutation(data.rows)
    classes = np.unique(data.y) if classifier else None
    shards = []
    for i, (start, stop) in enumerate(split_rows(data.rows, parts)):
        rows = order[start:stop]
        y = data.y[rows]
        if classes is not None:
            missing = np.setdiff1d(classes, np.unique(y))
            if missing.size:
                raise InvalidArgument(
                    f"shard {i} of {parts} has no rows of class(es) {', '.join(map(str, missing[:5]))}; "
                    "every shard must see every class - use fewer workers or more data")
        shards.append(out.add(f"shard-{i}", data.X[rows], y))
    return shards


@functools.lru_cache(maxsize=8)
def load_shard(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A shard's (X, y), memory-mapped; cached per worker process so epochs reuse it."""
    folder = Path(path)
    X = np.load(folder / "x.npy", mmap_mode="r", allow_pickle=False)
    y = np.load(folder / "y.npy", allow_pickle=False)
    return X, y
