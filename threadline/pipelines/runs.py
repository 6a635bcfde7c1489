"""The status store: pipeline runs, their steps, and the step cache (tables of migration 0004).

The driver (engine.py) writes here; workers never do. A step is marked `succeeded` - and its
cache entry written - only after its worker returned the id of a commit that exists, so a run
killed at any point leaves no step marked complete without its output, and the next run finds
in the cache exactly the steps that finished. A run whose driver died stays `running` in the
table and is shown as `interrupted` (its pid is gone on this host).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import zstandard
from sqlalchemy import bindparam, insert, select, update

from threadline.errors import InvalidArgument, NotFound
from threadline.meta.db import dialect_insert, hex_prefix
from threadline.meta.models import PipelineCacheRow, PipelineRunRow, PipelineStepRunRow
from threadline.pipelines.cache import KeyParts
from threadline.storage.local import pid_alive

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

    from threadline.meta.db import Database
    from threadline.pipelines.datums import Datum

log = logging.getLogger(__name__)

# A run writes and reads these on every step, and a watching pipeline runs every few seconds:
# the statements are built once and run on Core connections (see `data.repos`).
_RUNS = cast("Table", PipelineRunRow.__table__)
_STEP_RUNS = cast("Table", PipelineStepRunRow.__table__)
_CACHE_TABLE = cast("Table", PipelineCacheRow.__table__)
_INSERT_RUN = insert(_RUNS)
_INSERT_STEP_RUN = insert(_STEP_RUNS)
#: the SET clause comes from the parameters given with `b_run` and `b_step`
_UPDATE_STEP_RUN = update(_STEP_RUNS).where(_STEP_RUNS.c.run_id == bindparam("b_run"),
                                            _STEP_RUNS.c.step == bindparam("b_step"))
_FINISH_RUN = update(_RUNS).where(_RUNS.c.id == bindparam("b_run"))
_LAST_PARTS = (
    select(_STEP_RUNS.c.key_parts, _STEP_RUNS.c.output_commit)
    .join(_RUNS, _RUNS.c.id == _STEP_RUNS.c.run_id)
    .where(_RUNS.c.pipeline == bindparam("pipeline"), _STEP_RUNS.c.step == bindparam("step"),
           _STEP_RUNS.c.status.in_(("succeeded", "cached")))
    .order_by(_STEP_RUNS.c.ended_at.desc()).limit(1))
_CACHE_ENTRY = select(_CACHE_TABLE).where(
    _CACHE_TABLE.c.pipeline == bindparam("pipeline"), _CACHE_TABLE.c.step == bindparam("step"),
    _CACHE_TABLE.c.key == bindparam("key"))
_LATEST_WITH_BASE = (
    select(_CACHE_TABLE)
    .where(_CACHE_TABLE.c.pipeline == bindparam("pipeline"), _CACHE_TABLE.c.step == bindparam("step"),
           _CACHE_TABLE.c.base_key == bindparam("base_key"))
    .order_by(_CACHE_TABLE.c.created_at.desc()).limit(1))


class CacheEntry(NamedTuple):
    """A finished step in the cache: its key, what it produced and (datum steps) from what."""

    pipeline: str
    step: str
    key: str
    base_key: str
    output_repo: str
    output_commit: str
    created_at: datetime
    #: the datums it was made from, packed (read them with `entry_datums`)
    datums: bytes | None

_STEP_FIELDS = ("status", "reason", "cache_key", "key_parts", "output_repo", "output_commit",
                "datums_processed", "datums_skipped", "datums_removed", "attempts", "duration_s",
                "log_tail", "error", "started_at", "ended_at")


class DatumKeys:
    """A datum step's datums as keys (name -> key), and the packed form its cache entry stores.

    Both are made once, when first asked: the engine asks while the step's worker runs, so a
    run waits for neither the packing nor (in a process that wrote the entry) its unpacking.
    """

    __slots__ = ("_datums", "_keys", "_packed")

    def __init__(self, datums: dict[str, Datum]) -> None:
        self._datums = datums
        self._keys: dict[str, str] | None = None
        self._packed: bytes | None = None

    @property
    def keys(self) -> dict[str, str]:
        """Datum name -> datum key."""
        if self._keys is None:
            self._keys = {name: datum.key for name, datum in self._datums.items()}
        return self._keys

    def packed(self) -> bytes:
        """zstd-compressed JSON."""
        if self._packed is None:
            text = json.dumps(self.keys, separators=(",", ":")).encode()
            self._packed = zstandard.ZstdCompressor().compress(text)
        return self._packed


#: the datums of the cache entry this process wrote last, per (pipeline, step): a watching
#: driver's next run of the step reads them back without unpacking (`entry_datums`)
_WRITTEN: OrderedDict[tuple[str, str], DatumKeys] = OrderedDict()
_WRITTEN_MAX = 64


def entry_datums(entry: CacheEntry) -> dict[str, str] | None:
    """The datums (name -> key) a cache entry's output was made from; None if not recorded.
    The mapping is shared: read it, do not change it.

    Damaged keys are reported and treated as not recorded: the step then processes every
    datum again, which is slower but gives the same output.
    """
    if entry.datums is None:
        return None
    written = _WRITTEN.get((entry.pipeline, entry.step))
    if written is not None and written.packed() == entry.datums:
        return written.keys
    try:
        value = json.loads(zstandard.ZstdDecompressor().decompress(entry.datums))
    except (zstandard.ZstdError, ValueError) as exc:
        log.warning("the datum keys of pipeline %r step %r are damaged (%s); every datum is "
                    "processed again", entry.pipeline, entry.step, exc)
        return None
    return value if isinstance(value, dict) else None


@functools.cache
def _upsert_cache_entry(dialect: str) -> Any:
    """Insert a cache entry, or point an existing one (the same key, re-run after its output
    went missing) at the new output: one statement, built once per dialect."""
    statement = dialect_insert(dialect)(_CACHE_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["pipeline", "step", "key"],
        set_={name: statement.excluded[name]
              for name in ("output_repo", "output_commit", "created_at", "datums")})


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class StepRunInfo:
    """One step of a run, as stored."""

    step: str
    status: str
    reason: str
    output_repo: str
    output_commit: str | None
    datums_processed: int
    datums_skipped: int
    datums_removed: int
    attempts: int
    duration_s: float
    log_tail: str
    error: str
    key_parts: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunInfo:
    """A pipeline run and (when loaded with them) its steps."""

    id: str
    pipeline: str
    status: str
    trigger: str
    executor: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    error: str
    started_at: datetime
    ended_at: datetime | None
    steps: list[StepRunInfo] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        """Wall time of the run, once ended."""
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = {k: v for k, v in self.__dict__.items() if k != "steps"}
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        out["duration_s"] = self.duration_s
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


def _run_info(row: PipelineRunRow, steps: list[PipelineStepRunRow] | None = None) -> RunInfo:
    status = row.status
    if status == "running" and row.host == socket.gethostname() and not pid_alive(row.pid):
        status = "interrupted"
    started = _aware(row.started_at)
    assert started is not None
    return RunInfo(
        row.id, row.pipeline, status, row.trigger, row.executor, dict(row.params), dict(row.inputs),
        row.error, started, _aware(row.ended_at),
        [StepRunInfo(s.step, s.status, s.reason, s.output_repo, s.output_commit, s.datums_processed,
                     s.datums_skipped, s.datums_removed, s.attempts, s.duration_s, s.log_tail,
                     s.error, dict(s.key_parts)) for s in steps or []],
    )


class RunStore:
    """Reads and writes runs, step runs and cache entries.

    Args:
        db: the metadata database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ runs
    def start(self, pipeline: str, *, trigger: str, executor: str, params: dict[str, Any],
              inputs: dict[str, Any], steps: list[str]) -> str:
        """Record a new run with every step pending; returns its id."""
        run_id = uuid.uuid4().hex
        with self.db.begin() as conn:
            conn.execute(_INSERT_RUN, {
                "id": run_id, "pipeline": pipeline, "status": "running", "trigger": trigger,
                "executor": executor, "params": params, "inputs": inputs, "pid": os.getpid(),
                "host": socket.gethostname(), "error": "", "started_at": datetime.now(UTC)})
            conn.execute(_INSERT_STEP_RUN, [{
                "run_id": run_id, "step": step, "status": "pending", "reason": "", "cache_key": "",
                "key_parts": {}, "output_repo": "", "datums_processed": 0, "datums_skipped": 0,
                "datums_removed": 0, "attempts": 0, "duration_s": 0.0, "log_tail": "", "error": ""}
                for step in steps])
        return run_id

    def update_step(self, run_id: str, step: str, **values: Any) -> None:
        """Set fields of a step run (see `_STEP_FIELDS`)."""
        with self.db.begin() as conn:
            self._update_step(conn, run_id, step, values)

    def succeed(self, run_id: str, pipeline: str, step: str, *, key: str, base_key: str, repo: str,
                commit: str, datums: DatumKeys | None = None, **values: Any) -> None:
        """Mark a step run succeeded with `values` and remember key -> output commit (and, for a
        datum step, the datums it was made from), in one transaction: a driver killed here
        leaves both written or neither."""
        entry = {"pipeline": pipeline, "step": step, "key": key, "base_key": base_key,
                 "output_repo": repo, "output_commit": commit, "created_at": datetime.now(UTC),
                 "datums": datums.packed() if datums is not None else None}
        with self.db.begin() as conn:
            self._update_step(conn, run_id, step, {**values, "status": "succeeded",
                                                   "output_repo": repo, "output_commit": commit})
            conn.execute(_upsert_cache_entry(conn.dialect.name), entry)
        if datums is not None:
            _WRITTEN[pipeline, step] = datums
            _WRITTEN.move_to_end((pipeline, step))
            while len(_WRITTEN) > _WRITTEN_MAX:
                _WRITTEN.popitem(last=False)

    @staticmethod
    def _update_step(conn: Connection, run_id: str, step: str, values: dict[str, Any]) -> None:
        unknown = set(values) - set(_STEP_FIELDS)
        if unknown:
            raise InvalidArgument(f"unknown step-run fields {sorted(unknown)}")
        done = conn.execute(_UPDATE_STEP_RUN, {**values, "b_run": run_id, "b_step": step})
        if done.rowcount != 1:
            raise NotFound(f"run {run_id[:12]} has no step {step!r}")

    def finish(self, run_id: str, status: str, error: str = "") -> None:
        """Mark a run ended."""
        with self.db.begin() as conn:
            done = conn.execute(_FINISH_RUN, {"b_run": run_id, "status": status, "error": error,
                                              "ended_at": datetime.now(UTC)})
            if done.rowcount != 1:
                raise NotFound(f"no pipeline run {run_id}")

    def list(self, pipeline: str | None = None, limit: int = 50) -> list[RunInfo]:
        """Runs, newest first."""
        query = select(PipelineRunRow).order_by(PipelineRunRow.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(PipelineRunRow.pipeline == pipeline)
        with self.db.session() as session:
            return [_run_info(r) for r in session.scalars(query)]

    def get(self, run_id: str) -> RunInfo:
        """One run with its steps, by id or unique id prefix (4+ hex digits)."""
        if len(run_id) < 4:
            raise InvalidArgument(f"run id {run_id!r} is too short; give at least 4 digits")
        with self.db.session() as session:
            rows = session.scalars(select(PipelineRunRow).where(
                hex_prefix(PipelineRunRow.id, run_id.lower())).limit(2)).all()
            if not rows:
                raise NotFound(f"no pipeline run {run_id}; `threadline pipeline runs` lists them")
            if len(rows) > 1:
                raise InvalidArgument(f"run id prefix {run_id!r} is ambiguous; give more digits")
            steps = session.scalars(select(PipelineStepRunRow).where(
                PipelineStepRunRow.run_id == rows[0].id)).all()
            # in the order they started (the DAG's order); steps that never started last
            ordered = sorted(steps, key=lambda s: (s.started_at is None, _aware(s.started_at) or 0, s.step))
            return _run_info(rows[0], ordered)

    def last_inputs(self, pipeline: str) -> dict[str, Any] | None:
        """The input heads of the newest finished-or-running run of `pipeline` (for `watch`)."""
        with self.db.session() as session:
            row = session.scalars(select(PipelineRunRow).where(PipelineRunRow.pipeline == pipeline)
                                  .order_by(PipelineRunRow.started_at.desc()).limit(1)).first()
            return dict(row.inputs) if row is not None else None

    def last_parts(self, pipeline: str, step: str) -> tuple[KeyParts, str | None] | None:
        """Key parts and output of the newest successful (run or cached) execution of a step."""
        with self.db.connect() as conn:
            row = conn.execute(_LAST_PARTS, {"pipeline": pipeline, "step": step}).first()
        if row is None:
            return None
        return KeyParts.from_dict(row[0]), row[1]

    # ----------------------------------------------------------------- cache
    def cached(self, pipeline: str, step: str, key: str) -> CacheEntry | None:
        """The cache entry for exactly this key."""
        with self.db.connect() as conn:
            row = conn.execute(_CACHE_ENTRY, {"pipeline": pipeline, "step": step, "key": key}).first()
        return CacheEntry(**row._mapping) if row is not None else None

    def latest_with_base(self, pipeline: str, step: str, base_key: str) -> CacheEntry | None:
        """The newest entry sharing a base key (whose unchanged datums can be reused)."""
        with self.db.connect() as conn:
            row = conn.execute(_LATEST_WITH_BASE, {"pipeline": pipeline, "step": step,
                                                   "base_key": base_key}).first()
        return CacheEntry(**row._mapping) if row is not None else None
