"""Training data: read a committed table (or take arrays), split it into shards, spill them.

The driver reads the table once and cuts it into shards by a seeded shuffle of row blocks
(up to 1,024 rows each, so a shard samples the whole table even when it is sorted, while
copying stays a sequence of block moves rather than a row-by-row gather). Each shard is
written straight into two memory-mapped `.npy` files in a scratch folder, in `/dev/shm`
where it has room (so spilling is a memory copy, not a disk write) and the system temp
folder otherwise. Workers memory-map their shard by path (and keep it open between epochs),
so a shard crosses the process boundary as a path, not as pickled arrays: the local pool
and a Ray cluster on this machine share the folder. A Ray cluster on other machines needs
the scratch folder on shared storage (`spill(scratch=...)`).

Scratch folders carry the driver's process id; a new one removes those of drivers that are
gone (killed before they could clean up), so `/dev/shm` never fills with orphans.

Labels are stored as numbers or fixed-width strings, never as object arrays, so loading a
shard never unpickles anything.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.errors import InvalidArgument
from threadline.storage.local import pid_alive

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from threadline.data.repos import DataRepos

__all__ = ["Shard", "TrainData", "distinct", "iter_shards", "load_data", "load_shard", "seed_for", "spill"]


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

    def _folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir()
        return folder

    def _done(self, folder: Path, rows: int) -> Shard:
        shard = Shard(str(folder), rows)
        self.shards.append(shard)
        return shard

    def add(self, name: str, X: np.ndarray, y: np.ndarray) -> Shard:
        """Write one shard and return it."""
        folder = self._folder(name)
        np.save(folder / "x.npy", np.ascontiguousarray(X), allow_pickle=False)
        np.save(folder / "y.npy", y, allow_pickle=False)
        return self._done(folder, int(X.shape[0]))

    def add_blocks(self, name: str, X: np.ndarray, y: np.ndarray, ranges: Sequence[tuple[int, int]]) -> Shard:
        """Write the rows of `ranges` ([start, stop) pairs, in order) as one shard, block by block."""
        folder = self._folder(name)
        rows = sum(stop - start for start, stop in ranges)
        for file, array in (("x.npy", np.ascontiguousarray(X)), ("y.npy", np.ascontiguousarray(y))):
            with open(folder / file, "wb") as out:  # plain writes: cheaper than faulting in mmap pages
                header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                          "shape": (int(rows), *map(int, array.shape[1:]))}
                np.lib.format.write_array_header_2_0(out, header)
                for start, stop in ranges:
                    out.write(array[start:stop].data)
        return self._done(folder, rows)

    def close(self) -> None:
        """Delete the scratch folder."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHM = Path("/dev/shm")  # noqa: S108 - a private mkdtemp folder inside it, mode 0700
_PREFIX = "tl-train-"


def _sweep(folder: Path) -> None:
    """Remove the scratch folders of drivers that died before cleaning up."""
    for entry in folder.glob(f"{_PREFIX}*"):
        pid = entry.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def spill(scratch: str | Path | None = None, need_bytes: int = 0) -> Spill:
    """A new scratch folder for shards: under `scratch` if given, else in `/dev/shm` when it
    has room for `need_bytes` (plus a quarter of its size to spare), else the system temp folder."""
    where: Path | None = Path(scratch) if scratch is not None else None
    if where is None and _SHM.is_dir() and os.access(_SHM, os.W_OK):
        total, _, free = shutil.disk_usage(_SHM)
        if free - need_bytes > total // 4:
            where = _SHM
    if where is not None:
        _sweep(where)
    return Spill(Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=where)))


def split_rows(rows: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous [start, stop) ranges covering `rows` rows, sizes differing by at most one."""
    bounds = np.linspace(0, rows, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def _block_size(rows: int, parts: int) -> int:
    """Rows per shuffled block: 1,024 at most, and at least 256 blocks per shard."""
    return max(1, min(1024, rows // (parts * 256)))


def shard_data(data: TrainData, parts: int, seed: int, out: Spill, *, classifier: bool) -> list[Shard]:
    """All the shards of `iter_shards`, written."""
    return list(iter_shards(data, parts, seed, out, classifier=classifier))


def iter_shards(data: TrainData, parts: int, seed: int, out: Spill, *, classifier: bool) -> Iterator[Shard]:
    """Shuffle row blocks with `seed`, deal them into `parts` shards of about equal rows, write
    each and yield it (so its fit can start while the next is written).

    Raises:
        InvalidArgument: a classifier's shard would miss a class (the combined model could not
            agree on `classes_`).
    """
    if parts < 1 or parts > data.rows:
        raise InvalidArgument(f"cannot split {data.rows} rows into {parts} shards")
    size = _block_size(data.rows, parts)
    starts = np.arange(0, data.rows, size)
    order = np.random.default_rng(seed_for(seed, 0)).permutation(len(starts))
    classes = distinct(data.y) if classifier else None
    for i, (first, last) in enumerate(split_rows(len(starts), parts)):
        chosen = np.sort(starts[order[first:last]])  # ascending: the copy walks memory forwards
        shard = out.add_blocks(f"shard-{i}", data.X, data.y,
                               [(int(a), int(min(a + size, data.rows))) for a in chosen])
        if classes is not None:
            missing = np.setdiff1d(classes, distinct(np.load(Path(shard.path) / "y.npy", allow_pickle=False)))
            if missing.size:
                raise InvalidArgument(
                    f"shard {i} of {parts} has no rows of class(es) {', '.join(map(str, missing[:5]))}; "
                    "every shard must see every class - use fewer workers or more data")
        yield shard


def distinct(y: np.ndarray) -> np.ndarray:
    """The sorted distinct labels; a counting pass instead of a sort for small-range integers."""
    if y.dtype.kind in "iu" and y.size:
        low, high = int(y.min()), int(y.max())
        if high - low < 1 << 20:
            return np.flatnonzero(np.bincount((y - low).astype(np.intp, copy=False))).astype(y.dtype) + low
    return np.unique(y)


@functools.lru_cache(maxsize=8)
def load_shard(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A shard's (X, y), memory-mapped; cached per worker process so epochs reuse it."""
    folder = Path(path)
    X = np.load(folder / "x.npy", mmap_mode="r", allow_pickle=False)
    y = np.load(folder / "y.npy", allow_pickle=False)
    return X, y
