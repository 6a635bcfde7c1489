"""DataRepos: repos, commits, history, refs, rollback, checkout, status, lineage, conflicts."""

from __future__ import annotations

import os
import random
import re
from typing import TYPE_CHECKING

import pytest

from threadline.config import load_settings
from threadline.data import connect
from threadline.data.checkout import checkout
from threadline.data.model import CommitInfo
from threadline.data.repos import DataRepos, commit_node
from threadline.data.status import status
from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.lineage import LineageGraph, Node
from threadline.meta.models import CommitRow
from threadline.storage.cas import hash_bytes
from threadline.storage.packs import PACK_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.handles import Repo

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]
    MakeRepo = Callable[..., Repo]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pack_listing(repos: DataRepos) -> list[tuple[str, int]]:
    return [(i.key, i.size) for i in repos.content.objects.list(PACK_PREFIX)]


# ------------------------------------------------------------------------------------ repos
def test_create_list_get_delete(home: DataRepos) -> None:
    info = home.create("sales", "daily sales")
    assert (info.name, info.description, info.default_branch) == ("sales", "daily sales", "main")
    assert info.branches == {"main": None}
    assert info.tags == {}
    home.create("alpha", default_branch="trunk")
    assert [r.name for r in home.list()] == ["alpha", "sales"]
    assert home.get("alpha").branches == {"trunk": None}
    with pytest.raises(AlreadyExists, match="data repo 'sales' exists already"):
        home.create("sales")
    home.delete("sales")
    assert [r.name for r in home.list()] == ["alpha"]
    with pytest.raises(
        NotFound,
        match=r"data repo 'sales' does not exist; create it with "
        r"`threadline data create sales`",
    ):
        home.get("sales")
    with pytest.raises(NotFound, match="does not exist"):
        home.delete("sales")


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "a..b", "x" * 101])
def test_invalid_repo_names_are_refused(home: DataRepos, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid repo name"):
        home.create(name)
    assert home.list() == []


def test_recreated_repo_starts_empty(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    home.commit("r", [make_tree("src", {"a": b"1"})], "one")
    home.delete("r")
    home.create("r")
    assert home.log("r") == []
    assert home.get("r").branches == {"main": None}


# ----------------------------------------------------------------------- commit and history
def test_commit_log_ls(make_repo: MakeRepo, make_tree: MakeTree, home: DataRepos) -> None:
    repo = make_repo("sales")
    src = make_tree("src", {"a.csv": b"id,v\n1,x\n2,y\n", "sub/b.bin": b"\x00\x01", "e": b""})
    result = home.commit("sales", [src], "first", metadata={"source": "crm", "n": 2})
    assert result.created
    assert result.branch == "main"
    first = result.commit
    assert (first.file_count, first.total_bytes) == (3, 13 + 2)
    assert first.parents == []
    assert first.message == "first"
    assert first.author == "tester"
    assert first.metadata == {"source": "crm", "n": 2}
    assert re.fullmatch(r"[0-9a-f]{64}", first.id)

    entries = {e.path: e for e in repo.ls()}
    assert sorted(entries) == ["a.csv", "e", "sub/b.bin"]
    assert entries["a.csv"].rows == 2
    assert entries["sub/b.bin"].rows is None
    assert entries["e"].size == 0
    assert [e.path for e in repo.ls(path="sub")] == ["sub/b.bin"]
    assert [e.path for e in repo.ls(path="a.csv")] == ["a.csv"]

    (src / "a.csv").write_bytes(b"id,v\n1,x\n")
    second = home.commit("sales@main", [src], "second").commit
    assert second.parents == [first.id]
    assert [c.id for c in home.log("sales")] == [second.id, first.id]
    assert [c.id for c in home.log("sales", limit=1)] == [second.id]
    assert [c.id for c in repo.log(first.short_id)] == [first.id]
    assert home.resolve("sales@main~1").commit == first
    assert repo.ls("main~1", "a.csv")[0].rows == 2


def test_ls_of_empty_branch_is_empty(make_repo: MakeRepo) -> None:
    repo = make_repo("r")
    assert repo.ls() == []
    assert repo.log() == []


def test_commit_with_no_change_returns_created_false(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("src", {"a": b"1", "b": b"2"})
    first = home.commit("r", [src], "one")
    listing = _pack_listing(home)
    again = home.commit("r", [src], "same again")
    assert not again.created
    assert again.commit == first.commit
    assert _pack_listing(home) == listing
    forced = home.commit("r", [src], "empty on purpose", allow_empty=True)
    assert forced.created
    assert forced.commit.parents == [first.commit.id]
    assert forced.commit.manifest == first.commit.manifest


def test_commit_snapshot_replaces_tree_update_keeps_other_files(
    make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree
) -> None:
    repo = make_repo("r")
    home.commit("r", [make_tree("v1", {"a": b"1", "b": b"2", "d/c": b"3"})], "one")
    home.commit("r", [make_tree("v2", {"b": b"22"})], "snapshot")
    assert {e.path: e.size for e in repo.ls()} == {"b": 2}
    home.commit("r", [make_tree("v3", {"a": b"111", "d/c": b"3"})], "restore", update=False)
    home.commit("r", [make_tree("v4", {"d/new": b"n"})], "add", update=True)
    assert {e.path: e.size for e in repo.ls()} == {"a": 3, "d/c": 1, "d/new": 1}
    home.commit("r", [make_tree("v5", {"a": b"aaaa"})], "replace", update=True, prefix="")
    assert {e.path: e.size for e in repo.ls()} == {"a": 4, "d/c": 1, "d/new": 1}
    # drop: leave files and whole folders of the parent out, then add (a folder may come back)
    home.commit("r", [make_tree("v6", {"d/c2": b"22"})], "redo d", update=True, drop=["d", "a"])
    assert {e.path: e.size for e in repo.ls()} == {"d/c2": 2}
    with pytest.raises(InvalidArgument, match="needs update=True"):
        home.commit("r", [make_tree("v7", {"x": b"x"})], "snapshot", drop=["d"])
    with pytest.raises(InvalidArgument, match="escapes"):
        home.commit("r", [make_tree("v8", {"x": b"x"})], "bad", update=True, drop=["../d"])
    assert {e.path: e.size for e in repo.ls()} == {"d/c2": 2}


def test_commit_prefix_and_single_files(make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree) -> None:
    repo = make_repo("r")
    src = make_tree("src", {"x.csv": b"h\n1\n", "y.txt": b"y"})
    home.commit("r", [src / "x.csv", src / "y.txt"], "files", prefix="raw/2024")
    assert [e.path for e in repo.ls()] == ["raw/2024/x.csv", "raw/2024/y.txt"]


def test_commit_refusals(home: DataRepos, make_tree: MakeTree, tmp_path: Path) -> None:
    home.create("r")
    src = make_tree("src", {"a": b"1"})
    home.commit("r", [src], "one")
    home.tag("r", "v1", "r")
    with pytest.raises(InvalidArgument, match="r@v1 is not a branch; commit onto a branch"):
        home.commit("r@v1", [src], "x")
    with pytest.raises(InvalidArgument, match="commit onto a branch"):
        home.commit("r@main~1", [src], "x")
    with pytest.raises(InvalidArgument, match="commit onto a branch"):
        home.commit("r:sub", [src], "x")
    with pytest.raises(InvalidArgument, match="metadata must be JSON-serialisable"):
        home.commit("r", [src], "x", metadata={"when": object()})
    with pytest.raises(NotFound, match="does not exist; check the path"):
        home.commit("r", [tmp_path / "missing"], "x")
    with pytest.raises(NotFound, match="data repo 'nope' does not exist"):
        home.commit("nope", [src], "x")
    os.symlink(src / "a", src / "link")
    with pytest.raises(InvalidArgument, match="link is a symlink"):
        home.commit("r", [src], "x")
    with pytest.raises(InvalidArgument, match=r"two sources map to 'a'"):
        home.commit("r", [src / "a", make_tree("other", {"a": b"2"}) / "a"], "x")
    assert len(home.log("r")) == 1


def test_commit_skips_home_and_git_folders(make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree) -> None:
    repo = make_repo("r")
    src = make_tree("src", {"a": b"1", ".git/HEAD": b"ref", ".threadline/x": b"x", ".env": b"e"})
    home.commit("r", [src], "one")
    assert [e.path for e in repo.ls()] == [".env", "a"]


def test_executable_bit_is_recorded_and_restored(
    make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    repo = make_repo("r")
    src = make_tree("src", {"run.sh": b"#!/bin/sh\n", "data": b"d"})
    os.chmod(src / "run.sh", 0o755)
    home.commit("r", [src], "one")
    assert {e.path: e.executable for e in repo.ls()} == {"data": False, "run.sh": True}
    out = repo.checkout(tmp_path / "out")
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(out / "data").st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------ diff
def test_diff_added_removed_modified_with_row_counts(
    make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree
) -> None:
    repo = make_repo("r")
    home.commit(
        "r",
        [
            make_tree(
                "v1",
                {
                    "a.csv": b"id\n1\n2\n3\n",
                    "b.txt": b"bye",
                    "same.csv": b"h\n1\n",
                    "t.tsv": b"h\n1",
                },
            )
        ],
        "one",
    )
    home.commit(
        "r",
        [
            make_tree(
                "v2",
                {
                    "a.csv": b"id\n1\n2\n3\n4\n5",
                    "c.csv": b"h\n1\n",
                    "same.csv": b"h\n1\n",
                    "t.tsv": b"h\n2",
                },
            )
        ],
        "two",
    )
    diff = repo.diff("main~1", "main")
    assert [(c.path, c.status) for c in diff.changes] == [
        ("a.csv", "modified"),
        ("b.txt", "removed"),
        ("c.csv", "added"),
        ("t.tsv", "modified"),
    ]
    summary = diff.to_dict()
    assert (summary["added"], summary["removed"], summary["modified"]) == (1, 1, 2)
    by_path = {c["path"]: c for c in summary["changes"]}
    assert by_path["a.csv"] == {
        "path": "a.csv",
        "status": "modified",
        "old_size": 9,
        "new_size": 12,
        "old_rows": 3,
        "new_rows": 5,
    }
    assert by_path["b.txt"]["old_rows"] is None
    assert by_path["b.txt"]["new_size"] is None
    assert by_path["c.csv"]["new_rows"] == 1
    assert (by_path["t.tsv"]["old_rows"], by_path["t.tsv"]["new_rows"]) == (1, 1)
    assert not repo.diff("main", "main")
    assert [c.path for c in repo.diff("main~1", "main", path="a.csv").changes] == ["a.csv"]
    reverse = repo.diff("main", "main~1")
    assert [(c.path, c.status) for c in reverse.changes][:3] == [
        ("a.csv", "modified"),
        ("b.txt", "added"),
        ("c.csv", "removed"),
    ]


# --------------------------------------------------------------------- branches, tags, refs
def test_branch_and_tag(make_repo: MakeRepo, home: DataRepos, make_tree: MakeTree) -> None:
    repo = make_repo("r")
    src = make_tree("src", {"a": b"1"})
    c1 = home.commit("r", [src], "one").commit
    info = home.branch("r", "dev")
    assert info.branches == {"main": c1.id, "dev": c1.id}
    (src / "a").write_bytes(b"2")
    c2 = home.commit("r@dev", [src], "on dev").commit
    assert home.resolve("r@main").commit == c1
    assert home.resolve("r@dev").commit == c2
    assert home.resolve("r@dev").branch == "dev"

    home.tag("r", "v1", "r@dev~1")
    assert home.get("r").tags == {"v1": c1.id}
    resolved = home.resolve("r@v1")
    assert resolved.commit == c1
    assert resolved.branch is None
    with pytest.raises(AlreadyExists, match="r already has a tag named 'v1'"):
        home.tag("r", "v1", "r@dev")
    with pytest.raises(AlreadyExists, match="r already has a branch named 'dev'"):
        home.branch("r", "dev")
    home.branch("r", "from-tag", "r@v1")
    assert home.resolve("r@from-tag").commit == c1
    with pytest.raises(InvalidArgument, match="invalid branch name"):
        home.branch("r", "bad name")
    with pytest.raises(InvalidArgument, match="invalid tag name"):
        home.tag("r", "-t", "r")
    repo.branch("dev2", "dev")
    repo.tag("v2", "dev2")
    assert home.get("r").tags["v2"] == c2.id


def test_branch_name_cannot_shadow_a_tag(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    c1 = home.commit("r", [make_tree("s", {"a": b"1"})], "one").commit
    home.tag("r", "v1", "r")
    with pytest.raises(AlreadyExists, match="r already has a tag named 'v1'"):
        home.branch("r", "v1")
    home.branch("r", "dev")
    with pytest.raises(AlreadyExists, match="r already has a branch named 'dev'"):
        home.tag("r", "dev", "r")
    assert home.resolve("r@v1").commit == c1


def test_database_refuses_a_branch_and_tag_of_one_name_even_past_the_check(
    home: DataRepos, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes can both pass the name check before either inserts; the unique index of
    # migration 0002 must still refuse the second. The race is simulated by skipping the check.
    home.create("r")
    home.commit("r", [make_tree("src", {"a": b"1"})], "one")
    home.tag("r", "v1", "r@main")
    monkeypatch.setattr(DataRepos, "_refuse_taken_name", lambda *_args: None)
    with pytest.raises(AlreadyExists, match="r already has a branch or tag named 'v1'"):
        home.branch("r", "v1")
    assert home.resolve("r@v1").branch is None  # still the tag


def test_tag_of_empty_branch_and_cross_repo_refs(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    home.create("other")
    with pytest.raises(
        NotFound,
        match=r"r has no commits yet; commit data with "
        r"`threadline data commit r PATH`",
    ):
        home.tag("r", "v0", "r")
    home.branch("r", "empty")
    assert home.get("r").branches == {"main": None, "empty": None}
    home.commit("other", [make_tree("s", {"a": b"1"})], "one")
    with pytest.raises(InvalidArgument, match="in another repo"):
        home.tag("r", "t", "other")
    with pytest.raises(InvalidArgument, match="in another repo"):
        home.branch("r", "b", "other")


def test_resolve_by_commit_prefix(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    c1 = home.commit("r", [make_tree("s", {"a": b"1"})], "one").commit
    assert home.resolve(f"r@{c1.id[:4]}").commit == c1
    assert home.resolve(f"r@{c1.id[:12].upper()}").commit == c1
    assert home.resolve(f"r@{c1.id}").commit == c1
    assert home.resolve(f"r@{c1.id[:8]}").branch is None
    unknown = "0000ffff" if not c1.id.startswith("0000ffff") else "1111eeee"
    with pytest.raises(NotFound, match=f"no branch, tag or commit '{unknown}' in 'r'"):
        home.resolve(f"r@{unknown}")
    with pytest.raises(NotFound, match="no branch or tag named 'abc' in 'r'"):
        home.resolve("r@abc")  # too short to be a commit prefix
    with pytest.raises(NotFound, match="no branch or tag named 'feature'"):
        home.resolve("r@feature")

    # a second commit sharing the first 8 digits (rare by chance, so planted directly)
    twin = c1.id[:8] + ("0" if c1.id[8] != "0" else "1") * 56
    with home.db.session() as session, session.begin():
        row = session.get(CommitRow, c1.id)
        assert row is not None
        session.add(
            CommitRow(
                id=twin,
                repo_id=row.repo_id,
                parents=[],
                manifest=row.manifest,
                message="twin",
                author="x",
                created_at=row.created_at,
                meta={},
                file_count=1,
                total_bytes=1,
            )
        )
    with pytest.raises(InvalidArgument, match=f"commit prefix '{c1.id[:8]}' is ambiguous; give more digits"):
        home.resolve(f"r@{c1.id[:8]}")
    assert home.resolve(f"r@{c1.id[:9]}").commit == c1
    assert home.resolve(f"r@{twin[:9]}").commit.message == "twin"  # type: ignore[union-attr]


def test_commit_prefix_of_another_repo_is_not_found(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("a")
    home.create("b")
    c = home.commit("a", [make_tree("s", {"x": b"1"})], "one").commit
    with pytest.raises(NotFound, match=f"no branch, tag or commit '{c.id[:10]}' in 'b'"):
        home.resolve(f"b@{c.id[:10]}")


def test_going_back_beyond_history_errors(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("s", {"a": b"1"})
    c1 = home.commit("r", [src], "one").commit
    (src / "a").write_bytes(b"2")
    home.commit("r", [src], "two")
    assert home.resolve("r@main~1").commit == c1
    assert home.resolve("r@main~1").branch is None
    with pytest.raises(NotFound, match=r"r@main~2 goes back 2 commits but the history has only 1"):
        home.resolve("r@main~2")
    with pytest.raises(NotFound, match="goes back 5 commits"):
        home.resolve("r@main~5:a")
    home.create("empty")
    with pytest.raises(NotFound, match="history has only 0"):
        home.resolve("empty@main~1")


# ------------------------------------------------------------------------- rollback / undo
def test_rollback_then_undo_restores(home: DataRepos, make_tree: MakeTree, tmp_path: Path) -> None:
    home.create("r")
    src = make_tree("s", {"a": b"v1"})
    c1 = home.commit("r", [src], "one").commit
    (src / "a").write_bytes(b"v2")
    c2 = home.commit("r", [src], "two").commit

    assert home.rollback("r@main", "r@main~1") == (c2.id, c1.id)
    assert home.resolve("r").commit == c1
    assert [c.id for c in home.log("r")] == [c1.id]
    checkout(home, "r", tmp_path / "after-rollback")
    assert (tmp_path / "after-rollback" / "a").read_bytes() == b"v1"

    assert home.undo("r@main") == (c1.id, c2.id)
    assert home.resolve("r").commit == c2
    checkout(home, "r", tmp_path / "after-undo")
    assert (tmp_path / "after-undo" / "a").read_bytes() == b"v2"

    actions = [(e.action, e.old_commit, e.new_commit) for e in home.history("r")]
    assert actions == [
        ("rollback", c1.id, c2.id),
        ("rollback", c2.id, c1.id),
        ("commit", c1.id, c2.id),
        ("commit", None, c1.id),
        ("create", None, None),
    ]
    assert home.history("r")[0].message.startswith("undo rollback to ")
    assert home.undo("r") == (c2.id, c1.id)  # undoing the undo goes back again


def test_commit_after_rollback_builds_on_the_rolled_back_head(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("s", {"a": b"1"})
    c1 = home.commit("r", [src], "one").commit
    (src / "a").write_bytes(b"2")
    home.commit("r", [src], "two")
    home.rollback("r", f"r@{c1.short_id}")
    (src / "a").write_bytes(b"3")
    c3 = home.commit("r", [src], "three").commit
    assert c3.parents == [c1.id]


def test_rollback_and_undo_refusals(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    with pytest.raises(InvalidArgument, match="r has no earlier state to go back to"):
        home.undo("r")
    with pytest.raises(NotFound, match="has no commits yet"):
        home.rollback("r", "r")
    home.commit("r", [make_tree("s", {"a": b"1"})], "one")
    home.tag("r", "v1", "r")
    with pytest.raises(InvalidArgument, match="r@v1 is not a branch"):
        home.rollback("r@v1", "r")
    with pytest.raises(InvalidArgument, match="is not a branch; history is kept for branches"):
        home.history("r@v1")
    home.create("other")
    home.commit("other", [make_tree("t", {"b": b"1"})], "one")
    with pytest.raises(InvalidArgument, match="other is in another repo than r"):
        home.rollback("r", "other")


# -------------------------------------------------------------------------------- checkout
def test_checkout_gives_byte_identical_files(home: DataRepos, make_tree: MakeTree, tmp_path: Path) -> None:
    home.create("r")
    rng = random.Random(3)
    files = {
        "empty": b"",
        "one": b"1",
        "table.csv": b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(20_000)),
        "nested/deep/blob.bin": rng.randbytes(2 << 20),
        "nested/small": rng.randbytes(1000),
        "ünïcode name.txt": "é".encode(),
    }
    src = make_tree("src", files)
    home.commit("r", [src], "one")
    out = tmp_path / "out"
    entries = checkout(home, "r", out)
    assert sorted(e.path for e in entries) == sorted(files)
    assert _files(out) == files
    assert not list(out.rglob("*.tl-tmp"))


def test_checkout_of_a_folder_or_file_of_a_commit(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    home.create("r")
    home.commit("r", [make_tree("src", {"d/x": b"x", "d/e/y": b"y", "z": b"z"})], "one")
    checkout(home, "r:d", tmp_path / "folder")
    assert _files(tmp_path / "folder") == {"x": b"x", "e/y": b"y"}
    checkout(home, "r@main:d/e/y", tmp_path / "file")
    assert _files(tmp_path / "file") == {"y": b"y"}
    with pytest.raises(NotFound, match="r:nope: no file or folder 'nope' in commit"):
        checkout(home, "r:nope", tmp_path / "none")
    home.create("empty")
    with pytest.raises(NotFound, match="has no commits yet"):
        checkout(home, "empty", tmp_path / "empty")


def test_checkout_refuses_non_empty_folder_without_force(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    home.create("r")
    home.commit("r", [make_tree("src", {"a": b"new", "b": b"b"})], "one")
    dest = make_tree("dest", {"a": b"old", "keep": b"mine"})
    with pytest.raises(InvalidArgument, match="dest is not empty; choose an empty folder or pass --force"):
        checkout(home, "r", dest)
    assert _files(dest) == {"a": b"old", "keep": b"mine"}
    checkout(home, "r", dest, force=True)
    assert _files(dest) == {"a": b"new", "b": b"b", "keep": b"mine"}
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="exists and is not a folder"):
        checkout(home, "r", tmp_path / "file")


def test_checkout_force_refuses_symlink_targets(home: DataRepos, make_tree: MakeTree, tmp_path: Path) -> None:
    home.create("r")
    home.commit("r", [make_tree("src", {"d/a": b"data", "b": b"b"})], "one")
    outside = make_tree("outside", {"victim": b"precious"})
    dest = make_tree("dest", {})
    os.symlink(outside, dest / "d")
    with pytest.raises(InvalidArgument, match="is a symlink; remove it"):
        checkout(home, "r", dest, force=True)
    os.unlink(dest / "d")
    os.symlink(outside / "victim", dest / "b")
    with pytest.raises(InvalidArgument, match="is a symlink; remove it"):
        checkout(home, "r", dest, force=True)
    assert _files(outside) == {"victim": b"precious"}


# ---------------------------------------------------------------------------------- status
def test_status_reports_changes_without_storing_objects(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("src", {"a.csv": b"h\n1\n", "b": b"b", "c": b"c"})
    home.commit("r", [src], "one")
    assert not status(home, "r", [src])
    listing = _pack_listing(home)

    new_bytes = random.Random(1).randbytes(300_000)
    (src / "a.csv").write_bytes(b"h\n1\n2\n")
    (src / "b").unlink()
    (src / "new.bin").write_bytes(new_bytes)
    diff = status(home, "r", [src])
    assert [(c.path, c.status) for c in diff.changes] == [
        ("a.csv", "modified"),
        ("b", "removed"),
        ("new.bin", "added"),
    ]
    assert diff.changes[0].new.rows == 2  # type: ignore[union-attr]
    assert _pack_listing(home) == listing
    assert home.content.has_many([hash_bytes(b"h\n1\n2\n").hex()]) == set()
    assert len(home.log("r")) == 1

    # the later commit stores what status only looked at
    home.commit("r", [src], "two")
    assert home.content.has_many([hash_bytes(b"h\n1\n2\n").hex()]) == {hash_bytes(b"h\n1\n2\n").hex()}
    assert not status(home, "r", [src])


def test_status_against_empty_branch_lists_everything(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    diff = status(home, "r", [make_tree("src", {"a": b"1", "b/c": b"2"})])
    assert [(c.path, c.status) for c in diff.changes] == [("a", "added"), ("b/c", "added")]
    assert _pack_listing(home) == []


# ------------------------------------------------------------------------------ conflicts
def test_publish_with_stale_expected_head_is_a_conflict(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("s", {"a": b"1"})
    c1 = home.commit("r", [src], "one").commit
    (src / "a").write_bytes(b"2")
    c2 = home.commit("r", [src], "two").commit
    target = home.resolve("r")
    stale = CommitInfo("f" * 64, "r", [c1.id], c1.manifest, "late", "x", c1.created_at, {}, 1, 1)
    with pytest.raises(
        Conflict,
        match=rf"branch r@main moved to {c2.id[:12]} while this commit "
        rf"was in progress \(expected {c1.id[:12]}\)",
    ) as info:
        home._publish(target.repo, "main", c1.id, stale, None)
    assert (info.value.repo, info.value.branch, info.value.winner) == ("r", "main", c2.id)
    # all-or-nothing: neither the commit record nor the branch move happened
    assert home.resolve("r").commit == c2
    with pytest.raises(NotFound, match="no branch, tag or commit"):
        home.resolve("r@ffffffff")
    assert LineageGraph(home.db).direct(commit_node("f" * 64)) == []


def test_concurrent_commit_from_another_process_loses_with_conflict(
    home: DataRepos, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.create("r")
    base = home.commit("r", [make_tree("s", {"a": b"base"})], "base").commit
    other = connect(load_settings())
    try:
        publish = DataRepos._publish
        winner: list[str] = []

        def racing_publish(self: DataRepos, *args: object, **kwargs: object) -> None:
            if not winner:  # the other writer moves the branch between resolve and publish
                monkeypatch.setattr(DataRepos, "_publish", publish)
                winner.append(other.commit("r", [make_tree("w", {"a": b"winner"})], "w").commit.id)
            publish(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(DataRepos, "_publish", racing_publish)
        with pytest.raises(
            Conflict,
            match=r"branch r@main moved to .* look at the new head and "
            r"retry",
        ) as info:
            home.commit("r", [make_tree("l", {"a": b"loser"})], "l")
        assert info.value.winner == winner[0]
        assert [c.id for c in home.log("r")] == [winner[0], base.id]
        # retrying after the conflict builds on the winner
        retry = home.commit("r", [make_tree("l", {"a": b"loser"})], "l").commit
        assert retry.parents == winner
    finally:
        other.close()


# -------------------------------------------------------------------------------- lineage
def test_lineage_parent_edges_and_closures(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("s", {"a": b"1"})
    run = Node("run", "run-42")
    ids = []
    for i in range(3):
        (src / "a").write_bytes(b"%d" % i)
        produced_by = run if i == 1 else None
        ids.append(home.commit("r", [src], f"c{i}", produced_by=produced_by).commit.id)
    c0, c1, c2 = (commit_node(i) for i in ids)
    graph = LineageGraph(home.db)

    assert {(e.source, e.relation, e.target) for e in graph.direct(c1)} == {
        (c0, "parent_of", c1),
        (c1, "parent_of", c2),
        (run, "produced", c1),
    }
    assert graph.closure(c2, "up") == {c0, c1, run}
    assert graph.closure(c0, "down") == {c1, c2}
    assert graph.closure(run, "down") == {c1, c2}
    assert graph.closure(c0, "up") == set()
    up = graph.edges(c2, "up")
    assert up == sorted(up, key=lambda e: (e.source, e.relation, e.target))
    assert {(e.source, e.target) for e in up} == {(c0, c1), (c1, c2), (run, c1)}
    with pytest.raises(InvalidArgument, match="direction must be 'up' or 'down'"):
        graph.edges(c0, "sideways")  # type: ignore[arg-type]


def test_lineage_records_each_edge_once(home: DataRepos) -> None:
    graph = LineageGraph(home.db)
    a, b = Node("dataset", "a"), Node("run", "b")
    graph.record(a, "read_by", b, note="first")
    graph.record(a, "read_by", b, note="again")
    assert [(e.source, e.relation, e.target) for e in graph.direct(b)] == [(a, "read_by", b)]
    with pytest.raises(InvalidArgument, match="invalid lineage node"):
        graph.record(Node("", "x"), "r", b)


# ------------------------------------------------------------------------------ stat cache
def test_stat_cache_skips_unchanged_files_and_rehashes_edits(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threadline.data.worktree as worktree

    home.create("r")
    src = make_tree("src", {"a": b"aaaa", "b": b"bbbb", "new": b"n"})
    hour_ago = os.stat(src / "a").st_mtime_ns - 3600 * 10**9
    for name in ("a", "b"):  # only files older than a couple of seconds are cached
        os.utime(src / name, ns=(hour_ago, hour_ago))
    home.commit("r", [src], "one")

    read: list[str] = []
    real_store_files = worktree.store_files

    def recording(writer: object, paths: list[str], **kwargs: object) -> object:
        read.extend(os.path.basename(p) for p in paths)
        return real_store_files(writer, paths, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worktree, "store_files", recording)
    os.utime(src / "new")  # modified just now, however slowly the machine got here
    assert not home.commit("r", [src], "unchanged").created
    assert read == ["new"]  # recently modified: hashed again rather than trusted

    read.clear()
    with open(src / "a", "r+b") as fh:  # same size, same inode, new mtime
        fh.write(b"AAAA")
    os.utime(src / "new")
    result = home.commit("r", [src], "edited")
    assert result.created
    assert sorted(read) == ["a", "new"]
    checkout(home, "r", tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"AAAA"

    read.clear()  # checkout fills the cache: a status of what it wrote reads nothing
    assert not status(home, "r", [tmp_path / "out"])
    assert read == []


def test_a_commit_without_the_stat_cache_neither_reads_nor_grows_it(
    home: DataRepos, make_tree: MakeTree
) -> None:
    from threadline.data.statcache import StatCache

    home.create("r")
    scratch = make_tree("scratch", {"a": b"aaaa", "b/c": b"cc"})
    hour_ago = os.stat(scratch / "a").st_mtime_ns - 3600 * 10**9
    for name in ("a", "b/c"):  # old enough that a commit with the cache would remember them
        os.utime(scratch / name, ns=(hour_ago, hour_ago))
    paths = [str(scratch / "a"), str(scratch / "b" / "c")]
    result = home.commit("r", [scratch], "from a throwaway folder", stat_cache=False)
    assert result.commit.file_count == 2
    cache = StatCache(home.stat_cache_path)
    try:
        assert cache.lookup(paths) == {}
        home.commit("r", [scratch], "again, with the cache", allow_empty=True)
        assert set(cache.lookup(paths)) == set(paths)
    finally:
        cache.close()


def test_commit_places_entries_of_another_commit_without_reading_them(
    home: DataRepos, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    import threadline.data.worktree as worktree
    from threadline.data.manifest import FileEntry
    from threadline.data.tables import open_file
    from threadline.errors import IntegrityError

    home.create("src")
    home.create("dst")
    first = home.commit("src", [make_tree("a", {"x/1.bin": b"one" * 1000, "x/2.bin": b"two"})], "a").commit
    entries = [replace(e, path=f"kept/{e.path}") for e in home.manifest(first)]
    read: list[str] = []
    real_store_files = worktree.store_files

    def recording(writer: object, paths: list[str], **kwargs: object) -> object:
        read.extend(os.path.basename(p) for p in paths)
        return real_store_files(writer, paths, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worktree, "store_files", recording)
    result = home.commit("dst", [make_tree("b", {"kept/x/2.bin": b"TWO", "new.txt": b"n"})], "b",
                         entries=entries)
    assert sorted(read) == ["2.bin", "new.txt"]  # the entries were not read
    tree = {e.path: e for e in home.manifest(result.commit)}
    assert sorted(tree) == ["kept/x/1.bin", "kept/x/2.bin", "new.txt"]
    assert tree["kept/x/1.bin"].key == entries[0].key  # placed as is
    with open_file(home, "dst:kept/x/2.bin") as fh:
        assert fh.read() == b"TWO"  # a file of `paths` wins over an entry at its path

    bogus = FileEntry("y.bin", "ab" * 32, 3, 1)
    with pytest.raises(IntegrityError, match="not in the store"):
        home.commit("dst", [], "bogus", entries=[bogus], allow_empty=True)
    assert home.log("dst")[0].id == result.commit.id  # nothing was committed


def test_commits_keep_the_pack_count_bounded_and_every_commit_readable(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    from threadline.data.verify import verify
    from threadline.storage.repack import AUTO_PACK_LIMIT

    home.create("r")
    commits = []
    for i in range(3 * AUTO_PACK_LIMIT):  # every commit publishes a pack of its own
        src = make_tree(f"s{i}", {f"f{i}": f"content {i}".encode(), "same": b"in every commit"})
        commits.append(home.commit("r", [src], f"commit {i}", update=True).commit)
        assert len(home.content.packs.names()) <= AUTO_PACK_LIMIT + 1
    packs = {i.key for i in home.content.objects.list(PACK_PREFIX) if i.key.endswith(".pack")}
    assert len(packs) == len(home.content.packs.names()) <= AUTO_PACK_LIMIT + 1
    for i in (0, AUTO_PACK_LIMIT, len(commits) - 1):
        out = tmp_path / f"out{i}"
        checkout(home, f"r@{commits[i].id}", out)
        assert sorted(p.name for p in out.iterdir()) == sorted([*(f"f{j}" for j in range(i + 1)), "same"])
        assert (out / f"f{i}").read_bytes() == f"content {i}".encode()
    assert verify(home).ok


def test_a_long_lived_home_keeps_only_a_few_manifests_in_memory(
    home: DataRepos, make_tree: MakeTree
) -> None:
    from threadline.data.repos import MANIFESTS_KEPT

    home.create("r")
    commits = [home.commit("r", [make_tree(f"s{i}", {"f": str(i).encode()})], f"c{i}").commit
               for i in range(MANIFESTS_KEPT + 5)]
    assert len(home._manifests) == MANIFESTS_KEPT
    assert list(home._manifests) == [c.manifest for c in commits[-MANIFESTS_KEPT:]]
    assert [e.key for e in home.manifest(commits[0])] == [hash_bytes(b"0").hex()]
    assert next(reversed(home._manifests)) == commits[0].manifest  # read again: now the newest
    assert len(home._manifests) == MANIFESTS_KEPT


def test_a_commit_onto_a_branch_resolved_earlier_is_still_refused_if_it_moved(
    home: DataRepos, make_tree: MakeTree
) -> None:
    home.create("r")
    first = home.commit("r", [make_tree("a", {"a": b"1"})], "one").commit
    onto = home.resolve("r@main")
    second = home.commit("r", [make_tree("b", {"b": b"2"})], "two", update=True, onto=onto).commit
    assert second.parents == [first.id]
    assert sorted(e.path for e in home.manifest(second)) == ["a", "b"]
    with pytest.raises(Conflict, match="moved"):  # onto still names the first commit as head
        home.commit("r", [make_tree("c", {"c": b"3"})], "three", onto=onto)
    assert home.resolve("r@main").commit == second
    home.branch("r", "side")
    with pytest.raises(InvalidArgument, match="not the branch r@side"):
        home.commit("r@side", [make_tree("d", {"d": b"4"})], "four", onto=home.resolve("r@main"))


def test_exists_answers_for_repos_and_their_commits(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    home.create("other")
    commit = home.commit("r", [make_tree("a", {"a": b"1"})], "one").commit
    assert home.exists("r")
    assert not home.exists("missing")
    assert home.exists("r", commit.id)
    assert not home.exists("other", commit.id)  # the commit is in another repo
    assert not home.exists("r", commit.id[:12])  # a full id, not a prefix


def test_a_commit_stands_when_merging_small_packs_fails(
    home: DataRepos, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threadline.data.repos as repos_module
    from threadline.errors import StorageError

    home.create("r")
    faults = [NotFound("pack abc is gone"), StorageError("disk full")]  # a race; a real failure

    def failing(_store: object) -> list[str]:
        raise faults.pop(0)

    monkeypatch.setattr(repos_module, "merge_small_packs", failing)
    with caplog.at_level("DEBUG", logger="threadline.data.repos"):
        first = home.commit("r", [make_tree("a", {"a": b"1"})], "one").commit
        assert [r.levelname for r in caplog.records] == ["DEBUG"]  # another process merged first
        second = home.commit("r", [make_tree("b", {"b": b"2"})], "two").commit
    assert [r.levelname for r in caplog.records] == ["DEBUG", "WARNING"]
    assert "disk full" in caplog.records[1].getMessage()
    assert home.resolve("r@main").commit == second
    assert second.parents == [first.id]
