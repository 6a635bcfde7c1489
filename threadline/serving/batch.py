"""Batch prediction: score a committed table with a registered model, commit the result.

    result = predict_dataset(registry, "churn@production", "customers@main:all.parquet",
                             into="churn-scores@main", workers=4)

The model version is resolved once (an alias becomes the version number it points at now,
recorded with the output) and so is the table (its commit id is recorded). The driver copies
the table and the model's files into a scratch folder once; each task reads a contiguous run
of the table's Parquet row groups and loads the model in its worker process (once per process:
a worker keeps it between tasks), predicts, and writes its part as Parquet. A part crosses the
process boundary as a path, as training shards do (train/shards.py), so the local pool and a
Ray cluster on this machine share the disk. The driver then concatenates the parts in input
order into one file and makes one commit into `into`, with lineage edges
`model_version -[scored]-> commit` and `input data commit -[scored_from]-> commit`. A failure
in any task commits nothing.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.compute import Task, open_executor
from threadline.data.paths import normalize_path
from threadline.data.refs import parse_ref
from threadline.data.repos import commit_node
from threadline.data.tables import open_file, read_table
from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.registry.flavors.base import LoadPolicy
from threadline.registry.flavors.catalog import load_folder
from threadline.registry.models_admin import check_loadable
from threadline.registry.versions import version_node

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from threadline.compute import Executor
    from threadline.registry.records import ModelVersion
    from threadline.registry.registry import ModelRegistry

__all__ = ["PredictResult", "predict_dataset", "predict_part"]

#: lineage relations into a prediction commit
SCORED = "scored"
SCORED_FROM = "scored_from"
DEFAULT_PATH = "predictions.parquet"
#: rows per row group when a CSV/JSON input is converted to Parquet for splitting
ROW_GROUP_ROWS = 65_536
#: tasks per worker: a few, so that a slow part does not leave the other workers idle
TASKS_PER_WORKER = 2
COMMIT_TRIES = 5


@dataclass(frozen=True)
class PredictResult:
    """What `predict_dataset` committed.

    Attributes:
        commit: the new commit's id in `repo`.
        repo: the repo written to.
        branch: the branch moved.
        path: the in-repo path of the predictions file.
        rows: rows scored.
        seconds: wall-clock time, resolving to commit.
        model: the model's name.
        version: the version number that scored (an alias is resolved once, up front).
        data_ref: the table ref as given.
        data_commit: the commit the table was read at.
        parts: how many tasks the table was split into.
    """

    commit: str
    repo: str
    branch: str
    path: str
    rows: int
    seconds: float
    model: str
    version: int
    data_ref: str
    data_commit: str
    parts: int = 1
    features: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """The predictions file as a pinned ref, `repo@commit:path`."""
        return f"{self.repo}@{self.commit}:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"commit": self.commit, "repo": self.repo, "branch": self.branch,
                "path": self.path, "ref": self.ref, "rows": self.rows, "seconds": self.seconds,
                "model": self.model, "version": self.version, "data_ref": self.data_ref,
                "data_commit": self.data_commit, "parts": self.parts, "features": self.features}


# ---------------------------------------------------------------------- in the worker
@functools.lru_cache(maxsize=2)
def _load(folder: str, flavor: str, policy: LoadPolicy) -> Any:
    """The model, loaded once per worker process (every file checked against its hash)."""
    return load_folder(Path(folder), policy, flavor=flavor)


def _model_input(table: Any, features: Sequence[str], tensor: bool) -> Any:
    if tensor:
        return np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in features])
    try:
        import pandas  # noqa: F401 - frames keep column names, which fitted models check
    except ImportError:
        return table.select(list(features))
    return table.select(list(features)).to_pandas()


def predictions_array(values: Any, rows: int) -> Any:
    """A model's output as an Arrow array of `rows` values (a row of several outputs, e.g.
    class probabilities, becomes a list)."""
    import pyarrow as pa

    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0 or array.shape[0] != rows:
        raise InvalidArgument(f"the model returned {array.shape[0] if array.ndim else 1} "
                              f"predictions for {rows} rows; it must return one per row")
    if array.ndim == 1 and array.dtype != object:
        return pa.array(array)
    return pa.array(array.tolist())


def predict_part(job: dict[str, Any]) -> int:
    """Predict row groups `job["groups"]` of the Parquet file `job["input"]` and write them,
    with the predictions appended as `job["output_column"]`, to `job["output"]`. Returns the
    number of rows written. Runs in a worker process (a `compute.Task`)."""
    import pyarrow.parquet as pq

    policy = LoadPolicy(tuple(job["trusted"]), job["allow_pickle"], job["allow_code"],
                        job["artifact_hash"])
    model = _load(job["model_folder"], job["flavor"], policy)
    table = pq.ParquetFile(job["input"]).read_row_groups(job["groups"])
    x = _model_input(table, job["features"], job["tensor"])
    table = table.append_column(job["output_column"],
                                predictions_array(model.predict(x), table.num_rows))
    pq.write_table(table, job["output"])
    return int(table.num_rows)


# ---------------------------------------------------------------------- in the driver
def _signature_columns(version: ModelVersion) -> list[str] | None:
    inputs = (version.signature or {}).get("inputs") or {}
    if inputs.get("type") == "columns":
        return [str(c["name"]) for c in inputs.get("columns", [])]
    return None


def _features(version: ModelVersion, names: list[str], columns: Sequence[str] | None,
              ref: str) -> tuple[list[str], bool]:
    """The columns fed to the model and whether they go as one array (a tensor signature)."""
    declared = _signature_columns(version)
    chosen = list(columns) if columns else declared
    tensor = declared is None
    if chosen is None:
        shape = ((version.signature or {}).get("inputs") or {}).get("shape") or []
        width = shape[1] if len(shape) == 2 else -1
        if width not in (-1, len(names)):
            raise InvalidArgument(
                f"{version.uri} takes an array of {width} features but {ref} has {len(names)} "
                "columns; name the feature columns with columns=[...] (`--column`)")
        chosen = list(names)
    missing = [c for c in chosen if c not in names]
    if missing:
        raise InvalidArgument(
            f"{ref} lacks feature column(s) {', '.join(map(repr, missing))} that {version.uri} "
            f"takes; the table has {', '.join(names)} - score a table with the model's features "
            "(or name them with columns=[...] / `--column`)")
    return chosen, tensor


def _into(into: str) -> tuple[str, str | None, str]:
    spec = parse_ref(into)
    if spec.back:
        raise InvalidArgument(f"--into {into!r}: give a branch (`REPO[@BRANCH][:PATH]`), not ~N")
    path = normalize_path(spec.path) if spec.path else DEFAULT_PATH
    if not path.endswith(".parquet"):
        raise InvalidArgument(f"--into {into!r}: predictions are written as Parquet; give a path "
                              "ending in .parquet")
    return spec.repo, spec.rev, path


def _target_branch(registry: ModelRegistry, repo: str, branch: str | None) -> str:
    """The branch to commit to, creating the repo (and the branch) when missing."""
    repos = registry.repos
    try:
        info = repos.get(repo)
    except NotFound:
        try:
            info = repos.create(repo, "predictions", default_branch=branch or "main")
        except AlreadyExists:
            info = repos.get(repo)
    name = branch or info.default_branch
    if name not in info.branches:
        with contextlib.suppress(AlreadyExists):  # created meanwhile
            repos.branch(repo, name)
    return name


def _stage_input(registry: ModelRegistry, pinned: str, path: str, dest: Path) -> None:
    """The table as a local Parquet file (a Parquet input is copied byte for byte, keeping its
    row groups; other formats are converted)."""
    import pyarrow.parquet as pq

    if path.lower().endswith(".parquet"):
        with open_file(registry.repos, pinned) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    else:
        pq.write_table(read_table(registry.repos, pinned), dest, row_group_size=ROW_GROUP_ROWS)


def _plan(groups: list[int], group_rows: list[int], parts: int) -> list[list[int]]:
    """Contiguous runs of row groups, about equal in rows, in order."""
    parts = max(1, min(parts, len(groups)))
    total = sum(group_rows) or 1
    runs: list[list[int]] = [[] for _ in range(parts)]
    seen = 0
    for g, rows in zip(groups, group_rows, strict=True):
        runs[min(parts - 1, seen * parts // total)].append(g)
        seen += rows
    return [r for r in runs if r]


def _run(pool: Executor, tasks: list[Task], rows: list[int], total: int,
         progress: Callable[[int, int], None] | None) -> None:
    """Run every task; the first failure cancels the rest and is raised."""
    for task in tasks:
        pool.check(task)
    handles = [pool.submit(task) for task in tasks]
    index: dict[int, int] = {id(h): i for i, h in enumerate(handles)}
    done = 0
    try:
        for handle in pool.as_completed(handles):
            error = handle.exception()
            if error is not None:
                raise error
            done += rows[index[id(handle)]]
            if progress is not None:
                progress(done, total)
    finally:
        for handle in handles:
            handle.cancel()


def _join(parts: list[Path], dest: Path) -> int:
    """Concatenate Parquet parts, in order, into one file without holding them all in memory."""
    import pyarrow.parquet as pq

    writer: Any = None
    rows = 0
    try:
        for part in parts:
            file = pq.ParquetFile(part)
            for g in range(file.metadata.num_row_groups):
                table = file.read_row_group(g)
                if writer is None:
                    writer = pq.ParquetWriter(dest, table.schema)
                elif table.schema != writer.schema:
                    table = table.cast(writer.schema)
                writer.write_table(table)
                rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def predict_dataset(
    registry: ModelRegistry,
    model_uri: str,
    ref: str,
    into: str,
    *,
    executor: str = "local",
    workers: int | None = None,
    columns: Sequence[str] | None = None,
    output_column: str = "prediction",
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    allow_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Score the table at `ref` with a registered model and commit the predictions.

    Args:
        registry: the model registry (its data layer holds the table and the output).
        model_uri: `name`, `name@N` or `name@alias`; resolved once to a version number.
        ref: the table, `repo@rev:path` (Parquet, CSV, TSV or JSON Lines).
        into: `REPO[@BRANCH][:PATH]` to commit to (default path `predictions.parquet`); the
            repo and the branch are created when missing, and other files on the branch stay.
        executor: "local" (a process pool) or "ray".
        workers: parallel tasks at most (default: the executor's CPUs).
        columns: the feature columns fed to the model (default: its signature's columns; a
            model with an array signature takes every column unless named here).
        output_column: the column the predictions go in; every input column is kept beside it.
        trusted, allow_pickle, allow_code: what loading the model may do (see `load_model`).
        progress: called with (rows done, rows total) as parts finish.

    Raises:
        InvalidArgument: a feature column is missing, `output_column` exists in the table, or
            an option is malformed; nothing is committed.
        NotFound: the model, version, repo or file does not exist.
        TaskFailed: a task failed (the model raised, a worker died); nothing is committed.
    """
    started = time.perf_counter()
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InvalidArgument(f"workers={workers!r}: must be an int >= 1")
    if not output_column or not isinstance(output_column, str):
        raise InvalidArgument("output_column must be a non-empty column name")
    repo, branch, out_path = _into(into)
    version = registry.get_version(model_uri)
    check_loadable(version)
    target = registry.repos.resolve(ref)
    data_commit = target.require_commit()
    if not target.path:
        raise InvalidArgument(f"{ref} names no table; add `:path/in/repo`, e.g. {ref}:data.parquet")
    pinned = f"{target.repo.name}@{data_commit.id}:{target.path}"
    import pyarrow.parquet as pq

    scratch = Path(tempfile.mkdtemp(prefix="tl-predict-"))
    try:
        source = scratch / "input.parquet"
        _stage_input(registry, pinned, target.path, source)
        meta = pq.ParquetFile(source).metadata
        names = list(meta.schema.to_arrow_schema().names)
        features, tensor = _features(version, names, columns, ref)
        if output_column in names:
            raise InvalidArgument(f"{ref} has a column {output_column!r} already; pick another "
                                  "output column (output_column= / `--output-column`)")
        group_rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        total = int(meta.num_rows)
        with registry.store.fetch(version.artifact_commit) as model_folder, \
                open_executor(executor, workers=workers) as pool:
            runs = _plan(list(range(meta.num_row_groups)), group_rows,
                         pool.workers * TASKS_PER_WORKER)
            outputs = [scratch / f"part-{i:05d}.parquet" for i in range(len(runs))]
            base = {"model_folder": str(model_folder), "flavor": version.flavor,
                    "artifact_hash": version.artifact_hash, "trusted": list(trusted),
                    "allow_pickle": allow_pickle, "allow_code": allow_code,
                    "input": str(source), "features": features, "tensor": tensor,
                    "output_column": output_column}
            tasks = [Task(predict_part, ({**base, "groups": run, "output": str(out)},),
                          name=f"predict part {i} of {len(runs)}")
                     for i, (run, out) in enumerate(zip(runs, outputs, strict=True))]
            _run(pool, tasks, [sum(group_rows[g] for g in run) for run in runs], total, progress)
        staged = scratch / "commit"
        (staged / out_path).parent.mkdir(parents=True, exist_ok=True)
        rows = _join(outputs, staged / out_path) if outputs else _empty_output(source, staged / out_path,
                                                                               output_column)
        seconds = time.perf_counter() - started
        commit = _commit(registry, repo, _target_branch(registry, repo, branch), staged, version,
                         ref, data_commit.id, {"rows": rows, "seconds": round(seconds, 3),
                                               "parts": len(runs), "features": features,
                                               "output_column": output_column, "path": out_path})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return PredictResult(commit, repo, branch or registry.repos.get(repo).default_branch, out_path,
                         rows, time.perf_counter() - started, version.name, version.version, ref,
                         data_commit.id, len(runs), features)


def _empty_output(source: Path, dest: Path, output_column: str) -> int:
    """A table with no rows still gets an output file: its columns plus a null predictions one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    pq.write_table(table.append_column(output_column, pa.nulls(0)), dest)
    return 0


def _commit(registry: ModelRegistry, repo: str, branch: str, staged: Path, version: ModelVersion,
            ref: str, data_commit: str, report: dict[str, Any]) -> str:
    """One commit adding the predictions file to the branch; a lost compare-and-swap (another
    writer committed meanwhile) is retried on the new head, keeping that writer's files."""
    metadata = {"step": "predict",
                "params": {"model": version.name, "version": version.version,
                           "model_uri": version.uri},
                "input": {"ref": ref, "commit": data_commit}, "report": report}
    message = (f"predictions of {version.name} v{version.version} on {ref} "
               f"({data_commit[:12]}, {report['rows']} rows)")
    derived = [(version_node(version.name, version.version), SCORED),
               (commit_node(data_commit), SCORED_FROM)]
    for attempt in itertools.count(1):
        try:
            return registry.repos.commit(f"{repo}@{branch}", [staged], message, metadata=metadata,
                                         update=True, derived_from=derived,
                                         allow_empty=True).commit.id
        except Conflict:
            if attempt >= COMMIT_TRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover

