"""Pipeline test helpers: an in-process executor, a user project with step modules written on
the fly, one-line runs (imported by `conftest.py` and the tests; a unique module name)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete

from threadline.compute import Executor, Task, TaskFailed, TaskHandle
from threadline.meta.models import PipelineCacheRow
from threadline.pipelines.engine import RunResult, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from threadline.config import Settings
    from threadline.data.repos import DataRepos
    from threadline.pipelines.spec import PipelineSpec


class InlineExecutor(Executor):
    """Runs each task in the calling thread, through the real `Executor` interface."""

    kind = "inline"

    def __init__(self) -> None:
        self.workers = 1
        self.submitted: list[str] = []

    def submit(self, task: Task) -> TaskHandle:
        self.submitted.append(task.label)
        handle = TaskHandle(task, cancel=lambda _handle: False)
        handle._start_attempt()
        try:
            handle._set_result(task.fn(*task.args, **task.kwargs))
        except Exception as exc:  # noqa: BLE001 - reported through the handle, as remotely
            handle._set_error(TaskFailed(str(exc), task=task.label, attempts=1,
                                         error_type=type(exc).__name__, error_message=str(exc)))
        return handle

    def shutdown(self, wait: bool = True) -> None:
        pass


@dataclass
class Project:
    """A user's project: a folder on sys.path for step modules, a home, helpers."""

    root: Path
    repos: DataRepos
    settings: Settings
    executor: InlineExecutor

    def module(self, name: str, source: str) -> Any:
        """Write `<root>/<name>.py` (dotted names make packages) and (re)import it."""
        path = self.root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(self.root).parents:
            if str(parent) != ".":
                (self.root / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    def commit(self, repo: str, files: Mapping[str, bytes], *, create: bool = True) -> str:
        """Commit exactly `files` as the new tree of `repo@main`; returns the commit id."""
        if create and repo not in {r.name for r in self.repos.list()}:
            self.repos.create(repo)
        folder = self.root.parent / "src" / repo
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        folder.mkdir(parents=True, exist_ok=True)
        return self.repos.commit(f"{repo}@main", [folder], "test data", allow_empty=True).commit.id

    def run(self, spec: PipelineSpec, **kwargs: Any) -> RunResult:
        """Run in-process (pass executor=... to use another)."""
        kwargs.setdefault("executor", self.executor)
        return run_pipeline(spec, self.settings, self.repos, **kwargs)

    def tree(self, repo: str, commit: str | None = None) -> dict[str, str]:
        """path -> content key of a commit (default: the head of repo@main)."""
        target = self.repos.resolve(f"{repo}@{commit}" if commit else f"{repo}@main")
        return {e.path: e.key for e in self.repos.manifest(target.require_commit())}

    def read(self, repo: str, path: str) -> bytes:
        """A file of repo@main."""
        from threadline.data.tables import open_file

        with open_file(self.repos, f"{repo}@main:{path}") as fh:
            return fh.read()

    def forget_cache(self) -> None:
        """Drop every cache entry, so the next run recomputes everything (a fresh run)."""
        with self.repos.db.session() as session, session.begin():
            session.execute(delete(PipelineCacheRow))


def ran(result: RunResult) -> set[str]:
    """The steps a run executed (not reused)."""
    return {name for name, o in result.steps.items() if o.status == "succeeded"}
