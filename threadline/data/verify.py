"""Re-hash everything reachable: branches -> commits -> manifests -> objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.errors import IntegrityError, NotFound
from threadline.storage.cas import decode_chunk_list, parse_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.data.repos import DataRepos


@dataclass(frozen=True)
class Problem:
    """A missing or corrupt object and where it is used."""

    key: str
    kind: str  # "missing" | "corrupt"
    used_by: str  # "repo@commit:path" or "repo@commit (manifest)"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"key": self.key, "kind": self.kind, "used_by": self.used_by, "detail": self.detail}


@dataclass
class VerifyReport:
    """What `verify` checked and what it found."""

    commits: int = 0
    files: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or corrupt."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "commits": self.commits, "files": self.files,
                "objects": self.objects, "bytes": self.bytes,
                "problems": [p.to_dict() for p in self.problems]}


def _check(repos: DataRepos, key: str, used_by: str, report: VerifyReport) -> bytes | None:
    try:
        data = repos.content.get(key)
    except NotFound as exc:
        report.problems.append(Problem(key, "missing", used_by, str(exc)))
        return None
    except IntegrityError as exc:
        report.problems.append(Problem(key, "corrupt", used_by, str(exc)))
        return None
    report.objects += 1
    report.bytes += len(data)
    return data


def verify(
    repos: DataRepos, repo: str | None = None, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Read and re-hash every object reachable from the commits of `repo` (or of all repos)."""
    report = VerifyReport()
    repos.content.refresh()
    commits = [c for c in repos.all_commits() if repo is None or c.repo == repo]
    if repo is not None:
        repos.get(repo)  # NotFound for an unknown repo
    seen: set[str] = set()
    for commit in commits:
        report.commits += 1
        where = f"{commit.repo}@{commit.short_id}"
        blob = _check(repos, commit.manifest, f"{where} (manifest)", report)
        if blob is None:
            continue
        for entry in repos.manifest(commit):
            report.files += 1
            if entry.key in seen:
                continue
            seen.add(entry.key)
            used = f"{where}:{entry.path}"
            keys = [entry.key]
            if entry.chunks > 1:
                listing = _check(repos, entry.key, used, report)
                if listing is None:
                    continue
                keys = [k.hex() for k, _ in decode_chunk_list(listing, entry.key)]
            for key in keys:
                if key in seen and key != entry.key:
                    continue
                seen.add(key)
                parse_key(key)
                if _check(repos, key, used, report) is not None and progress:
                    progress(1)
    return report
