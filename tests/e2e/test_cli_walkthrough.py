"""The data-repo walkthrough of the README, through the real `threadline` command.

One long story on purpose: each step builds on the state the previous ones left, as it does for
a user. Every command runs in a subprocess from the user's working folder.
"""

from __future__ import annotations

import json
import random
import re
from typing import TYPE_CHECKING

import numpy as np

from threadline.storage.packs import decode_index, full_key

from .conftest import Shell

if TYPE_CHECKING:
    from pathlib import Path

HEX64 = re.compile(r"[0-9a-f]{64}")


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def _read(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _csv(rows: int) -> bytes:
    return b"day,amount\n" + b"".join(f"2024-01-{i % 28 + 1:02d},{i * 7}\n".encode() for i in range(rows))


def _commit(shell: Shell, *args: str) -> str:
    out = shell.run("data", "commit", *args).stdout
    assert HEX64.fullmatch(out.strip()), out
    assert out.count("\n") == 1
    return out.strip()


def _object_at(pack: Path, offset: int) -> str:
    """The key of the object whose stored bytes cover `offset` in `pack` (from its index)."""
    entries = decode_index(pack.with_suffix(".idx").read_bytes(), pack.name)
    inside = (entries["offset"] <= offset) & (offset < entries["offset"] + entries["stored"])
    (index,) = np.flatnonzero(inside)
    return full_key(entries["key"][index]).hex()


def test_data_repo_walkthrough(shell: Shell) -> None:
    rng = random.Random(1234)
    blob = rng.randbytes(600_000)  # several chunks, shared by both commits
    src = shell.cwd / "sales-data"
    v1 = {"sales.csv": _csv(100), "notes/readme.txt": b"daily sales\n", "blob.bin": blob}
    _write(src, v1)

    init = shell.run("init")
    assert (shell.cwd / ".threadline").is_dir()
    assert "Initialised Threadline home" in init.stderr
    assert "Created data repo sales" in shell.run("data", "create", "sales", "-d", "daily").stderr

    first = _commit(shell, "sales", str(src), "-m", "first drop")
    v2 = {**v1, "sales.csv": _csv(150), "extra.txt": b"new file\n"}
    _write(src, v2)
    second = _commit(shell, "sales", str(src), "-m", "second drop")
    assert second != first

    # log --json: newest first, chained by parents
    log = shell.json("data", "log", "sales")
    assert [c["id"] for c in log] == [second, first]
    assert log[0]["parents"] == [first]
    assert log[1]["parents"] == []
    assert [c["message"] for c in log] == ["second drop", "first drop"]
    assert log[0]["author"] == "e2e"
    assert (log[0]["file_count"], log[0]["total_bytes"]) == (4, sum(map(len, v2.values())))

    # ls --json: paths, sizes and CSV row counts
    listing = {e["path"]: e for e in shell.json("data", "ls", "sales")}
    assert sorted(listing) == sorted(v2)
    assert listing["sales.csv"]["rows"] == 150
    assert listing["sales.csv"]["size"] == len(v2["sales.csv"])
    assert listing["blob.bin"]["rows"] is None
    old = {e["path"]: e for e in shell.json("data", "ls", "sales@main~1")}
    assert old["sales.csv"]["rows"] == 100
    assert [e["path"] for e in shell.json("data", "ls", "sales@main", "notes")] == ["notes/readme.txt"]

    # cat: the exact bytes, text or binary
    assert shell.raw("data", "cat", "sales@main:sales.csv") == v2["sales.csv"]
    assert shell.raw("data", "cat", f"sales@{first[:8]}:sales.csv") == v1["sales.csv"]
    assert shell.raw("data", "cat", "sales@main:blob.bin") == blob

    # diff --json between the two commits
    diff = shell.json("data", "diff", "sales@main~1", "sales@main")
    assert (diff["added"], diff["removed"], diff["modified"]) == (1, 0, 1)
    changes = {c["path"]: c for c in diff["changes"]}
    assert changes["extra.txt"]["status"] == "added"
    assert changes["sales.csv"]["status"] == "modified"
    assert (changes["sales.csv"]["old_rows"], changes["sales.csv"]["new_rows"]) == (100, 150)

    # status: nothing changed, then one new file
    unchanged = shell.run("data", "status", "sales", str(src))
    assert "no changes" in unchanged.stderr
    assert unchanged.stdout == ""
    (src / "later.txt").write_bytes(b"not yet committed\n")
    pending = shell.json("data", "status", "sales", str(src))
    assert (pending["added"], pending["modified"], pending["removed"]) == (1, 0, 0)
    assert pending["changes"][0]["path"] == "later.txt"
    (src / "later.txt").unlink()

    # tag and branch
    shell.run("data", "tag", "sales", "v1", "sales@main~1")
    shell.run("data", "branch", "sales", "dev", "--from", "sales@v1")
    assert [c["id"] for c in shell.json("data", "log", "sales@dev")] == [first]
    (repo,) = shell.json("data", "list")
    assert repo["name"] == "sales"
    assert repo["description"] == "daily"
    assert repo["branches"] == {"main": second, "dev": first}
    assert repo["tags"] == {"v1": first}

    # checkout: a tag, and one folder of the head
    shell.run("data", "checkout", "sales@v1", "out-v1")
    assert _read(shell.cwd / "out-v1") == v1
    shell.run("data", "checkout", "sales@main:notes", "out-notes")
    assert _read(shell.cwd / "out-notes") == {"readme.txt": b"daily sales\n"}
    refused = shell.run("data", "checkout", "sales@main", "out-v1", code=2)
    assert "not empty" in refused.stderr
    assert "--force" in refused.stderr

    # rollback, its history, and undo
    moved = shell.run("data", "rollback", "sales@main", "v1")
    assert f"{second[:12]} -> {first[:12]}" in moved.stderr
    assert "threadline data rollback sales@main --undo" in moved.stderr
    assert shell.json("data", "log", "sales")[0]["id"] == first
    history = shell.json("data", "history", "sales@main")
    assert [e["action"] for e in history] == ["rollback", "commit", "commit", "create"]
    assert (history[0]["old_commit"], history[0]["new_commit"]) == (second, first)
    shell.run("data", "rollback", "sales@main", "--undo")
    assert shell.json("data", "log", "sales")[0]["id"] == second
    history = shell.json("data", "history", "sales@main")
    assert len(history) == 5
    assert (history[0]["old_commit"], history[0]["new_commit"]) == (first, second)
    assert history[0]["message"].startswith("undo rollback")

    # verify, du, lineage
    verified = shell.run("data", "verify")
    assert re.search(r"checked 2 commits, 7 files, \d+ objects .*: ok", verified.stderr)
    usage = shell.json("data", "du")
    assert usage["commits"] == 2
    assert usage["logical_bytes"] == sum(map(len, v1.values())) + sum(map(len, v2.values()))
    assert usage["unique_bytes"] < usage["logical_bytes"]  # blob.bin is stored once
    assert usage["dedup_ratio"] > 1
    assert usage["store_bytes"] >= usage["stored_bytes"] > 0
    lineage = shell.run("lineage", "sales@main", "--up")
    assert lineage.stdout == (f"data_commit:{first[:12]} -[parent_of]-> data_commit:{second[:12]}\n")
    assert shell.json("lineage", "sales@main", "--up") == [
        {"from": f"data_commit:{first}", "relation": "parent_of", "to": f"data_commit:{second}"}
    ]

    # gc: a deleted repo's data goes; the dry run shows exactly what the real run does
    scratch = shell.cwd / "scratch"
    _write(scratch, {"tmp.bin": rng.randbytes(200_000)})
    shell.run("data", "create", "scratch")
    _commit(shell, "scratch", str(scratch))
    deleted = shell.run("data", "delete", "scratch", "--yes")
    assert "threadline data gc --yes" in deleted.stderr
    packs = shell.cwd / ".threadline" / "objects" / "packs"
    before = sorted(p.name for p in packs.iterdir())
    graced = shell.json("data", "gc")
    assert graced["dry_run"] is True
    assert graced["objects_removed"] == 0
    assert graced["packs_kept_in_grace_period"] >= 1
    dry = shell.json("data", "gc", "--grace-seconds", "0")
    assert dry["objects_removed"] > 0
    assert dry["bytes_freed"] >= 200_000
    assert sorted(p.name for p in packs.iterdir()) == before  # a dry run changes nothing
    real = shell.json("data", "gc", "--yes", "--grace-seconds", "0")
    assert {**real, "dry_run": True} == dry
    assert sorted(p.name for p in packs.iterdir()) != before
    assert [r["name"] for r in shell.json("data", "list")] == ["sales"]
    assert shell.json("data", "verify")["ok"] is True
    shell.run("data", "checkout", "sales@main", "out-after-gc")
    assert _read(shell.cwd / "out-after-gc") == v2

    # a flipped byte in a pack: verify fails and names the object; reads refuse wrong bytes
    pack = max(packs.glob("*.pack"), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    offset = len(data) // 2
    data[offset] ^= 0x01
    pack.write_bytes(bytes(data))
    damaged = _object_at(pack, offset)
    failed = shell.run("data", "verify", code=6)
    assert re.search(rf"corrupt {damaged[:16]} used by sales@[0-9a-f]{{12}}:", failed.stdout)
    assert re.search(r": \d+ problems?$", failed.stderr.strip())
    report = shell.run("data", "verify", "--json", code=6)
    problems = json.loads(report.stdout)["problems"]
    assert damaged in {p["key"] for p in problems}
    assert {p["kind"] for p in problems} == {"corrupt"}
    where = next(p["used_by"] for p in problems if p["key"] == damaged)
    broken = shell.run("data", "cat", where.split(" ")[0], code=6)
    assert broken.stdout == ""
    assert f"object {damaged} is corrupt" in broken.stderr


def test_errors_are_one_line_with_the_fix(shell: Shell) -> None:
    # THREADLINE_HOME names a missing home, so no .threadline above tmp_path can interfere
    nowhere = {**shell.env, "THREADLINE_HOME": str(shell.cwd / "nowhere" / ".threadline")}
    outside = Shell(shell.cwd, nowhere).run("data", "list", code=3)
    assert outside.stderr.startswith("error: no Threadline home found")
    assert "threadline init" in outside.stderr

    shell.run("init")
    unknown = shell.run("data", "log", "nosuch", code=3)
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1, unknown.stderr
    assert lines[0].startswith("error: ")
    assert "nosuch" in lines[0]
    assert "`threadline data create nosuch`" in lines[0]
    assert unknown.stdout == ""

    verbose = shell.run("--verbose", "data", "log", "nosuch", code=3)
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "threadline.errors.NotFound" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == lines[0]

    again = shell.run("init", code=4)
    assert again.stderr.startswith("error: a Threadline home exists already")


def test_user_text_is_printed_literally(shell: Shell) -> None:
    """Messages, descriptions, paths and folders that look like terminal markup are shown as
    typed - never interpreted, never swallowed, never a crash after the work is done."""
    src = shell.cwd / "src"
    _write(src, {"a[/b]": b"tricky folder\n", "[bold]x.csv": b"h\n1\n"})
    shell.run("init")
    shell.run("data", "create", "sales", "-d", "[bold]described[/bold] [/x]")
    message = "fix [/tmp] and [bold]now[/bold]"
    commit = _commit(shell, "sales", str(src), "-m", message)
    assert "[bold]described[/bold] [/x]" in shell.run("data", "list").stdout
    assert message in shell.run("data", "log", "sales").stdout
    assert message in shell.run("data", "history", "sales@main").stdout
    (src / "[red]new").write_bytes(b"new\n")
    pending = shell.run("data", "status", "sales", str(src)).stdout
    assert "+ [red]new" in pending
    tagged = shell.run("data", "tag", "sales", "v1", "sales@main:a[/b]")
    assert "tagged sales@main:a[/b] as sales@v1" in tagged.stderr
    dest = shell.cwd / "out[/x]"
    done = shell.run("data", "checkout", f"sales@{commit}", str(dest))
    assert f"into {dest}" in done.stderr
    assert _read(dest) == {"a[/b]": b"tricky folder\n", "[bold]x.csv": b"h\n1\n"}
    missing = shell.run("data", "cat", "sales@main:[bold]gone", code=3)
    assert "no file '[bold]gone'" in missing.stderr
