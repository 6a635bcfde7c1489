"""Triggers: run pipelines when a branch they read gets a new commit, or on a cron schedule.

`watch` polls: for each pipeline it resolves the data refs the pipeline reads and compares
their commits with those the pipeline's latest run recorded (`pipeline_runs.inputs`); any
difference starts a run (trigger `watch`). A pipeline with `schedule` (5-field cron: minute
hour day-of-month month day-of-week, with `*`, `*/n`, `a-b`, `a-b/n` and lists) also runs
when a scheduled minute passed since the previous poll (trigger `cron`). Polling the refs table
works the same on SQLite and PostgreSQL and needs no server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from threadline.compute import open_executor
from threadline.errors import InvalidArgument
from threadline.pipelines import WORKER_MODULES
from threadline.pipelines.engine import run_pipeline
from threadline.pipelines.planner import resolve_refs
from threadline.pipelines.runs import RunStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from threadline.compute import Executor
    from threadline.config import Settings
    from threadline.data.repos import DataRepos
    from threadline.pipelines.engine import RunResult
    from threadline.pipelines.spec import PipelineSpec

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(base)
            end = high if step_text else start
        if step < 1 or start < low or end > high or start > end:
            raise ValueError(item)
        out.update(range(start, end + 1, step))
    return out


def parse_cron(expr: str) -> list[set[int]]:
    """The allowed values of each of the five fields."""
    parts = expr.split()
    if len(parts) != 5:
        raise InvalidArgument(f"cron expression {expr!r} needs 5 fields: minute hour day month weekday")
    try:
        fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES)]
    except ValueError as exc:
        raise InvalidArgument(f"cron expression {expr!r}: bad field item {exc}") from exc
    if 7 in fields[4]:
        fields[4].add(0)  # 0 and 7 are both Sunday
    return fields


def cron_matches(expr: str, when: datetime) -> bool:
    """Whether the minute `when` is scheduled by `expr` (day fields combine as in cron: either)."""
    minute, hour, dom, month, dow = parse_cron(expr)
    weekday = (when.weekday() + 1) % 7  # cron counts from Sunday = 0
    parts = expr.split()
    if parts[2] != "*" and parts[4] != "*":
        day_ok = when.day in dom or weekday in dow
    else:
        day_ok = when.day in dom and weekday in dow
    return when.minute in minute and when.hour in hour and when.month in month and day_ok


def cron_due(expr: str, since: datetime, now: datetime) -> bool:
    """Whether a scheduled minute lies in (since, now] (at most one day is scanned)."""
    start = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = max(start, now - timedelta(days=1))
    while start <= now:
        if cron_matches(expr, start):
            return True
        start += timedelta(minutes=1)
    return False


def changed_inputs(pipeline: PipelineSpec, repos: DataRepos) -> dict[str, tuple[str | None, str]]:
    """Data refs whose commit differs from what the latest run read: ref -> (old, new)."""
    last = RunStore(repos.db).last_inputs(pipeline.name) or {}
    now = {ref: commit.id for ref, (commit, _path) in resolve_refs(repos, pipeline).items()}
    return {ref: (last.get(ref), new) for ref, new in now.items() if last.get(ref) != new}


def watch(
    pipelines: Sequence[PipelineSpec],
    settings: Settings,
    repos: DataRepos,
    *,
    once: bool = False,
    interval_s: float = 10.0,
    executor: str | Executor = "local",
    workers: int | None = None,
    on_run: Callable[[PipelineSpec, str, RunResult], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll and run pipelines on new commits or schedules; returns how many runs it started.

    With `once`, polls a single time (for cron jobs and tests); otherwise loops until
    interrupted.
    """
    runs = 0
    last_poll = datetime.now(UTC)
    # One executor for the whole watch: worker start-up is paid once, not per new commit (it
    # would dominate an incremental run that processes a few datums).
    shared: Executor | None = None
    try:
        while True:
            now = datetime.now(UTC)
            for pipeline in pipelines:
                trigger = ""
                if changed_inputs(pipeline, repos):
                    trigger = "watch"
                elif pipeline.schedule and cron_due(pipeline.schedule, last_poll, now):
                    trigger = "cron"
                if not trigger:
                    continue
                if shared is None:
                    shared = (open_executor(executor, workers=workers, preload=WORKER_MODULES)
                              if isinstance(executor, str) else executor)
                result = run_pipeline(pipeline, settings, repos, executor=shared, trigger=trigger)
                runs += 1
                if on_run is not None:
                    on_run(pipeline, trigger, result)
            last_poll = now
            if once:
                return runs
            sleep(interval_s)
    finally:
        if shared is not None and isinstance(executor, str):
            shared.shutdown()

