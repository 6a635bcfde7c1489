"""verify, gc and du over a real home: damage found and named, nothing live ever freed."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from threadline.config import load_settings
from threadline.data import connect
from threadline.data.checkout import checkout
from threadline.data.maintenance import du, gc
from threadline.data.verify import verify
from threadline.errors import IntegrityError, NotFound
from threadline.storage.cas import parse_key
from threadline.storage.packs import PACK_PREFIX, pack_key

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos

    MakeTree = Callable[[str | Path, Mapping[str, bytes]], Path]


def _rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _flip_stored_byte(repos: DataRepos, key: str) -> None:
    """Flip one byte in the middle of object `key`'s stored bytes, in place in its pack."""
    (loc,) = repos.content.locate([parse_key(key)])
    path = repos.content.objects.root / pack_key(loc.pack)  # type: ignore[attr-defined]
    with open(path, "r+b") as fh:
        fh.seek(loc.offset + loc.stored // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------- verify
def test_verify_of_a_healthy_store(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("src", {"a": b"1", "big": _rand(2 << 20, 1), "same": b"1"})
    c = home.commit("r", [src], "one").commit
    report = verify(home)
    assert report.ok
    assert (report.commits, report.files) == (1, 3)
    assert report.bytes >= c.total_bytes - 1  # the duplicate "same" is read once
    assert report.to_dict()["problems"] == []
    assert verify(home, "r").ok
    with pytest.raises(NotFound, match="data repo 'nope' does not exist"):
        verify(home, "nope")


def test_verify_reports_flipped_byte_naming_object_and_file(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    home.create("r")
    victim = _rand(50_000, 2)
    src = make_tree("src", {"ok.txt": b"fine", "data/victim.bin": victim})
    c = home.commit("r", [src], "one").commit
    key = home.manifest(c).files["data/victim.bin"].key
    _flip_stored_byte(home, key)

    report = verify(home)
    assert not report.ok
    (problem,) = report.problems
    assert problem.key == key
    assert problem.kind == "corrupt"
    assert problem.used_by == f"r@{c.short_id}:data/victim.bin"
    assert f"object {key} is corrupt" in problem.detail
    assert report.to_dict()["ok"] is False

    with pytest.raises(IntegrityError, match=f"object {key} is corrupt"):
        checkout(home, "r", tmp_path / "out")
    assert not (tmp_path / "out" / "data" / "victim.bin").exists()
    checkout(home, "r:ok.txt", tmp_path / "partial")
    assert _files(tmp_path / "partial") == {"ok.txt": b"fine"}


def test_verify_names_the_damaged_chunk_of_a_large_file(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    src = make_tree("src", {"big.bin": _rand(3 << 20, 3)})
    c = home.commit("r", [src], "one").commit
    entry = home.manifest(c).files["big.bin"]
    chunks = home.content.chunk_list(entry.stored)
    damaged = chunks[len(chunks) // 2][0].hex()
    _flip_stored_byte(home, damaged)
    (problem,) = verify(home).problems
    assert (problem.key, problem.kind) == (damaged, "corrupt")
    assert problem.used_by == f"r@{c.short_id}:big.bin"


def test_verify_reports_missing_objects(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    c = home.commit("r", [make_tree("src", {"a": b"x" * 1000})], "one").commit
    for info in list(home.content.objects.list(PACK_PREFIX)):
        home.content.objects.delete_many([info.key])
    home.content.refresh()
    (problem,) = verify(home).problems
    assert (problem.key, problem.kind) == (c.manifest, "missing")
    assert problem.used_by == f"r@{c.short_id} (manifest)"
    fresh = connect(load_settings())  # no manifest cached in memory: reachability is unknown
    try:
        with pytest.raises(
            IntegrityError,
            match=f"cannot read commit r@{c.short_id}: .*nothing was deleted. Run `threadline data verify`",
        ):
            gc(fresh, dry_run=False, grace_seconds=0)
    finally:
        fresh.close()


# -------------------------------------------------------------------------------------- gc
def _two_repos(home: DataRepos, make_tree: MakeTree) -> dict[str, bytes]:
    shared = _rand(700_000, 10)
    home.create("gone")
    home.create("kept")
    content = {
        "gone_only": _rand(600_000, 11),
        "kept_only": _rand(500_000, 12),
        "kept_old": _rand(400_000, 13),
        "shared": shared,
    }
    home.commit("gone", [make_tree("g", {"only.bin": content["gone_only"], "s.bin": shared})], "g")
    kept = make_tree("k", {"old.bin": content["kept_old"], "s.bin": shared})
    home.commit("kept", [kept], "k1")
    (kept / "old.bin").unlink()  # no longer at the head, still reachable from k1
    (kept / "new.bin").write_bytes(content["kept_only"])
    home.commit("kept", [kept], "k2")
    return content


def test_gc_after_deleting_a_repo_frees_its_objects_only(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    content = _two_repos(home, make_tree)
    store_before = du(home).store_bytes
    assert gc(home, dry_run=False, grace_seconds=0).to_dict()["objects_removed"] == 0

    home.delete("gone")
    listing = list(home.content.objects.list())
    dry = gc(home, grace_seconds=0)  # dry run is the default
    assert list(home.content.objects.list()) == listing
    assert dry.objects_removed >= 2  # the unique file and the manifest
    assert dry.bytes_freed >= len(content["gone_only"])

    real = gc(home, dry_run=False, grace_seconds=0)
    assert real.to_dict() == dry.to_dict()
    store_after = du(home).store_bytes
    assert store_before is not None
    assert store_after is not None
    assert store_before - store_after >= len(content["gone_only"])

    report = verify(home)
    assert report.ok, report.problems
    assert report.commits == 2
    checkout(home, "kept", tmp_path / "head")
    assert _files(tmp_path / "head") == {"new.bin": content["kept_only"], "s.bin": content["shared"]}
    checkout(home, "kept@main~1", tmp_path / "old")
    assert _files(tmp_path / "old") == {"old.bin": content["kept_old"], "s.bin": content["shared"]}
    again = gc(home, dry_run=False, grace_seconds=0)
    assert again.to_dict()["objects_removed"] == again.to_dict()["bytes_freed"] == 0


def test_gc_grace_period_keeps_recent_packs(home: DataRepos, make_tree: MakeTree) -> None:
    _two_repos(home, make_tree)
    home.delete("gone")
    listing = list(home.content.objects.list())
    plan = gc(home, dry_run=False)  # default grace: an hour
    assert plan.kept_recent >= 1
    assert plan.objects_removed == 0
    assert list(home.content.objects.list()) == listing


def test_gc_keeps_objects_of_other_branches_and_rolled_back_commits(
    home: DataRepos, make_tree: MakeTree, tmp_path: Path
) -> None:
    home.create("r")
    src = make_tree("s", {"a": _rand(100_000, 20)})
    home.commit("r", [src], "one")
    (src / "a").write_bytes(_rand(100_000, 21))
    home.commit("r", [src], "two")
    home.rollback("r", "r@main~1")  # commit "two" is only in the ref log now
    home.branch("r", "dev")
    (src / "a").write_bytes(_rand(100_000, 22))
    home.commit("r@dev", [src], "dev")
    plan = gc(home, dry_run=False, grace_seconds=0)
    assert plan.objects_removed == 0
    assert verify(home).ok
    home.undo("r")
    checkout(home, "r", tmp_path / "two")
    assert (tmp_path / "two" / "a").read_bytes() == _rand(100_000, 21)


# -------------------------------------------------------------------------------------- du
def test_du_numbers_are_consistent(home: DataRepos, make_tree: MakeTree) -> None:
    home.create("r")
    table = b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(100_000))
    noise = _rand(300_000, 30)
    src = make_tree("s", {"t.csv": table, "n.bin": noise})
    c1 = home.commit("r", [src], "one").commit
    (src / "copy.csv").write_bytes(table)
    c2 = home.commit("r", [src], "two").commit

    usage = du(home, "r")
    assert usage.scope == "r"
    assert usage.commits == 2
    assert usage.logical_bytes == c1.total_bytes + c2.total_bytes
    assert usage.logical_bytes >= c2.total_bytes == 2 * len(table) + len(noise)
    # the copy and the second commit add nothing unique
    assert len(table) + len(noise) <= usage.unique_bytes < len(table) + len(noise) + 10_000
    assert usage.stored_bytes < usage.unique_bytes  # the CSV compresses
    assert usage.stored_bytes >= len(noise)  # random bytes do not
    assert usage.dedup_ratio == pytest.approx(usage.logical_bytes / usage.unique_bytes)
    assert usage.dedup_ratio > 2.5
    assert usage.compression_ratio > 1
    assert usage.store_bytes is None

    everything = du(home)
    assert everything.scope == "(all repos)"
    assert everything.store_bytes is not None
    assert everything.store_bytes >= everything.stored_bytes
    assert everything.to_dict()["logical_bytes"] == usage.logical_bytes


def test_du_of_empty_and_unknown_repos(home: DataRepos) -> None:
    home.create("empty")
    usage = du(home, "empty")
    assert (usage.commits, usage.logical_bytes, usage.unique_bytes, usage.stored_bytes) == (0, 0, 0, 0)
    assert usage.dedup_ratio == usage.compression_ratio == 1.0
    with pytest.raises(NotFound, match="data repo 'nope' does not exist"):
        du(home, "nope")
