"""What runs inside a worker process: one step attempt, from checkout to commit.

`execute_step(job)` is the module-level function the engine ships to `threadline.compute`. The
job carries everything by value (home, engine URLs, the step's definition, input commit ids,
parameters, the datum plan), because the worker is another process, maybe another machine. It
opens its own data layer, checks the inputs out into a scratch folder, runs the step, and
commits the output folder itself - objects first, then one transaction (`DataRepos.commit`) -
returning the commit id. Any error before that commit publishes nothing; the scratch folder is
always removed.

Datum steps run the step once per datum to process, with the datum input's folder holding
only that datum's files and the output folder being `<output>/<datum>/`. When the branch's
head is the output the plan compared with, the new outputs are committed with `update=True`,
dropping the changed and removed datums' folders (the head's other files are kept as manifest
entries: nothing is copied); otherwise the unchanged datums' outputs go into the new tree as
manifest entries of the earlier output commit (again without reading or copying their data)
and the whole tree is committed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy.engine import make_url
from sqlalchemy.orm import configure_mappers

from threadline.config import ENV_DATABASE_URL, ENV_HOME, ENV_STORE_URL, Settings, settings_for
from threadline.data.checkout import checkout
from threadline.data.connect import connect
from threadline.data.manifest import FileEntry
from threadline.data.paths import make_folder_inside
from threadline.data.repos import Resolved, commit_node
from threadline.data.worktree import build_manifest, scan
from threadline.errors import Conflict, InvalidArgument, ThreadlineError
from threadline.lineage.graph import LineageGraph, Node
from threadline.pipelines import datums
from threadline.pipelines.python_api import load_function
from threadline.pipelines.spec import DatumSpec
from threadline.pipelines.yaml_spec import render
from threadline.storage.files import restore_files

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos

# This module is what the local executor's forkserver preloads (`WORKER_MODULES`): set up the
# ORM's mappers there, once, rather than in each forked worker's first query (about 12 ms).
configure_mappers()

LOG_TAIL = 4000
RUN_KIND = "pipeline_run"


class StepError(ThreadlineError):
    """A step's own code or command failed; nothing was published."""


@contextlib.contextmanager
def job_environment(job: dict[str, Any]) -> Iterator[None]:
    """The job's home as the process's home while its step runs: step code that opens the SDK
    (`ModelRegistry.open()`, `tl.data.repo(...)`) must reach the home the run belongs to, not
    the one this long-lived worker process was started for."""
    wanted = {ENV_HOME: str(job["home"]), ENV_DATABASE_URL: job.get("database_url") or "",
              ENV_STORE_URL: job.get("store_url") or ""}
    saved = {name: os.environ.get(name) for name in wanted}
    for name, value in wanted.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute_step(job: dict[str, Any]) -> dict[str, Any]:
    """Run one step attempt described by `job` (see `engine._job`); returns what it committed."""
    started = time.perf_counter()
    with _workspace(job, "step") as (home, scratch):
        log = io.StringIO()
        if job["step"]["kind"] == "builtin":
            commit_id, counts = _run_builtin(home.repos, job), (1, 0, 0)
        else:
            run = _runner(job["step"])
            with job_environment(job):
                commit_id, counts = _run_and_commit(home, job, scratch, log, run)
        return {"commit": commit_id, "processed": counts[0], "skipped": counts[1],
                "removed": counts[2], "log": log.getvalue()[-LOG_TAIL:],
                "duration_s": time.perf_counter() - started}


def process_datums(job: dict[str, Any]) -> dict[str, Any]:
    """Run a step on one chunk of its datums and store the outputs, without committing.

    For datum fan-out: the engine sends chunks to several workers, then one `execute_step`
    whose plan carries every chunk's `produced` entries commits them together. The outputs go
    into the content store (shared by every worker, whatever the topology) and come back as
    manifest entries; until that commit they are unreferenced objects, which gc keeps for its
    grace period.
    """
    with _workspace(job, "datums") as (home, scratch):
        repos = home.repos
        log = io.StringIO()
        out = scratch / "out"
        out.mkdir()
        run = _runner(job["step"])
        with job_environment(job):
            _run_datums(repos, job, _checkout_inputs(repos, job, scratch), scratch, out, log, run)
        files = scan([out])
        with repos.lock.shared(), repos.content.writer() as writer:
            manifest = build_manifest(files, writer, None)  # scratch paths: no stat cache
        entries = [[e.path, e.key, e.size, e.chunks, e.executable, e.rows] for e in manifest]
        return {"entries": entries, "log": log.getvalue()[-LOG_TAIL:]}


class _Home(NamedTuple):
    """A home this worker process has open."""

    settings: Settings
    repos: DataRepos
    database_file: tuple[int, int] | None  # see `_database_file`
    #: branch ref -> the branch as this process's last commit onto it left it (see `_commit`)
    heads: dict[str, Resolved]


#: the homes this worker process has open, by (home, database URL, store URL), oldest first
_OPEN: OrderedDict[tuple[str, str, str], _Home] = OrderedDict()
_OPEN_MAX = 4


@contextlib.contextmanager
def _workspace(job: dict[str, Any], kind: str) -> Iterator[tuple[_Home, Path]]:
    """The job's home and a scratch folder in it, removed afterwards.

    The home is opened once per worker process and kept for its later jobs: a warm worker (a
    kept executor, `pipeline watch`) pays for the database engine, its compiled statements and
    the pack indexes once, not per step, when a 10-datum step is a few milliseconds of work.
    Packs other processes wrote since are looked up at the start of each job; a job that fails
    closes its home, in case the failure was the connection's.
    """
    key = (str(job["home"]), job.get("database_url") or "", job.get("store_url") or "")
    home = _OPEN.pop(key, None)
    if home is not None and _database_file(home.settings) != home.database_file:
        home.repos.close()  # the home was removed and made again: this is another database
        home = None
    if home is None:
        settings = settings_for(Path(job["home"]), env={ENV_DATABASE_URL: job["database_url"],
                                                       ENV_STORE_URL: job["store_url"]})
        home = _Home(settings, connect(settings), _database_file(settings), {})
    else:
        home.repos.content.refresh()
    home.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"tl-{kind}-{job['step']['name']}-", dir=home.settings.tmp_dir))
    try:
        yield home, scratch
    except BaseException:
        home.repos.close()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _OPEN[key] = home
    while len(_OPEN) > _OPEN_MAX:
        _OPEN.popitem(last=False)[1].repos.close()


def _database_file(settings: Settings) -> tuple[int, int] | None:
    """(device, inode) of a SQLite database file, None for a server database or no file.

    While this process holds the database open its inode stays allocated, so a file made
    anew at the same path has another number.
    """
    path = _sqlite_file(settings.database_url)
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


@functools.lru_cache(maxsize=16)
def _sqlite_file(database_url: str) -> str | None:
    """The file of a SQLite database URL (asked before every job), None for any other."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return url.database


def _checkout_inputs(repos: DataRepos, job: dict[str, Any], scratch: Path) -> dict[str, Path]:
    """Check out every input but the datum-split one; name -> folder."""
    folders: dict[str, Path] = {}
    for item in job["inputs"]:
        if item["name"] == job["plan"].get("datum_input"):
            continue
        dest = scratch / "in" / item["name"]
        ref = f"{item['repo']}@{item['commit']}" + (f":{item['path']}" if item["path"] else "")
        checkout(repos, ref, dest)
        dest.mkdir(parents=True, exist_ok=True)  # an empty commit is an empty folder
        folders[item["name"]] = dest
    return folders


def _run_datums(repos: DataRepos, job: dict[str, Any], folders: dict[str, Path], scratch: Path,
                out: Path, log: io.StringIO, run: _Run) -> None:
    plan, datum_input = job["plan"], job["plan"]["datum_input"]
    datum_dirs = _restore_datums(repos, job, scratch / "datums")
    for (name, _files), folder in zip(plan["process"], datum_dirs):
        target = make_folder_inside(out, name)
        run({**folders, datum_input: folder}, target, job["params"], log)


def _run_and_commit(home: _Home, job: dict[str, Any], scratch: Path, log: io.StringIO,
                    run: _Run) -> tuple[str, tuple[int, int, int]]:
    repos, plan = home.repos, job["plan"]
    out = scratch / "out"
    out.mkdir()
    produced: list[FileEntry] = []
    if plan.get("produced") is not None:  # a fanned-out datum step: the chunks ran already
        produced = [FileEntry(p, k, s, c, bool(x), r) for p, k, s, c, x, r in plan["produced"]]
        processed = plan["processed_count"]
    elif plan.get("datum_input") is None:
        run(_checkout_inputs(repos, job, scratch), out, job["params"], log)
        processed = 1
    else:
        _run_datums(repos, job, _checkout_inputs(repos, job, scratch), scratch, out, log, run)
        processed = len(plan["process"])
    return _commit(home, job, out, produced), (processed, plan.get("reused", 0),
                                                len(plan.get("removed", [])))


def _restore_datums(repos: DataRepos, job: dict[str, Any], root: Path) -> list[Path]:
    """Check out each datum's files into its own folder (one batch for all of them), from the
    stored contents the plan names (no manifest to read)."""
    plan = job["plan"]
    item = next(i for i in job["inputs"] if i["name"] == plan["datum_input"])
    strip = len(item["path"]) + 1 if item["path"] else 0
    folders, restore = [], []
    for i, (_name, files) in enumerate(plan["process"]):
        folder = root / str(i)
        folder.mkdir(parents=True)
        for path in files:
            stored = plan["stored"].get(path)
            if stored is None:
                raise InvalidArgument(f"datum file {path} is missing from commit {item['commit'][:12]}")
            entry = FileEntry(path, *stored)
            rel = path[strip:]
            if "/" in rel:
                make_folder_inside(folder, rel.rpartition("/")[0])
            restore.append((entry.stored, folder / rel, 0o755 if entry.executable else 0o644))
        folders.append(folder)
    restore_files(repos.content, restore)
    return folders


def _load_step(step: dict[str, Any]) -> tuple[Callable[..., Any], str]:
    """The step's function, its project's modules re-imported first if their files changed
    since this long-lived worker imported them."""
    # The driver's project folder, where it exists here; on another machine of a Ray cluster
    # the project arrives as the job's working directory instead (already on sys.path), and a
    # missing driver path must not shadow it.
    if step.get("path") and step["path"] not in sys.path and os.path.isdir(step["path"]):
        sys.path.insert(0, step["path"])
    return load_function(step["target"], fresh=True)


#: a step ready to run once: (inputs by name, output folder, parameters, log)
_Run = Callable[[dict[str, Path], Path, dict[str, Any], io.StringIO], None]


def _runner(step: dict[str, Any]) -> _Run:
    """The step's function or command, ready to run once per datum (a Python step's function
    is loaded - and its project's changed modules re-imported - once per job)."""
    if step["kind"] != "python":
        return functools.partial(_run_command, step)
    fn, out_arg = _load_step(step)

    def run(inputs: dict[str, Path], out: Path, params: dict[str, Any], log: io.StringIO) -> None:
        kwargs = {**params, **inputs, out_arg: out}
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            fn(**kwargs)

    return run


def _run_command(step: dict[str, Any], inputs: dict[str, Path], out: Path, params: dict[str, Any],
                 log: io.StringIO) -> None:
    """Run a command step once."""
    argv = render(tuple(step["argv"]), {k: str(v) for k, v in inputs.items()}, str(out), params)
    if argv and argv[0] == "python":  # the interpreter running threadline, not whatever is on PATH
        argv[0] = sys.executable
    try:
        base = step["base"] if os.path.isdir(step["base"]) else None  # elsewhere: the shipped copy
        done = subprocess.run(argv, cwd=base, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StepError(f"step {step['name']!r}: cannot run {argv[0]!r}: {exc}") from exc
    log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-500:]
        raise StepError(f"step {step['name']!r}: command exited {done.returncode}: {tail}")


def _commit(home: _Home, job: dict[str, Any], out: Path, produced: list[FileEntry],
            *, guess: bool = True) -> str:
    """Commit the output folder; reused datums' outputs (and fanned-out chunks' outputs) go in as
    manifest entries of the commits that hold them, without reading or copying their data.

    The branch is taken to be where this process's last commit onto it left it when that is
    the output the plan compared with (a watch's steady state), without reading it: if it
    moved meanwhile, the commit is refused (Conflict) before it is recorded - its objects are
    stored already, and kept - and made again against the branch as it is.
    """
    repos, step, plan, output = home.repos, job["step"], job["plan"], job["output"]
    into = f"{output}@main"
    previous = plan.get("previous")
    update = False
    drop: list[str] = []
    entries = list(produced)
    onto = guessed = None
    if previous is not None:
        known = home.heads.get(into) if guess else None
        if known is not None and known.commit is not None and known.commit.id == previous:
            onto = guessed = known
        else:
            onto = repos.resolve(into)
        head = onto.commit
        if head is not None and head.id == previous:
            # the head's tree is the outputs of the datums the plan compared with: keep it, less
            # the outputs of the changed and removed datums (nothing is read or copied)
            update, drop = True, [*plan["changed"], *plan["removed"]]
        elif plan["reused"]:
            manifest = repos.manifest(repos.resolve(f"{output}@{previous}").require_commit())
            entries += [entry for name in _reused_datums(repos, job) for entry in manifest.under(name)]
    derived = [(commit_node(i["commit"]), f"pipeline.{step['name']}") for i in job["inputs"]]
    try:
        result = repos.commit(
            into, [out], f"pipeline {job['pipeline']} step {step['name']} (run {job['run_id'][:8]})",
            metadata=job["metadata"], update=update, drop=drop, produced_by=Node(RUN_KIND, job["run_id"]),
            derived_from=derived, allow_empty=True, entries=entries, stat_cache=False, onto=onto,
        )
    except Conflict:
        home.heads.pop(into, None)
        if guessed is not None:
            return _commit(home, job, out, produced, guess=False)  # moved meanwhile: look again
        raise
    if onto is not None:
        home.heads[into] = Resolved(onto.spec, onto.repo, result.commit, onto.branch)
    return result.commit.id


def _reused_datums(repos: DataRepos, job: dict[str, Any]) -> list[str]:
    """The datums a plan reuses: those of its datum input less those it processes. (A plan
    ships only their count: it is needed by name only when the output branch moved away from
    the output they come from, which is rare.)"""
    plan = job["plan"]
    item = next(i for i in job["inputs"] if i["name"] == plan["datum_input"])
    commit = repos.resolve(f"{item['repo']}@{item['commit']}").require_commit()
    current = datums.split(repos.manifest(commit).under(item["path"]), item["path"],
                           DatumSpec.parse(plan["datums"]))
    processed = {name for name, _files in plan["process"]}
    return [name for name in sorted(current) if name not in processed]


def _run_builtin(repos: DataRepos, job: dict[str, Any]) -> str:
    """A built-in preparation step: the prep function commits (with its own report)."""
    from threadline.pipelines import builtins  # the prep stack is heavy: only when used

    step = job["step"]
    table = next((i for i in job["inputs"] if i["name"] == "table"), None)
    ref = None
    if table is not None:
        ref = f"{table['repo']}@{table['commit']}" + (f":{table['path']}" if table["path"] else "")
    into = f"{job['output']}@main"
    commit_id = builtins.run(repos, step["target"], ref, into, job["params"], Path(step["base"]))
    graph = LineageGraph(repos.db)
    for item in job["inputs"]:
        graph.record(commit_node(item["commit"]), f"pipeline.{step['name']}", commit_node(commit_id))
    graph.record(Node(RUN_KIND, job["run_id"]), "produced", commit_node(commit_id))
    return commit_id
