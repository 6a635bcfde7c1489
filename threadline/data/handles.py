"""`Repo`: the notebook-friendly handle on one data repo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.data.checkout import checkout
from threadline.data.diff import Diff, diff_manifests
from threadline.data.manifest import FileEntry, Manifest

if TYPE_CHECKING:
    from threadline.data.model import CommitInfo, CommitResult, RepoInfo
    from threadline.data.repos import DataRepos
    from threadline.lineage.graph import Node


class Repo:
    """One data repo; every method takes revisions (`main`, a tag, a commit prefix, `main~1`)."""

    def __init__(self, repos: DataRepos, name: str) -> None:
        self.repos = repos
        self.name = name

    def _ref(self, rev: str | None, path: str | None = None) -> str:
        ref = self.name if rev is None else f"{self.name}@{rev}"
        return f"{ref}:{path}" if path is not None else ref

    @property
    def info(self) -> RepoInfo:
        """Branches, tags and settings."""
        return self.repos.get(self.name)

    def commit(
        self,
        *paths: str | Path,
        message: str,
        branch: str | None = None,
        metadata: dict[str, Any] | None = None,
        update: bool = False,
        prefix: str = "",
        produced_by: Node | None = None,
    ) -> CommitInfo:
        """Commit files/folders onto a branch and return the branch's (possibly new) head."""
        result: CommitResult = self.repos.commit(
            self._ref(branch), [Path(p) for p in paths], message, metadata=metadata,
            update=update, prefix=prefix, produced_by=produced_by,
        )
        return result.commit

    def log(self, rev: str | None = None, limit: int = 100) -> list[CommitInfo]:
        """History, newest first."""
        return self.repos.log(self._ref(rev), limit)

    def ls(self, rev: str | None = None, path: str = "") -> list[FileEntry]:
        """Files of a commit under `path`."""
        target = self.repos.resolve(self._ref(rev, path))
        if target.commit is None:
            return []
        return self.repos.manifest(target.commit).under(target.path)

    def diff(self, old: str, new: str | None = None, path: str = "") -> Diff:
        """Changes from revision `old` to `new` (default: the default branch)."""
        a = self.repos.resolve(self._ref(old)).commit
        b = self.repos.resolve(self._ref(new)).commit
        return diff_manifests(
            self.repos.manifest(a) if a else Manifest(),
            self.repos.manifest(b) if b else Manifest(),
            path,
        )

    def checkout(self, dest: str | Path, rev: str | None = None, *, force: bool = False) -> Path:
        """Write a revision's files into `dest`."""
        checkout(self.repos, self._ref(rev), Path(dest), force=force)
        return Path(dest)

    def branch(self, name: str, from_rev: str | None = None) -> None:
        """Create a branch."""
        self.repos.branch(self.name, name, self._ref(from_rev) if from_rev else None)

    def tag(self, name: str, rev: str | None = None) -> None:
        """Create a tag."""
        self.repos.tag(self.name, name, self._ref(rev))

    def rollback(self, to_rev: str, branch: str | None = None) -> str:
        """Point `branch` back at `to_rev`; returns the new head id."""
        return self.repos.rollback(self._ref(branch), self._ref(to_rev))[1]

    def __repr__(self) -> str:
        return f"Repo({self.name!r})"

    def _repr_html_(self) -> str:
        return self.info._repr_html_()
