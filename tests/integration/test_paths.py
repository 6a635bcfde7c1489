"""Paths never escape: refs, prefixes, names, checkouts and committed folders, via CLI and SDK.

Every user-supplied in-repo path is checked once at the boundary (`threadline.data.paths`).
These tests go through the public entry points - the `threadline` CLI in a subprocess and the
SDK in this process - so a verb that forgot the check fails here. NUL bytes cannot be passed
on a command line (the kernel's argv is NUL-terminated), so they are tested through the SDK.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import TYPE_CHECKING

import pytest

from threadline.data.checkout import checkout
from threadline.data.handles import Repo
from threadline.data.tables import open_file
from threadline.errors import InvalidArgument, NotFound

from .homes import read_tree

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .homes import Home

# (in-repo path, what the error says)
ESCAPES = [
    ("../x", "escapes the repository with '..'"),
    ("a/../../x", "escapes the repository with '..'"),
    ("data/../../../etc/passwd", "escapes the repository with '..'"),
    ("/etc/passwd", "is absolute"),
    ("//etc/passwd", "is absolute"),
    ("..\\x", "contains a backslash"),
    ("a\\..\\..\\x", "contains a backslash"),
    ("C:/Windows/win.ini", "is a Windows absolute path"),
    ("c:..", "is a Windows absolute path"),
    ("a" * 300, "is too long"),
    ("/".join(["segment"] * 700), "is too long"),
    ("x\ty", "contains a control character"),
]
ESCAPE_IDS = [
    "dotdot",
    "inner-dotdot",
    "deep-dotdot",
    "absolute",
    "double-slash",
    "backslash",
    "backslash-dotdot",
    "windows-drive",
    "windows-drive-relative",
    "long-name",
    "long-path",
    "control-char",
]


@pytest.fixture
def home(make_home: Callable[..., Home], tmp_path: Path) -> Home:
    """A home whose repo `r` has one commit with an ordinary file and literal look-alikes."""
    home = make_home("r")
    src = tmp_path / "src"
    for rel, data in {
        "data/x.csv": b"a,b\n1,2\n",
        "%2e%2e/x.txt": b"literal percent-encoded dots\n",
        "%252e%252e%252fy.txt": b"literal double-encoded\n",
        "\uff0e\uff0e/z.txt": b"fullwidth dots\n",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    with home.session() as repos:
        repos.commit("r", [src], "first")
    return home


def _error_line(result: object) -> str:
    stderr = result.stderr.decode()  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(("path", "message"), ESCAPES, ids=ESCAPE_IDS)
def test_sdk_refuses_escaping_paths(home: Home, tmp_path: Path, path: str, message: str) -> None:
    with home.session() as repos:
        with pytest.raises(InvalidArgument, match=message):
            repos.resolve(f"r@main:{path}")
        with pytest.raises(InvalidArgument, match=message):
            open_file(repos, f"r@main:{path}")
        with pytest.raises(InvalidArgument, match=message):
            Repo(repos, "r").ls(path=path)
        with pytest.raises(InvalidArgument, match=message):
            checkout(repos, f"r@main:{path}", tmp_path / "out")
        with pytest.raises(InvalidArgument, match=message):
            repos.commit("r", [tmp_path / "src"], "escape", prefix=path)
        assert len(repos.log("r")) == 1
    assert not (tmp_path / "out").exists()


# The CLI shares the SDK's checks; one case of each kind keeps the subprocess count down.
CLI_CASES = ["dotdot", "absolute", "backslash", "windows-drive", "long-name", "control-char"]


@pytest.mark.parametrize(
    ("path", "message"),
    [case for case, name in zip(ESCAPES, ESCAPE_IDS) if name in CLI_CASES],
    ids=CLI_CASES,
)
def test_cli_refuses_escaping_paths(home: Home, path: str, message: str) -> None:
    result = home.cli("data", "cat", f"r@main:{path}")
    assert result.returncode == 2
    assert result.stdout == b""
    assert message in _error_line(result)


def test_cli_refuses_escaping_paths_in_every_verb(home: Home, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for args in (
        ("data", "ls", "r@main", "../x"),
        ("data", "checkout", "r@main:../x", str(tmp_path / "out")),
        ("data", "diff", "r@main:../x", "r@main"),
        ("data", "commit", "r", str(tmp_path / "src"), "--prefix", "../outside"),
        ("data", "commit", "r", str(tmp_path / "src"), "--prefix", str(outside)),
        ("data", "status", "r", str(tmp_path / "src"), "--prefix", "..\\x"),
    ):
        result = home.cli(*args)
        assert result.returncode == 2, args
        line = _error_line(result)
        assert "escapes the repository" in line or "absolute" in line or "backslash" in line
    assert not (tmp_path / "out").exists()
    assert not outside.exists()
    with home.session() as repos:
        assert len(repos.log("r")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "create", "../evil"), "invalid repo name '../evil'"),
        (("data", "create", "a/b"), "invalid repo name 'a/b'"),
        (("data", "branch", "r", "../main"), "invalid branch name '../main'"),
        (("data", "tag", "r", "/v1", "r@main"), "invalid tag name '/v1'"),
        (("data", "cat", "r@../main:data/x.csv"), "invalid revision '../main'"),
    ],
    ids=["repo-dotdot", "repo-slash", "branch", "tag", "revision"],
)
def test_cli_refuses_escaping_names(home: Home, args: tuple[str, ...], message: str) -> None:
    result = home.cli(*args)
    assert result.returncode == 2
    assert message in _error_line(result)


def test_sdk_refuses_nul_bytes_and_overlong_names(home: Home, tmp_path: Path) -> None:
    with home.session() as repos:
        with pytest.raises(InvalidArgument, match="invalid ref"):
            repos.resolve("r@main:data/x.csv\x00.txt")
        with pytest.raises(InvalidArgument, match="invalid ref"):
            open_file(repos, "r@main:\x00../x")
        with pytest.raises(InvalidArgument, match="contains a NUL byte"):
            repos.commit("r", [tmp_path / "src"], "nul", prefix="a\x00b")
        with pytest.raises(InvalidArgument, match="invalid ref"):
            Repo(repos, "r").ls(path="data\x00/../..")
        with pytest.raises(InvalidArgument, match="invalid repo name"):
            repos.create("r\x00x")
        with pytest.raises(InvalidArgument, match="invalid branch name"):
            repos.branch("r", "main\x00")
        with pytest.raises(InvalidArgument, match="invalid repo name"):
            repos.create("x" * 101)
        assert [info.name for info in repos.list()] == ["r"]


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("%2e%2e/x.txt", b"literal percent-encoded dots\n"),
        ("%252e%252e%252fy.txt", b"literal double-encoded\n"),
        ("\uff0e\uff0e/z.txt", b"fullwidth dots\n"),
    ],
    ids=["percent-encoded", "double-encoded", "fullwidth-dots"],
)
def test_encoded_dots_are_literal_names(home: Home, tmp_path: Path, path: str, content: bytes) -> None:
    result = home.cli("data", "cat", f"r@main:{path}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == content
    missing = path.replace(path.rsplit("/", 1)[-1], "secret")
    result = home.cli("data", "cat", f"r@main:{missing}")
    assert result.returncode == 3  # NotFound of the literal name, not an escape
    assert f"no file '{missing}'" in _error_line(result)
    with home.session() as repos:
        with open_file(repos, f"r@main:{path}") as fh:
            assert fh.read() == content
        with pytest.raises(NotFound, match="no file"):
            open_file(repos, f"r@main:{missing}")
        checkout(repos, f"r@main:{path}", tmp_path / "one")
    assert read_tree(tmp_path / "one") == {path.rsplit("/", 1)[-1]: content}
    assert not (tmp_path / "x.txt").exists()


def test_checkout_writes_encoded_names_inside_the_destination(home: Home, tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "dest"
    result = home.cli("data", "checkout", "r@main", str(dest))
    assert result.returncode == 0, result.stderr
    assert read_tree(dest) == read_tree(tmp_path / "src")
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["dest"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every checkout destination, holding one file that must not change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_bytes(b"untouched\n")
    return folder


def test_checkout_refuses_folder_symlinked_outside(home: Home, tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "data").symlink_to(outside, target_is_directory=True)
    result = home.cli("data", "checkout", "r@main", str(dest), "--force")
    assert result.returncode == 2
    # either message is clear: the symlinked folder, or the file that would land outside
    refused = r"(/dest/data is a symlink|'data/x\.csv' would be written outside)"
    assert re.search(refused, _error_line(result))
    with home.session() as repos, pytest.raises(InvalidArgument, match=refused):
        checkout(repos, "r@main", dest, force=True)
    assert read_tree(outside) == {"keep.txt": b"untouched\n"}


def test_checkout_refuses_nested_folder_symlinked_outside(home: Home, tmp_path: Path, outside: Path) -> None:
    src = tmp_path / "nested-src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "c.txt").write_bytes(b"deep\n")
    with home.session() as repos:
        repos.commit("r@main", [src], "nested")
        dest = tmp_path / "dest"
        (dest / "a").mkdir(parents=True)
        (dest / "a" / "b").symlink_to(outside, target_is_directory=True)
        refused = r"(/dest/a/b is a symlink|'a/b/c\.txt' would be written outside)"
        with pytest.raises(InvalidArgument, match=refused):
            checkout(repos, "r@main", dest, force=True)
    assert read_tree(outside) == {"keep.txt": b"untouched\n"}


def test_checkout_refuses_file_symlinked_outside(home: Home, tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "x.csv").symlink_to(outside / "keep.txt")
    result = home.cli("data", "checkout", "r@main", str(dest), "--force")
    assert result.returncode == 2
    assert "is a symlink" in _error_line(result)
    assert read_tree(outside) == {"keep.txt": b"untouched\n"}
    assert os.readlink(dest / "data" / "x.csv") == str(outside / "keep.txt")


def test_commit_refuses_a_folder_containing_a_symlink(home: Home, tmp_path: Path, outside: Path) -> None:
    src = tmp_path / "linked"
    (src / "sub").mkdir(parents=True)
    (src / "ok.txt").write_bytes(b"fine\n")
    link = src / "sub" / "secret"
    link.symlink_to(outside / "keep.txt")
    result = home.cli("data", "commit", "r", str(src))
    assert result.returncode == 2
    line = _error_line(result)
    assert f"{link} is a symlink" in line
    with home.session() as repos:
        with pytest.raises(InvalidArgument, match=f"{link} is a symlink"):
            repos.commit("r", [src], "with a link")
        with pytest.raises(InvalidArgument, match="is a symlink"):
            repos.commit("r", [link], "the link itself")
        assert len(repos.log("r")) == 1  # nothing was committed


def test_commit_refuses_a_symlinked_folder(home: Home, tmp_path: Path, outside: Path) -> None:
    src = tmp_path / "linked"
    src.mkdir()
    (src / "elsewhere").symlink_to(outside, target_is_directory=True)
    with home.session() as repos:
        with pytest.raises(InvalidArgument, match="elsewhere is a symlink"):
            repos.commit("r", [src], "through a folder link")
        assert len(repos.log("r")) == 1


def test_unicode_spellings_of_one_name_cannot_become_two_files(home: Home, tmp_path: Path) -> None:
    src = tmp_path / "unicode"
    src.mkdir()
    composed = unicodedata.normalize("NFC", "caf\u00e9.txt")
    decomposed = unicodedata.normalize("NFD", composed)
    (src / composed).write_bytes(b"one\n")
    (src / decomposed).write_bytes(b"two\n")
    with home.session() as repos:
        with pytest.raises(InvalidArgument, match=f"two sources map to '{composed}'"):
            repos.commit("r", [src], "look-alikes")
        (src / composed).unlink()
        repos.commit("r", [src], "one spelling")
        with open_file(repos, f"r@main:{composed}") as fh:  # stored under the NFC name
            assert fh.read() == b"two\n"


def test_commit_refuses_unsafe_file_names_on_disk(home: Home, tmp_path: Path) -> None:
    for name, message in (
        ("a\\b.txt", "contains a backslash"),
        ("line\nbreak.txt", "contains a control character"),
    ):
        src = tmp_path / f"bad-{len(name)}"
        src.mkdir()
        (src / name).write_bytes(b"x")
        with home.session() as repos, pytest.raises(InvalidArgument, match=message):
            repos.commit("r", [src], "bad name")
