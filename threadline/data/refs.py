"""The ref syntax: `repo`, `repo@branch`, `repo@tag`, `repo@<commit prefix>`, `repo@rev~N`,
each optionally followed by `:path/in/repo`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from threadline.data.paths import check_name, normalize_path
from threadline.errors import InvalidArgument

_REV_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:~(?P<back>\d{1,6}))?$")


@dataclass(frozen=True)
class RefSpec:
    """A parsed ref.

    Attributes:
        repo: the data repo name.
        rev: branch, tag or commit-id prefix; None means the repo's default branch.
        back: how many first-parent steps to walk back (`~N`).
        path: a path inside the commit's tree ("" for the root); None if no `:` was given.
    """

    repo: str
    rev: str | None = None
    back: int = 0
    path: str | None = None

    def __str__(self) -> str:
        text = self.repo
        if self.rev is not None:
            text += f"@{self.rev}"
        if self.back:
            text += f"~{self.back}"
        if self.path is not None:
            text += f":{self.path}"
        return text


def parse_ref(ref: str) -> RefSpec:
    """Parse a ref string; raise InvalidArgument with the expected syntax when malformed."""
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise InvalidArgument(f"invalid ref {ref!r}: expected REPO[@BRANCH|TAG|COMMIT][~N][:PATH]")
    head, sep, path = ref.partition(":")
    repo, at, rev = head.partition("@")
    check_name(repo, "repo name")
    spec_rev: str | None = None
    back = 0
    if at:
        match = _REV_RE.match(rev)
        if not match:
            raise InvalidArgument(
                f"invalid revision {rev!r} in {ref!r}: expected a branch, tag or commit id, "
                "optionally followed by ~N"
            )
        spec_rev = check_name(match["name"], "revision")
        back = int(match["back"] or 0)
    return RefSpec(repo, spec_rev, back, normalize_path(path, allow_root=True) if sep else None)
