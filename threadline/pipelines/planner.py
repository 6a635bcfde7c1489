"""Planning one step: resolve its inputs, compute its cache key, decide reuse or run, build the job.

The driver calls `plan_step` when every upstream step of a step has an output commit. Data refs
are resolved once per run (`resolve_refs`), so every step of a run sees the same commits even
if a branch moves meanwhile. The result either names the cached output commit or carries the
job for `worker.execute_step` - plain values only, since it crosses a process boundary.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from threadline.pipelines import codehash, datums, envhash
from threadline.pipelines.cache import KeyParts, explain
from threadline.pipelines.python_api import load_function
from threadline.pipelines.runs import DatumKeys, entry_datums

if TYPE_CHECKING:
    from threadline.config import Settings
    from threadline.data.manifest import Manifest
    from threadline.data.model import CommitInfo
    from threadline.data.repos import DataRepos
    from threadline.pipelines.runs import RunStore
    from threadline.pipelines.spec import PipelineSpec, StepSpec


@dataclass
class StepPlan:
    """What to do with one step: reuse `cached` or run `job` (`Planner.reasons` says why)."""

    step: str
    repo: str
    parts: KeyParts
    key: str
    cached: str | None = None
    job: dict[str, Any] | None = None
    datums_total: int = 0
    #: a datum step's datums, kept with its cache entry once its output exists
    datums: DatumKeys | None = None


def resolve_refs(repos: DataRepos, pipeline: PipelineSpec) -> dict[str, tuple[CommitInfo, str]]:
    """Every data ref the pipeline reads -> (commit, in-repo path), resolved once."""
    out: dict[str, tuple[CommitInfo, str]] = {}
    for step in pipeline.steps:
        for item in step.inputs:
            if item.ref is not None and item.ref not in out:
                target = repos.resolve(item.ref)
                out[item.ref] = (target.require_commit(), target.path)
    return out


def _content_hash(repos: DataRepos, commit: CommitInfo, path: str) -> str:
    if not path:
        return commit.manifest  # the tree's own content hash
    digest = blake3.blake3()
    for entry in repos.manifest(commit).under(path):
        digest.update(f"{entry.path}\0{entry.key}\0{int(entry.executable)}\n".encode())
    return digest.hexdigest()


class Planner:
    """Plans steps for one run.

    Args:
        repos: the data layer (driver side).
        settings: the home (its paths and engine URLs go into each job).
        store: the status store (cache look-ups).
        pipeline: the pipeline, parameter overrides applied.
        run_id: the run's id (recorded in output commits).
    """

    def __init__(self, repos: DataRepos, settings: Settings, store: RunStore,
                 pipeline: PipelineSpec, run_id: str) -> None:
        self.repos = repos
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.run_id = run_id
        self.refs = resolve_refs(repos, pipeline)
        self.base = Path(pipeline.source.get("base") or Path.cwd())
        self._code: dict[str, str] = {}
        self._commits: dict[tuple[str, str], CommitInfo] = {}

    def code_hash(self, step: StepSpec) -> str:
        """The step's code hash (computed once per run)."""
        if step.name not in self._code:
            if step.kind == "python":
                value = codehash.function_hash(load_function(step.target, fresh=True)[0])
            elif step.kind == "command":
                value = codehash.command_hash(step.argv, self.base)
            else:
                sources = sorted(f for s in step.params.get("sources", [])
                                 for f in glob.glob(str(self.base / s), recursive=True))
                value = codehash.builtin_hash(step.target) + codehash.command_hash(tuple(sources), self.base)
            self._code[step.name] = value
        return self._code[step.name]

    def plan_step(self, step: StepSpec, outputs: dict[str, tuple[str, str]]) -> StepPlan:
        """Plan `step`, given the output (repo, commit id) of each upstream step."""
        repo = self.pipeline.output_repo(step)
        inputs: list[dict[str, Any]] = []
        content: dict[str, str] = {}
        commits: dict[str, str] = {}
        current: dict[str, datums.Datum] | None = None
        datum_manifest: Manifest | None = None  # the tree the datums are split from
        for item in step.inputs:
            if item.ref is not None:
                commit, path = self.refs[item.ref]
                in_repo = commit.repo
            else:
                in_repo, commit_id = outputs[str(item.step)]
                commit = self._commit(in_repo, commit_id)
                path = item.path
            inputs.append({"name": item.name, "repo": in_repo, "commit": commit.id, "path": path})
            commits[item.name] = commit.id
            if item.datums is not None:
                datum_manifest = self.repos.manifest(commit)
                current = datums.split(datum_manifest.under(path), path, item.datums)
                content[item.name] = datums.content_key(current)
            else:
                content[item.name] = _content_hash(self.repos, commit, path)
        datum_input = step.datum_input
        extra = {"kind": step.kind, "target": step.target, "output": repo,
                 "datums": str(datum_input.datums) if datum_input else ""}
        parts = KeyParts(content, commits, self.code_hash(step), dict(step.params),
                         envhash.fingerprint(), datum_input.name if datum_input else None, extra)
        key = parts.key()
        plan = StepPlan(step.name, repo, parts, key, datums_total=len(current or {}),
                        datums=DatumKeys(current) if current is not None else None)
        hit = self.store.cached(self.pipeline.name, step.name, key)
        if hit is not None and self._exists(hit.output_repo, hit.output_commit):
            plan.cached = hit.output_commit
            return plan
        datum_plan: dict[str, Any] = {"datum_input": None, "process": [], "reused": 0, "removed": [],
                                      "changed": [], "previous": None}
        metadata: dict[str, Any] = {
            "pipeline": self.pipeline.name, "step": step.name, "run": self.run_id,
            "code_hash": parts.code, "params": parts.params, "env": parts.env,
            "inputs": commits, "cache_key": key,
        }
        if datum_input is not None and current is not None and datum_manifest is not None:
            dp, previous_keys = self._datum_plan(step, parts.base_key(), current)
            datum_plan = {
                "datum_input": datum_input.name, "datums": str(datum_input.datums),
                "process": [[d.name, list(d.files)] for d in dp.process],
                # the files' stored contents, so a worker restores them without reading the manifest
                "stored": {e.path: [e.key, e.size, e.chunks, e.executable] for d in dp.process
                           for e in map(datum_manifest.files.__getitem__, d.files)},
                # how many, not which: the worker keeps them as the head's files (see worker._commit)
                "reused": len(dp.reuse), "removed": dp.removed, "previous": dp.previous,
                "changed": [d.name for d in dp.process if d.name in previous_keys],
            }
            metadata["datum_count"] = len(current)
        plan.job = {
            "home": str(self.settings.home), "database_url": self.settings.database_url,
            "store_url": self.settings.store_url, "pipeline": self.pipeline.name,
            "run_id": self.run_id, "output": repo, "inputs": inputs, "params": dict(step.params),
            "plan": datum_plan, "metadata": metadata,
            "step": {"name": step.name, "kind": step.kind, "target": step.target,
                     "argv": list(step.argv), "base": str(self.base), "path": self._import_root(step)},
        }
        return plan

    def reasons(self, plan: StepPlan) -> list[str]:
        """Why a planned step runs: what changed since its newest finished run. (Asked once the
        step is on its way: the reasons are for people, the worker does not need them.)"""
        last = self.store.last_parts(self.pipeline.name, plan.step)
        return explain(last[0] if last else None, plan.parts) or ["cached output is missing"]

    @staticmethod
    def _import_root(step: StepSpec) -> str | None:
        """The folder a worker must have on sys.path to import a Python step (a Ray worker
        does not inherit the driver's path)."""
        if step.kind != "python":
            return None
        root = codehash.project_root(step.target.partition(":")[0])
        return str(root) if root is not None else None

    def _commit(self, repo: str, commit_id: str) -> CommitInfo:
        """The commit `commit_id` of `repo`, read once per run (a commit never changes)."""
        key = (repo, commit_id)
        if key not in self._commits:
            self._commits[key] = self.repos.resolve(f"{repo}@{commit_id}").require_commit()
        return self._commits[key]

    def _exists(self, repo: str, commit_id: str) -> bool:
        return (repo, commit_id) in self._commits or self.repos.exists(repo, commit_id)

    def _datum_plan(
        self, step: StepSpec, base_key: str, current: dict[str, datums.Datum]
    ) -> tuple[datums.DatumPlan, dict[str, str]]:
        """What to process, against the newest output whose unchanged datums can be reused;
        and that output's datum keys."""
        entry = self.store.latest_with_base(self.pipeline.name, step.name, base_key)
        if entry is None or not self._exists(entry.output_repo, entry.output_commit):
            return datums.plan(current, None, None), {}
        previous = entry_datums(entry)
        if previous is None:  # an entry of an older version: the keys were commit metadata
            keys = self._commit(entry.output_repo, entry.output_commit).metadata.get("datums")
            previous = dict(keys) if isinstance(keys, dict) else None
        if previous is None:
            return datums.plan(current, None, None), {}
        return datums.plan(current, previous, entry.output_commit), previous
