"""The tracking store: experiments, runs and what they log, in the metadata database.

Everything a run logs in one `log_batch` call is one transaction: the metric points, the
`latest_metrics` rows searches read, params and tags appear together or not at all. Artifacts
are data commits in the `tl-artifacts` repo (see `artifacts.py`), so they are de-duplicated by
the content store and show up in lineage like any other data.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, delete, or_, select, update

from threadline.data.repos import commit_node
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage.graph import Edge, add_edges
from threadline.meta.db import dialect_insert
from threadline.meta.models import MetricRow, RunRow
from threadline.tracking import artifacts, bulk
from threadline.tracking.experiments import ExperimentStore
from threadline.tracking.model import (
    ACTIVE,
    DELETED,
    INPUTS_TAG,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    RESERVED_PREFIX,
    STATUSES,
    TERMINAL,
    Metric,
    Run,
    RunInfo,
    check_key,
    check_metric_value,
    check_value,
    now_ms,
    run_node,
)
from threadline.tracking.search import LATEST, PARAMS, RUNS, TAGS, load_runs, run_info, search_ids

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from threadline.data.repos import DataRepos

MIN_RUN_PREFIX = 6
METRICS = cast("Table", MetricRow.__table__)


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]], limit: int, what: str
           ) -> dict[str, str]:
    """Validated (key, value) pairs; one key given twice with different values is refused."""
    out: dict[str, str] = {}
    for key, value in (items.items() if isinstance(items, Mapping) else items):
        check_key(key, f"{what} key")
        if key.startswith(RESERVED_PREFIX):
            raise InvalidArgument(f"{what} key {key!r} is reserved for Threadline; choose another name")
        text = check_value(key, value, limit, what)
        if what == "param" and out.get(key, text) != text:
            raise InvalidArgument(
                f"param {key!r} is given twice in one batch, as {out[key]!r} and {text!r}")
        out[key] = text
    return out


class TrackingStore(ExperimentStore):
    """Experiments, runs, params, metrics, tags, inputs and artifacts of one Threadline home.

    Args:
        repos: the data layer of the home (its database, and the repo artifacts go to).
    """

    def __init__(self, repos: DataRepos) -> None:
        self.repos = repos
        self.db = repos.db
        self._checked_keys: set[str] = set()

    def _insert(self, session: Session) -> Any:
        return dialect_insert(session.get_bind().dialect.name)

    # ------------------------------------------------------------------ runs
    def create_run(
        self, experiment_id: int, *, name: str = "", parent_id: str | None = None,
        tags: Mapping[str, str] | None = None, start_time: int | None = None,
        user: str | None = None, source: Mapping[str, Any] | None = None,
    ) -> RunInfo:
        """Start a run (status RUNNING) in an active experiment; returns its info."""
        if not isinstance(name, str) or len(name) > 250:
            raise InvalidArgument(f"invalid run name {name!r}: use at most 250 characters")
        tag_values = _pairs(tags or {}, MAX_TAG_VALUE, "tag")
        run_id = uuid.uuid4().hex
        try:
            source_json = json.loads(json.dumps(dict(source or {})))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"run source must be JSON-serialisable: {exc}") from exc
        with self.db.session() as session, session.begin():
            experiment = self._experiment_row(session, experiment_id)
            if experiment.lifecycle_stage != ACTIVE:
                raise InvalidArgument(
                    f"experiment {experiment.name!r} is deleted; restore it before starting runs")
            if parent_id is not None and session.get(RunRow, parent_id) is None:
                raise NotFound(f"parent run {parent_id} does not exist")
            info = RunInfo(run_id, experiment_id, parent_id, name, "RUNNING", ACTIVE,
                           user or self.repos.author,
                           now_ms() if start_time is None else int(start_time), None, None,
                           source_json)
            session.add(RunRow(
                id=run_id, experiment_id=experiment_id, parent_id=parent_id, name=name,
                status=info.status, lifecycle_stage=ACTIVE, user=info.user,
                start_time=info.start_time, end_time=None, artifact_commit=None, source=source_json,
            ))
            session.flush()
            if tag_values:
                session.execute(TAGS.insert(), [{"run_id": run_id, "key": k, "value": v}
                                                for k, v in tag_values.items()])
            if parent_id is not None:
                add_edges(session, [Edge(run_node(parent_id), "parent_of", run_node(run_id))])
        return info

    def _run_row(self, session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, run_id) if isinstance(run_id, str) else None
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist; `threadline runs list` shows runs")
        return row

    def update_run(self, run_id: str, *, status: str | None = None, end_time: int | None = None,
                   name: str | None = None) -> RunInfo:
        """Change a run's status, end time or name; a terminal status sets the end time."""
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"run status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self.db.session() as session, session.begin():
            row = self._run_row(session, run_id)
            if status is not None:
                row.status = status
                if status in TERMINAL and end_time is None and row.end_time is None:
                    end_time = now_ms()
            if end_time is not None:
                row.end_time = int(end_time)
            if name is not None:
                row.name = name
            return run_info(row)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        with self.db.session() as session, session.begin():
            self._run_row(session, run_id).lifecycle_stage = stage

    def delete_run(self, run_id: str) -> None:
        """Mark a run deleted: hidden from searches, refused for logging, restorable."""
        self._set_run_stage(run_id, DELETED)

    def restore_run(self, run_id: str) -> None:
        """Undo `delete_run`."""
        self._set_run_stage(run_id, ACTIVE)

    def get_run(self, run_id: str) -> Run:
        """One run with its params, latest metrics, tags and inputs."""
        with self.db.session() as session:
            runs = load_runs(session, [run_id]) if isinstance(run_id, str) else []
        if not runs:
            raise NotFound(f"run {run_id!r} does not exist; `threadline runs list` shows runs")
        return runs[0]

    def resolve_run_prefix(self, prefix: str) -> str:
        """The full id of the one run whose id starts with `prefix` (at least 6 hex digits)."""
        text = prefix.strip().lower()
        if len(text) < MIN_RUN_PREFIX or any(c not in "0123456789abcdef" for c in text):
            raise InvalidArgument(
                f"invalid run id {prefix!r}: give the id or at least {MIN_RUN_PREFIX} of its hex digits")
        with self.db.session() as session:
            ids = list(session.scalars(select(RunRow.id).where(RunRow.id.startswith(text)).limit(2)))
        if not ids:
            raise NotFound(f"no run id starts with {prefix!r}; `threadline runs list` shows runs")
        if len(ids) > 1:
            raise InvalidArgument(f"run id prefix {prefix!r} is ambiguous; give more digits")
        return ids[0]

    # --------------------------------------------------------------- logging
    def log_batch(
        self, run_id: str, *, metrics: Sequence[Metric] = (),
        params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        tags: Mapping[str, str] = {},
    ) -> None:
        """Log metric points, params and tags in one transaction.

        Params are immutable: logging a param again with the same value is a no-op, a different
        value raises InvalidArgument naming both. The latest point of each metric (highest step,
        then highest timestamp; on a full tie the later call) is kept for searches.
        """
        self._log(run_id, metrics, params, tags, end_status=None)

    def finish_run(
        self, run_id: str, status: str, *, metrics: Sequence[Metric] = (),
        params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        tags: Mapping[str, str] = {},
    ) -> None:
        """Log a last batch and set the run's final status and end time in one transaction.

        What the SDK does when a run ends: one commit instead of two. Nothing of the batch is
        written, and the status is left unchanged, if the batch is refused.
        """
        if status not in STATUSES:
            raise InvalidArgument(f"run status must be one of {', '.join(STATUSES)}, not {status!r}")
        self._log(run_id, metrics, params, tags, end_status=status)

    def _metric_rows(
        self, run_id: str, metrics: Sequence[Metric]
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}
        checked = self._checked_keys
        for m in metrics:
            if m.key not in checked:
                check_key(m.key, "metric key")
                checked.add(m.key)
            value = check_metric_value(m.key, m.value)
            row = {"run_id": run_id, "key": m.key, "value": None if math.isnan(value) else value,
                   "step": int(m.step), "timestamp": int(m.timestamp)}
            rows.append(row)
            best = latest.get(m.key)
            if best is None or (row["step"], row["timestamp"]) >= (best["step"], best["timestamp"]):
                latest[m.key] = row
        return rows, latest

    def _log(self, run_id: str, metrics: Sequence[Metric],
             params: Mapping[str, str] | Sequence[tuple[str, str]], tags: Mapping[str, str], *,
             end_status: str | None) -> None:
        metric_rows, latest = self._metric_rows(run_id, metrics)
        param_values = _pairs(params, MAX_PARAM_VALUE, "param")
        tag_values = _pairs(tags, MAX_TAG_VALUE, "tag")
        if not (metric_rows or param_values or tag_values or end_status):
            return
        with self.db.session() as session, session.begin():
            row = session.execute(select(RUNS.c.status, RUNS.c.lifecycle_stage)
                                  .where(RUNS.c.id == run_id)).first()
            if row is None:
                raise NotFound(f"run {run_id!r} does not exist; `threadline runs list` shows runs")
            if row.lifecycle_stage != ACTIVE:
                raise InvalidArgument(f"run {run_id} is deleted; restore it before logging to it")
            if (metric_rows or param_values) and row.status in TERMINAL:
                raise InvalidArgument(
                    f"run {run_id} is {row.status}; metrics and params can only be logged to a "
                    "running run - start a new run")
            insert = self._insert(session)
            if param_values:
                self._check_params(session, run_id, param_values)
                session.execute(insert(PARAMS).on_conflict_do_nothing(),
                                [{"run_id": run_id, "key": k, "value": v}
                                 for k, v in param_values.items()])
            if metric_rows:
                session.execute(METRICS.insert(), metric_rows)
                stmt = insert(LATEST)
                new = stmt.excluded
                session.execute(stmt.on_conflict_do_update(
                    index_elements=[LATEST.c.run_id, LATEST.c.key],
                    set_={"value": new.value, "step": new.step, "timestamp": new.timestamp},
                    where=or_(new.step > LATEST.c.step,
                              and_(new.step == LATEST.c.step, new.timestamp >= LATEST.c.timestamp)),
                ), list(latest.values()))
            if tag_values:
                stmt = insert(TAGS)
                session.execute(stmt.on_conflict_do_update(
                    index_elements=[TAGS.c.run_id, TAGS.c.key], set_={"value": stmt.excluded.value}),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tag_values.items()])
            if end_status is not None:
                session.execute(update(RUNS).where(RUNS.c.id == run_id).values(
                    status=end_status, end_time=now_ms()))

    def _check_params(self, session: Session, run_id: str, values: dict[str, str]) -> None:
        keys = list(values)
        for i in range(0, len(keys), 900):
            for key, old in session.execute(select(PARAMS.c.key, PARAMS.c.value).where(
                    PARAMS.c.run_id == run_id, PARAMS.c.key.in_(keys[i : i + 900]))):
                if old != values[key]:
                    raise InvalidArgument(
                        f"param {key!r} of run {run_id} is {old!r} already and cannot become "
                        f"{values[key]!r}: params are immutable; log the new value under "
                        "another key or in a new run")

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove tag `key` from a run (MLflow's `runs/delete-tag`).

        Tags under the reserved `threadline.` prefix (the run's inputs) are Threadline's own
        and cannot be removed, as they cannot be set.

        Raises:
            InvalidArgument: `key` is malformed or reserved, or the run is deleted.
            NotFound: the run does not exist, or has no tag `key`.
        """
        check_key(key, "tag key")
        if key.startswith(RESERVED_PREFIX):
            raise InvalidArgument(f"tag key {key!r} is reserved for Threadline and cannot be "
                                  "deleted; only tags you set can be")
        with self.db.session() as session, session.begin():
            row = self._run_row(session, run_id)
            if row.lifecycle_stage != ACTIVE:
                raise InvalidArgument(f"run {run_id} is deleted; restore it before changing its tags")
            gone = session.execute(delete(TAGS).where(TAGS.c.run_id == run_id, TAGS.c.key == key))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"run {run_id} has no tag {key!r}; `threadline runs show {run_id}` "
                               "lists its tags")

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric of a run, by step, then timestamp, then logging order."""
        with self.db.session() as session:
            self._run_row(session, run_id)
            rows = session.execute(
                select(METRICS.c.value, METRICS.c.timestamp, METRICS.c.step)
                .where(METRICS.c.run_id == run_id, METRICS.c.key == key)
                .order_by(METRICS.c.step, METRICS.c.timestamp, METRICS.c.id))
            return [Metric(key, math.nan if v is None else v, ts, step) for v, ts, step in rows]

    def search_runs(
        self, experiment_ids: Sequence[int], filter_string: str = "", order_by: Sequence[str] = (),
        max_results: int = 1000, page_token: str | None = None, view: str = "active",
    ) -> tuple[list[Run], str | None]:
        """Runs matching an MLflow-style filter (see `filters.py`), one page at a time.

        Returns the runs and the token of the next page (None on the last page). The order is
        stable: after `order_by`, newest start first, then run id.
        """
        if isinstance(order_by, str):
            order_by = [order_by]
        with self.db.session() as session:
            ids, token = search_ids(session, experiment_ids, filter_string, order_by, max_results,
                                    page_token, view)
            return load_runs(session, ids), token

    def import_runs(self, experiment_id: int, runs: Sequence[Run]) -> list[str]:
        """Insert whole runs (info, params, tags, one point per metric) in one transaction.

        For migrations from other trackers and for seeding benchmarks: 100,000 runs take
        seconds instead of the minutes one `create_run` + `log_batch` per run would.
        """
        with self.db.session() as session:
            if self._experiment_row(session, experiment_id).lifecycle_stage != ACTIVE:
                raise InvalidArgument(f"experiment {experiment_id} is deleted; restore it first")
        return bulk.import_runs(self.db, METRICS, experiment_id, runs)

    # ---------------------------------------------------------------- inputs
    def log_inputs(self, run_id: str, refs: Sequence[str]) -> list[dict[str, str]]:
        """Record the data a run reads: each ref is resolved to its commit now.

        Each input becomes a lineage edge `data_commit -[input]-> run` and is listed in
        `get_run(...).inputs` as {"repo", "commit", "ref"}.
        """
        if isinstance(refs, str):
            refs = [refs]
        entries = []
        for ref in refs:
            target = self.repos.resolve(ref)
            commit = target.require_commit()
            entries.append({"repo": target.repo.name, "commit": commit.id, "ref": ref})
        with self.db.session() as session, session.begin():
            row = self._run_row(session, run_id)
            if row.lifecycle_stage != ACTIVE:
                raise InvalidArgument(f"run {run_id} is deleted; restore it before logging to it")
            old = session.scalar(select(TAGS.c.value).where(TAGS.c.run_id == run_id,
                                                            TAGS.c.key == INPUTS_TAG))
            inputs: list[dict[str, str]] = json.loads(old) if old else []
            inputs += [e for e in entries if e not in inputs]
            stmt = self._insert(session)(TAGS)
            session.execute(stmt.on_conflict_do_update(
                index_elements=[TAGS.c.run_id, TAGS.c.key], set_={"value": stmt.excluded.value}),
                [{"run_id": run_id, "key": INPUTS_TAG, "value": json.dumps(inputs)}])
            add_edges(session, [Edge(commit_node(e["commit"]), "input", run_node(run_id),
                                     {"ref": e["ref"]}) for e in entries])
        return entries

    def set_artifact_commit(self, run_id: str, commit_id: str) -> None:
        """Point a run at the data commit holding its artifacts (used by `artifacts.py`)."""
        with self.db.session() as session, session.begin():
            self._run_row(session, run_id).artifact_commit = commit_id

    # ------------------------------------------------------------- artifacts
    def log_artifacts(self, run_id: str, local_path: str | Path, artifact_path: str = "") -> str:
        """Add a file or a folder's contents to the run's artifacts; returns the commit id."""
        return artifacts.log_artifacts(self, run_id, Path(local_path), artifact_path)

    def list_artifacts(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        """The files and folders directly inside `path` of the run's artifacts."""
        return artifacts.list_artifacts(self, run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst: Path) -> Path:
        """Write the artifact file or folder `path` under `dst`; returns where it went."""
        return artifacts.download_artifacts(self, run_id, path, Path(dst))

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact file."""
        return artifacts.read_artifact(self, run_id, path)
