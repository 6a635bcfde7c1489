"""The notebook and script SDK: `start_run` and the logging calls of an active run.

    from threadline.tracking import start_run

    with start_run("train", inputs=["churn-splits@main:train"]) as run:
        run.log_params({"C": 1.0, "penalty": "l2"})
        for step, loss in enumerate(losses):
            run.log_metric("loss", loss, step=step)
        run.log_artifact("model.skops", "model")

Logging never waits on the database: calls queue in memory and a background thread commits
them in batches (`writer.py`). `flush()` is the acknowledgement point: everything logged
before it returns is committed. Leaving the `with` block flushes and ends the run FINISHED,
FAILED if an exception escaped, KILLED on Ctrl-C; runs still open at interpreter exit are
flushed and ended by an `atexit` hook.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.data.connect import default_repos
from threadline.errors import InvalidArgument
from threadline.tracking.model import (
    DEFAULT_EXPERIMENT,
    FAILED,
    FINISHED,
    KILLED,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    RESERVED_PREFIX,
    Metric,
    RunInfo,
    check_key,
    check_metric_value,
    check_value,
    now_ms,
)
from threadline.tracking.source import code_version, environment
from threadline.tracking.store import TrackingStore
from threadline.tracking.writer import BatchWriter

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from threadline.data.repos import DataRepos

ENV_EXPERIMENT = "THREADLINE_EXPERIMENT"
log = logging.getLogger(__name__)

# The stack of active runs of this process (the innermost last). A module-level stack is the
# SDK's one piece of global state, as in every tracking client: `log_metric(...)` at module
# level needs to know the current run.
_stack: list[ActiveRun] = []
_lock = threading.Lock()
_stores: dict[int, TrackingStore] = {}
_atexit_registered = False


class ActiveRun:
    """A run this process is logging to; made by `start_run`, ended by `end` or `with`."""

    def __init__(self, store: TrackingStore, info: RunInfo) -> None:
        self.store = store
        self._id = info.id
        self._info: RunInfo | None = info
        self._writer = BatchWriter(store, info.id)
        self._params: dict[str, str] = {}
        self._keys: set[str] = set()
        self._ended = False

    @property
    def id(self) -> str:
        """The run id (32 hex digits)."""
        return self._id

    @property
    def info(self) -> RunInfo:
        """The run's attributes (status, times...) as last read from the store."""
        if self._info is None:
            self._info = self.store.get_run(self._id).info
        return self._info

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.info.name!r} {self.info.status}>"

    def _check(self) -> None:
        if self._ended:
            raise InvalidArgument(f"run {self.id} has ended; start a new run to log more")
        if self._writer.error is not None:
            self._writer.raise_error()

    # --------------------------------------------------------------- params
    def log_param(self, key: str, value: Any) -> None:
        """Log one param (stored as a string); logging a different value again raises."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params."""
        self._check()
        items = []
        for key, value in params.items():
            check_key(key, "param key")
            text = check_value(key, value, MAX_PARAM_VALUE, "param")
            old = self._params.get(key)
            if old is not None and old != text:
                raise InvalidArgument(
                    f"param {key!r} of run {self.id} is {old!r} already and cannot become "
                    f"{text!r}: params are immutable; log the new value under another key")
            if old is None:
                items.append((key, text))
        self._params.update(items)
        if items:
            self._writer.params(items)

    # -------------------------------------------------------------- metrics
    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: int | None = None) -> None:
        """Log one metric point (timestamp: ms since the epoch, default now; step default 0)."""
        if self._ended or self._writer.error is not None:
            self._check()
        if key not in self._keys:
            check_key(key, "metric key")
            self._keys.add(key)
        self._writer.metric(Metric(key, check_metric_value(key, value),
                                   now_ms() if timestamp is None else int(timestamp),
                                   0 if step is None else int(step)))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: int | None = None) -> None:
        """Log several metrics at one step and time."""
        self._check()
        ts = now_ms() if timestamp is None else int(timestamp)
        points = []
        for key, value in metrics.items():
            if key not in self._keys:
                check_key(key, "metric key")
                self._keys.add(key)
            points.append(Metric(key, check_metric_value(key, value), ts, 0 if step is None else int(step)))
        self._writer.metrics(points)

    # ----------------------------------------------------------------- tags
    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (a later value replaces an earlier one)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        self._check()
        checked = {}
        for key, value in tags.items():
            check_key(key, "tag key")
            if key.startswith(RESERVED_PREFIX):
                raise InvalidArgument(f"tag key {key!r} is reserved for Threadline; choose another")
            checked[key] = check_value(key, value, MAX_TAG_VALUE, "tag")
        self._writer.tags(checked)

    # ---------------------------------------------------- artifacts, inputs
    def log_artifact(self, path: str | Path, artifact_path: str = "") -> str:
        """Store a file (or folder) with the run, under `artifact_path`; returns the commit id.

        Artifacts are written synchronously: when this returns they are committed.
        """
        self._check()
        return self.store.log_artifacts(self.id, path, artifact_path)

    def log_artifacts(self, folder: str | Path, artifact_path: str = "") -> str:
        """Store a folder's contents with the run, under `artifact_path`."""
        return self.log_artifact(folder, artifact_path)

    def log_input(self, ref: str) -> dict[str, str]:
        """Record that the run reads data `ref` (e.g. `sales@main:train.parquet`)."""
        return self.log_inputs([ref])[0]

    def log_inputs(self, refs: Sequence[str]) -> list[dict[str, str]]:
        """Record several data refs the run reads, resolved to commits now."""
        self._check()
        return self.store.log_inputs(self.id, refs)

    # ----------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Block until everything logged so far is committed; raise a background error."""
        if self._ended:
            return
        self._writer.flush()

    def end(self, status: str = FINISHED) -> None:
        """Commit what is queued and set the final status, in one transaction.

        The status becomes FAILED instead of FINISHED if the background writer met an error,
        which is then raised here.
        """
        if self._ended:
            return
        self._ended = True
        try:
            self._writer.finish(status)
        finally:
            self._info = None  # re-read on next access: status and end time changed
            with _lock:
                if self in _stack:
                    _stack.remove(self)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.end(FINISHED)
            return
        status = KILLED if isinstance(exc, KeyboardInterrupt) else FAILED
        try:
            self.end(status)
        except Exception as late:  # noqa: BLE001 - the escaping exception matters more
            exc.add_note(f"also, logging to run {self.id} failed: {late}")


def _store_for(home: str | Path | None) -> TrackingStore:
    repos: DataRepos = default_repos(Path(home) if home is not None else None)
    with _lock:
        store = _stores.get(id(repos))
        if store is None or store.repos is not repos:
            store = _stores[id(repos)] = TrackingStore(repos)
        return store


def _end_open_runs() -> None:
    """At interpreter exit: flush and finish every run left open (innermost first)."""
    while True:
        with _lock:
            if not _stack:
                return
            run = _stack[-1]
        try:
            run.end(FINISHED)
        except Exception:  # nobody is left to raise to: say it on stderr
            log.exception("could not end run %s at exit", run.id)
            with _lock:
                if run in _stack:
                    _stack.remove(run)


def _system_tags(source: dict[str, Any], user: str) -> dict[str, str]:
    # MLflow's names, so tools that read them (and people used to them) find them
    tags = {"mlflow.source.name": str(source.get("entry_point", "")), "mlflow.user": user,
            "mlflow.source.type": "LOCAL"}
    commit = source.get("code", {}).get("git_commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def start_run(
    name: str | None = None, *, experiment: str | None = None, nested: bool = False,
    parent: str | None = None, tags: Mapping[str, Any] | None = None, inputs: Sequence[str] = (),
    home: str | Path | None = None, store: TrackingStore | None = None,
) -> ActiveRun:
    """Start a run and make it the active one; use it as a context manager.

    Args:
        name: the run's name.
        experiment: experiment name (default: $THREADLINE_EXPERIMENT, else "Default").
        nested: start a child of the active run (otherwise an active run is an error).
        parent: id of the parent run, explicitly.
        tags: initial tags.
        inputs: data refs the run reads, e.g. `["churn-splits@main:train"]`.
        home: the Threadline home (default: found from the working folder).
        store: an explicit store (overrides `home`).
    """
    global _atexit_registered
    store = store or _store_for(home)
    with _lock:
        current = _stack[-1] if _stack else None
    if current is not None and not nested and parent is None:
        raise InvalidArgument(
            f"run {current.id} is already active; end it first, or pass nested=True to start "
            "a child run")
    parent_id = parent or (current.id if nested and current is not None else None)
    exp = store.experiment(experiment or os.environ.get(ENV_EXPERIMENT) or DEFAULT_EXPERIMENT)
    source = {"code": code_version(), "environment": environment(),
              "entry_point": sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>"}
    user = store.repos.author
    all_tags = {**_system_tags(source, user), **{k: str(v) for k, v in (tags or {}).items()}}
    info = store.create_run(exp.id, name=name or "", parent_id=parent_id, tags=all_tags,
                            source=source, user=user)
    run = ActiveRun(store, info)
    with _lock:
        _stack.append(run)
        if not _atexit_registered:
            atexit.register(_end_open_runs)
            _atexit_registered = True
    if inputs:
        try:
            run.log_inputs(list(inputs))
        except BaseException:
            run.end(FAILED)
            raise
    return run


def active_run() -> ActiveRun | None:
    """The innermost active run of this process, or None."""
    with _lock:
        return _stack[-1] if _stack else None


def _current() -> ActiveRun:
    run = active_run()
    if run is None:
        raise InvalidArgument("no active run; start one with `threadline.tracking.start_run()`")
    return run


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """`log_metric` on the active run."""
    _current().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """`log_metrics` on the active run."""
    _current().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    """`log_param` on the active run."""
    _current().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """`log_params` on the active run."""
    _current().log_params(params)


def set_tag(key: str, value: Any) -> None:
    """`set_tag` on the active run."""
    _current().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    """`set_tags` on the active run."""
    _current().set_tags(tags)


def log_artifact(path: str | Path, artifact_path: str = "") -> str:
    """`log_artifact` on the active run."""
    return _current().log_artifact(path, artifact_path)


def flush() -> None:
    """`flush` on the active run."""
    _current().flush()


def end_run(status: str = FINISHED) -> None:
    """End the active run."""
    _current().end(status)
