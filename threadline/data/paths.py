"""Names and in-repo paths: checked once at the boundary so nothing can escape its root.

Repo, branch and tag names are short slugs. Paths inside a repo are relative POSIX paths with no
`.`/`..` segments, no empty segments, no backslashes, NUL or control characters; Unicode is
normalised to NFC so that look-alike spellings of one name cannot become two files.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from pathlib import Path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Plain ASCII names whose segments do not start with "." are already canonical: the fast path
# for the tens of thousands of names a scan of a real tree produces.
_SEGMENT = r"[A-Za-z0-9_+=,@-][A-Za-z0-9._+=,@ -]{0,254}"
_PLAIN_RE = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
MAX_PATH = 4096
MAX_SEGMENT = 255


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a valid repo/branch/tag name, else raise InvalidArgument."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name or name.endswith("."):
        raise InvalidArgument(
            f"invalid {what} {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def normalize_path(path: str, *, allow_root: bool = False) -> str:
    """Return the canonical in-repo form of a user-supplied path, or raise InvalidArgument.

    Args:
        path: e.g. `data/x.csv`; a leading `./` and trailing `/` are tolerated.
        allow_root: accept `""`, `.` and `/` as the repo root (for `ls` and sub-tree refs).
    """
    if not isinstance(path, str):
        raise InvalidArgument(f"path must be a string, not {type(path).__name__}")
    if len(path) <= MAX_PATH and _PLAIN_RE.match(path):
        return path
    if "\x00" in path:
        raise InvalidArgument(f"path {path!r} contains a NUL byte; remove it")
    if _CONTROL_RE.search(path):
        raise InvalidArgument(f"path {path!r} contains a control character; rename the file")
    if "\\" in path:
        raise InvalidArgument(f"path {path!r} contains a backslash; use '/' between folders")
    if re.match(r"^[A-Za-z]:", path):
        raise InvalidArgument(f"path {path!r} is a Windows absolute path; give a relative path")
    if path.startswith("/") and path.strip("/"):
        raise InvalidArgument(f"path {path!r} is absolute; give a path relative to the repo root")
    text = unicodedata.normalize("NFC", path)
    parts = [p for p in text.strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"path {path!r} escapes the repository with '..'; remove it")
    if not parts:
        if allow_root:
            return ""
        raise InvalidArgument("empty path: name a file inside the repository")
    if len(text) > MAX_PATH or any(len(p.encode()) > MAX_SEGMENT for p in parts):
        raise InvalidArgument(f"path {path[:80]!r}... is too long (max {MAX_SEGMENT} bytes a name)")
    return "/".join(parts)


def make_folder_inside(root: Path, rel_folder: str) -> Path:
    """Create `root/rel_folder` one component at a time, refusing any symlinked component.

    Used by checkout: a destination that already holds a symlink to elsewhere can never
    redirect a write outside `root`. The path is normalized first (no `..`, no `.`), so with
    no component a symlink the folder is inside `root` without resolving it (a pipeline makes
    a folder per datum: resolving both paths was two thirds of the cost).
    """
    folder = root
    for part in normalize_path(rel_folder, allow_root=True).split("/") if rel_folder else []:
        folder = folder / part
        if folder.is_symlink():
            raise InvalidArgument(f"{folder} is a symlink; remove it before writing there")
        folder.mkdir(exist_ok=True)
    return folder
