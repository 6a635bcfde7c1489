"""Running a pipeline: topological scheduling on a compute executor, status, cache, lineage.

The driver walks the DAG: as soon as every upstream step of a step has an output commit, it
plans the step (`planner.py`). A cache hit is reused at once (and the step's output branch
pointed back at it if it moved); a miss becomes a `Task` running `worker.execute_step` on the
executor, so independent steps run in parallel. A datum step with enough datums to process
fans out: its datums are dealt into one chunk per worker (`worker.process_datums`, each storing
its outputs in the content store), and one last task commits every chunk's outputs together
with the reused datums' (so the step still publishes one commit, or nothing). The executor is
opened only when the first step has to run: a fully cached run starts no worker at all.

Failure: a step whose task fails (its code raised, its command exited non-zero, its worker
died, it timed out after its retries) published nothing; its descendants are marked `skipped`
(upstream failed), independent branches still finish, and the run is `failed`. A step is
marked `succeeded` and cached only once its worker returned its commit id (see `runs.py`).

Lineage: each output commit has edges `input commit -[pipeline.<step>]-> output commit` and
`pipeline_run:<id> -[produced]-> output commit`, recorded in the commit's own transaction.
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from threadline.compute import Resources, Task, TaskFailed, TaskTimeout, open_executor
from threadline.errors import AlreadyExists, ThreadlineError
from threadline.pipelines import WORKER_MODULES
from threadline.pipelines.planner import Planner
from threadline.pipelines.runs import RunStore
from threadline.pipelines.spec import apply_overrides
from threadline.pipelines.worker import LOG_TAIL, execute_step, process_datums

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.compute import Executor, TaskHandle
    from threadline.config import Settings
    from threadline.data.repos import DataRepos
    from threadline.pipelines.planner import StepPlan
    from threadline.pipelines.spec import PipelineSpec


#: a datum step fans out over the executor's workers only with at least this many datums each
#: (the last task restores and re-hashes every chunk's outputs: for a few cheap datums one
#: task is faster)
FANOUT_MIN = 32


@dataclass
class StepOutcome:
    """What happened to one step in a run (or would happen, in a dry run)."""

    step: str
    status: str  # pending | running | cached | succeeded | failed | skipped | would run
    repo: str = ""
    commit: str | None = None
    reasons: list[str] = field(default_factory=list)
    processed: int = 0
    skipped: int = 0
    removed: int = 0
    duration_s: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class RunResult:
    """A finished run: its id (None for a dry run), status and each step's outcome."""

    run_id: str | None
    pipeline: str
    status: str
    steps: dict[str, StepOutcome]
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"run": self.run_id, "pipeline": self.pipeline, "status": self.status,
                "duration_s": self.duration_s, "steps": [s.to_dict() for s in self.steps.values()]}


def run_pipeline(
    pipeline: PipelineSpec,
    settings: Settings,
    repos: DataRepos,
    *,
    params: dict[str, Any] | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    dry_run: bool = False,
    trigger: str = "manual",
    on_event: Callable[[StepOutcome], None] | None = None,
) -> RunResult:
    """Run (or with `dry_run`, explain) a pipeline; see the module docstring.

    Args:
        pipeline: the pipeline.
        settings: the home it runs in.
        repos: the data layer of that home (driver side).
        params: overrides, `name=value` for every step declaring `name`, `step.name=value` for one.
        executor: "local" (process pool), "ray", or an open `Executor` (the caller owns it:
            it is not shut down; for embedding and tests).
        workers: worker count for the executor (default: its own).
        dry_run: plan only - nothing runs, nothing is recorded.
        trigger: what started the run (manual | watch | cron), recorded.
        on_event: called with a step's outcome whenever its status changes (live progress).
    """
    started = time.perf_counter()
    spec = apply_overrides(pipeline, params or {})
    store = RunStore(repos.db)
    run_id = ""
    if not dry_run:
        for step in spec.steps:
            _ensure_repo(repos, spec.output_repo(step))
    planner = Planner(repos, settings, store, spec, run_id)
    if not dry_run:
        inputs = {ref: commit.id for ref, (commit, _path) in planner.refs.items()}
        kind = executor if isinstance(executor, str) else getattr(executor, "kind", "custom")
        run_id = store.start(spec.name, trigger=trigger, executor=str(kind), params=params or {},
                             inputs=inputs, steps=[s.name for s in spec.steps])
        planner.run_id = run_id
    if isinstance(executor, str):
        kind_name = executor

        def make() -> Executor:
            return open_executor(kind_name, workers=workers, preload=WORKER_MODULES)
    else:
        shared = executor

        def make() -> Executor:
            return shared
    driver = _Driver(spec, planner, store, run_id, dry_run, on_event, make,
                     owns_executor=isinstance(executor, str))
    try:
        status = driver.run()
    except BaseException as exc:
        if not dry_run:
            store.finish(run_id, "failed", f"interrupted: {type(exc).__name__}: {exc}")
        raise
    finally:
        driver.close()
    if not dry_run:
        store.finish(run_id, status, driver.error)
    return RunResult(run_id or None, spec.name, status, driver.outcomes, time.perf_counter() - started)


def _ensure_repo(repos: DataRepos, name: str) -> None:
    if not repos.exists(name):
        with contextlib.suppress(AlreadyExists):  # a concurrent run created it
            repos.create(name, description="output of a pipeline step")


class _Driver:
    """The scheduling loop of one run."""

    def __init__(self, spec: PipelineSpec, planner: Planner, store: RunStore, run_id: str,
                 dry_run: bool, on_event: Callable[[StepOutcome], None] | None,
                 make_executor: Callable[[], Executor], *, owns_executor: bool = True) -> None:
        self.spec = spec
        self.planner = planner
        self.store = store
        self.run_id = run_id
        self.dry_run = dry_run
        self.on_event = on_event
        self.make_executor = make_executor
        self.owns_executor = owns_executor
        self.executor: Executor | None = None
        self.outcomes = {s.name: StepOutcome(s.name, "pending", spec.output_repo(s)) for s in spec.steps}
        self.outputs: dict[str, tuple[str, str]] = {}
        self.running: dict[TaskHandle, StepPlan] = {}
        self.finished: queue.SimpleQueue[TaskHandle] = queue.SimpleQueue()
        self.fanout: dict[str, _FanOut] = {}
        self.started: dict[str, float] = {}
        self.error = ""

    def _emit(self, outcome: StepOutcome, **record: Any) -> None:
        if not self.dry_run and record:
            self.store.update_step(self.run_id, outcome.step, **record)
        if self.on_event is not None:
            self.on_event(outcome)

    def run(self) -> str:
        waiting = [s for s in self.spec.steps]
        while waiting or self.running:
            still: list[Any] = []
            for step in waiting:
                ups = step.upstream()
                states = {self.outcomes[u].status for u in ups}
                if states & {"failed", "skipped"}:
                    bad = sorted(u for u in ups if self.outcomes[u].status in ("failed", "skipped"))
                    self._skip(step.name, f"upstream {', '.join(bad)} failed")
                elif self.dry_run and "would run" in states:
                    self._would_run_after(step.name, sorted(u for u in ups
                                                            if self.outcomes[u].status == "would run"))
                elif ups <= self.outputs.keys():
                    self._start(self.planner.plan_step(step, self.outputs))
                else:
                    still.append(step)
            waiting = still
            if self.running:
                self._collect()
            elif waiting and not any(s.upstream() & self._pending() for s in waiting):
                break  # nothing can progress (cannot happen for a validated DAG)
        failed = [o for o in self.outcomes.values() if o.status == "failed"]
        if failed:
            self.error = "; ".join(f"{o.step}: {o.error}" for o in failed)
        return "failed" if failed else "dry-run" if self.dry_run else "succeeded"

    def _pending(self) -> set[str]:
        return {n for n, o in self.outcomes.items() if o.status in ("pending", "running")}

    def _skip(self, name: str, why: str) -> None:
        outcome = self.outcomes[name]
        outcome.status, outcome.reasons = "skipped", [why]
        self._emit(outcome, status="skipped", reason=why)

    def _would_run_after(self, name: str, upstream: list[str]) -> None:
        outcome = self.outcomes[name]
        outcome.status = "would run"
        outcome.reasons = [f"upstream {u} would re-run" for u in upstream]
        self._emit(outcome)

    def _start(self, plan: StepPlan) -> None:
        outcome = self.outcomes[plan.step]
        common = {"cache_key": plan.key, "key_parts": plan.parts.to_dict(), "output_repo": plan.repo}
        if plan.cached is not None:
            outcome.status, outcome.commit, outcome.reasons = "cached", plan.cached, ["cached"]
            outcome.skipped = plan.datums_total
            self.outputs[plan.step] = (plan.repo, plan.cached)
            if not self.dry_run:
                self._point_branch(plan.repo, plan.cached)
            now = datetime.now(UTC)
            self._emit(outcome, status="cached", reason="cached", output_commit=plan.cached,
                       datums_skipped=plan.datums_total, started_at=now, ended_at=now, **common)
            return
        if self.dry_run:
            outcome.status, outcome.reasons = "would run", self.planner.reasons(plan)
            if plan.job and plan.job["plan"]["datum_input"]:
                dp = plan.job["plan"]
                outcome.processed, outcome.skipped = len(dp["process"]), dp["reused"]
                outcome.removed = len(dp["removed"])
            self._emit(outcome)
            return
        assert plan.job is not None
        if self.executor is None:
            self.executor = self.make_executor()
        self.started[plan.step] = time.perf_counter()
        process = plan.job["plan"]["process"]
        workers = int(getattr(self.executor, "workers", 1) or 1)
        if plan.job["plan"]["datum_input"] and workers > 1 and len(process) >= 2 * FANOUT_MIN:
            # datums in parallel: chunks store their outputs, one last task commits them all
            count = min(workers, len(process) // FANOUT_MIN)
            self.fanout[plan.step] = _FanOut(count)
            for i in range(count):
                chunk = {**plan.job, "plan": {**plan.job["plan"], "process": process[i::count]}}
                self._submit(plan, process_datums, chunk, f"[{i + 1}/{count}]")
        else:
            self._submit(plan, execute_step, plan.job, "")
        outcome.status, outcome.reasons = "running", self.planner.reasons(plan)
        self._emit(outcome, status="running", reason="; ".join(outcome.reasons),
                   started_at=datetime.now(UTC), **common)
        if plan.datums is not None:
            plan.datums.packed()  # now, while the worker runs, rather than once it is done

    def _submit(self, plan: StepPlan, fn: Callable[..., Any], job: dict[str, Any], part: str) -> None:
        assert self.executor is not None
        step = self.spec.step(plan.step)
        task = Task(fn, args=(job,), name=f"{self.spec.name}.{plan.step}{part}",
                    resources=Resources(step.resources.cpus, step.resources.memory_mb, step.resources.gpus),
                    retries=step.retries, timeout_s=step.timeout_s)
        handle = self.executor.submit(task)
        self.running[handle] = plan
        handle.add_done_callback(self.finished.put)

    def _point_branch(self, repo: str, commit: str) -> None:
        """Keep `<repo>@main` at the output of the latest run, even when it is a reused one."""
        repos = self.planner.repos
        head = repos.resolve(f"{repo}@main").commit
        if head is None or head.id != commit:
            repos.rollback(f"{repo}@main", f"{repo}@{commit}",
                           message=f"pipeline {self.spec.name}: reuse cached output")

    def _collect(self) -> None:
        """Wait for the next finished task and record it."""
        handle = self.finished.get()
        plan = self.running.pop(handle)
        outcome = self.outcomes[plan.step]
        outcome.duration_s = time.perf_counter() - self.started[plan.step]
        fan = self.fanout.get(plan.step)
        if fan is not None and fan.left:
            self._collect_chunk(plan, handle, fan)
            return
        try:
            result = handle.result()
        except (TaskFailed, TaskTimeout, ThreadlineError, OSError) as exc:
            self._fail(plan, handle, exc)
            return
        if fan is not None:
            result["log"] = "".join(fan.logs)[-LOG_TAIL:] + result["log"]
        outcome.status, outcome.commit = "succeeded", result["commit"]
        outcome.processed, outcome.skipped, outcome.removed = (
            result["processed"], result["skipped"], result["removed"])
        self.outputs[plan.step] = (plan.repo, result["commit"])
        # the cache entry is written only now: the commit it names exists
        self.store.succeed(self.run_id, self.spec.name, plan.step, key=plan.key,
                           base_key=plan.parts.base_key(), repo=plan.repo, commit=result["commit"],
                           datums=plan.datums,
                           datums_processed=outcome.processed, datums_skipped=outcome.skipped,
                           datums_removed=outcome.removed, attempts=handle.attempts,
                           duration_s=outcome.duration_s, log_tail=result["log"],
                           ended_at=datetime.now(UTC))
        self._emit(outcome)

    def _collect_chunk(self, plan: StepPlan, handle: TaskHandle, fan: _FanOut) -> None:
        """One chunk of a fanned-out datum step finished; after the last, commit them all."""
        if fan.failed:
            return  # a sibling failed: the step is failed already, this one was cancelled
        try:
            result = handle.result()
        except (TaskFailed, TaskTimeout, ThreadlineError, OSError) as exc:
            fan.failed = True
            for other, other_plan in self.running.items():
                if other_plan.step == plan.step:
                    other.cancel()
            self._fail(plan, handle, exc)
            return
        fan.left -= 1
        fan.entries.extend(result["entries"])
        fan.logs.append(result["log"])
        if not fan.left:
            assert plan.job is not None
            dp = plan.job["plan"]
            job = {**plan.job, "plan": {**dp, "produced": fan.entries, "processed_count": len(dp["process"])}}
            self._submit(plan, execute_step, job, "[commit]")

    def _fail(self, plan: StepPlan, handle: TaskHandle, exc: BaseException) -> None:
        """Record a failed step (nothing was published) and skip everything downstream."""
        outcome = self.outcomes[plan.step]
        outcome.status, outcome.error = "failed", _describe(exc)
        self._emit(outcome, status="failed", error=outcome.error, attempts=handle.attempts,
                   duration_s=outcome.duration_s, ended_at=datetime.now(UTC))
        for name in self.spec.downstream({plan.step})[1:]:
            if self.outcomes[name].status == "pending":
                self._skip(name, f"upstream {plan.step} failed")

    def close(self) -> None:
        """Cancel what still runs (after an interrupt) and shut the executor down."""
        for handle in self.running:
            handle.cancel()
        if self.executor is not None and self.owns_executor:
            self.executor.shutdown()


@dataclass
class _FanOut:
    """A datum step split over several tasks: chunks still running, their outputs and logs."""

    left: int
    entries: list[list[Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    failed: bool = False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TaskFailed):
        return f"{exc.error_type}: {exc.error_message}"
    return f"{type(exc).__name__}: {exc}"
