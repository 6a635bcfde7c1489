"""In-repo paths and names: normalised once, nothing can escape a root."""

from __future__ import annotations

import os
import unicodedata
from typing import TYPE_CHECKING

import pytest

from threadline.data.paths import check_name, make_folder_inside, normalize_path
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a.csv", "a.csv"),
        ("./a/b.csv", "a/b.csv"),
        ("a//b/./c/", "a/b/c"),
        ("dir/sub dir/x y.parquet", "dir/sub dir/x y.parquet"),
        ("..hidden/x..y", "..hidden/x..y"),
        ("ünï/cødé.txt", "ünï/cødé.txt"),
    ],
)
def test_normalize_valid_paths(raw: str, clean: str) -> None:
    assert normalize_path(raw) == clean


def test_unicode_is_normalised_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café/résumé.csv")
    assert decomposed != "café/résumé.csv"
    assert normalize_path(decomposed) == unicodedata.normalize("NFC", "café/résumé.csv")
    assert normalize_path(decomposed) == normalize_path("café/résumé.csv")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("../x", "escapes the repository with '..'"),
        ("a/../../x", "escapes the repository"),
        ("a/..", "escapes the repository"),
        ("/etc/passwd", "is absolute"),
        ("C:\\Windows\\x", "backslash"),
        ("C:/Windows/x", "Windows absolute path"),
        ("c:x", "Windows absolute path"),
        ("a\\b", "contains a backslash; use '/'"),
        ("a\x00b", "contains a NUL byte"),
        ("a\nb", "contains a control character"),
        ("a\tb", "control character"),
        ("a\x1bb", "control character"),
        ("a\x7fb", "control character"),
        ("x" * 256, r"is too long \(max 255 bytes a name\)"),
        ("é" * 128, "is too long"),
        ("/".join(["abcdefgh"] * 500), "is too long"),
        ("", "empty path"),
        (".", "empty path"),
        ("/", "empty path"),
    ],
)
def test_invalid_paths_are_refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        normalize_path(raw)


def test_longest_allowed_name_is_accepted() -> None:
    assert normalize_path("x" * 255) == "x" * 255


@pytest.mark.parametrize("root", ["", ".", "/", "./"])
def test_root_only_where_allowed(root: str) -> None:
    assert normalize_path(root, allow_root=True) == ""


def test_non_string_path_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="path must be a string, not int"):
        normalize_path(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sales", "v1.2", "a_b-c", "0", "x" * 100])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "a..b", "a.", "a/b", "a b", "x" * 101, "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid branch name .*use 1-100 letters"):
        check_name(name, "branch name")


def test_make_folder_inside_creates_nested_folders(tmp_path: Path) -> None:
    assert make_folder_inside(tmp_path, "a/b/c") == tmp_path / "a" / "b" / "c"
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert make_folder_inside(tmp_path, "") == tmp_path


def test_make_folder_inside_refuses_symlinks_and_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(InvalidArgument, match="link is a symlink; remove it before writing"):
        make_folder_inside(root, "link/x")
    (root / "real").mkdir()
    os.symlink(outside, root / "real" / "inner")
    with pytest.raises(InvalidArgument, match="inner is a symlink"):
        make_folder_inside(root, "real/inner")
    with pytest.raises(InvalidArgument, match="escapes"):
        make_folder_inside(root, "../outside")
    assert list(outside.iterdir()) == []
