"""Compare two trees: added, removed and modified paths with sizes and row counts."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.data.manifest import FileEntry, Manifest


@dataclass(frozen=True)
class Change:
    """One path that differs; `old`/`new` are None where the path is absent."""

    path: str
    status: str  # "added" | "removed" | "modified"
    old: FileEntry | None
    new: FileEntry | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with sizes and row counts on both sides."""
        return {
            "path": self.path,
            "status": self.status,
            "old_size": self.old.size if self.old else None,
            "new_size": self.new.size if self.new else None,
            "old_rows": self.old.rows if self.old else None,
            "new_rows": self.new.rows if self.new else None,
        }


@dataclass(frozen=True)
class Diff:
    """The changes from one tree to another, sorted by path."""

    changes: list[Change] = field(default_factory=list)

    def by_status(self, status: str) -> list[Change]:
        """Changes of one kind."""
        return [c for c in self.changes if c.status == status]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "added": len(self.by_status("added")),
            "removed": len(self.by_status("removed")),
            "modified": len(self.by_status("modified")),
            "changes": [c.to_dict() for c in self.changes],
        }

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{c.status}</td><td>{html.escape(c.path)}</td>"
            f"<td>{c.old.size if c.old else ''}</td><td>{c.new.size if c.new else ''}</td></tr>"
            for c in self.changes
        )
        return ("<table><tr><th>status</th><th>path</th><th>old bytes</th><th>new bytes</th></tr>"
                f"{rows}</table>")


def diff_manifests(old: Manifest, new: Manifest, prefix: str = "") -> Diff:
    """Changes from `old` to `new`, restricted to `prefix` when given."""
    old_files = {e.path: e for e in old.under(prefix)}
    new_files = {e.path: e for e in new.under(prefix)}
    changes: list[Change] = []
    for path in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(path), new_files.get(path)
        if a is None:
            changes.append(Change(path, "added", None, b))
        elif b is None:
            changes.append(Change(path, "removed", a, None))
        elif not a.same_content(b):
            changes.append(Change(path, "modified", a, b))
    return Diff(changes)
