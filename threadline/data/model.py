"""Plain records the data layer hands out: repos, commits, branch history, results."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True)
class RepoInfo:
    """A data repo and its branches and tags (name -> commit id or None)."""

    name: str
    description: str
    default_branch: str
    created_at: datetime
    branches: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "description": self.description,
            "default_branch": self.default_branch,
            "created_at": self.created_at.isoformat(),
            "branches": self.branches,
            "tags": self.tags,
        }

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(b)}</td><td><code>{(c or '(empty)')[:12]}</code></td></tr>"
            for b, c in sorted(self.branches.items())
        )
        return (
            f"<b>data repo {html.escape(self.name)}</b> (default branch "
            f"{html.escape(self.default_branch)})<table><tr><th>branch</th><th>commit</th></tr>"
            f"{rows}</table>"
        )


@dataclass(frozen=True)
class CommitInfo:
    """An immutable data commit."""

    id: str
    repo: str
    parents: list[str]
    manifest: str
    message: str
    author: str
    created_at: datetime
    metadata: dict[str, Any]
    file_count: int
    total_bytes: int

    @property
    def short_id(self) -> str:
        """The first 12 hex digits, enough to name it in a ref."""
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "repo": self.repo,
            "parents": self.parents,
            "manifest": self.manifest,
            "message": self.message,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "metadata": self.metadata,
            "file_count": self.file_count,
            "total_bytes": self.total_bytes,
        }

    def _repr_html_(self) -> str:
        return (
            f"<b>commit <code>{self.short_id}</code></b> in {html.escape(self.repo)}: "
            f"{html.escape(self.message)}<br>{self.file_count} files, {self.total_bytes:,} bytes, "
            f"by {html.escape(self.author)} at {self.created_at:%Y-%m-%d %H:%M:%S}"
        )


@dataclass(frozen=True)
class RefLogEntry:
    """One move of a branch."""

    branch: str
    old_commit: str | None
    new_commit: str | None
    action: str
    actor: str
    message: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "branch": self.branch,
            "old_commit": self.old_commit,
            "new_commit": self.new_commit,
            "action": self.action,
            "actor": self.actor,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class CommitResult:
    """What a commit call did: the commit the branch points at, and whether it is new."""

    commit: CommitInfo
    created: bool
    branch: str
