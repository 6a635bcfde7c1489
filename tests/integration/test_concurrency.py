"""Concurrent writers fail loudly and lose nothing; gc never frees what a commit in flight needs.

Processes are lined up with a barrier made of pipes: each child stops inside
`DataRepos._publish` (its objects are stored, its branch pointer not yet moved), says
`at-barrier` on stdout and waits for `go` on stdin. The patch lives in the child only.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from threadline.data.checkout import checkout
from threadline.data.maintenance import gc
from threadline.data.verify import verify
from threadline.errors import Conflict

from .homes import CHILD_TIMEOUT, read_tree, write_tree

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from pathlib import Path

    from threadline.data.repos import DataRepos

    from .homes import Home

# argv: ref, source folder, message. Prints one JSON line: {"won": id} or the Conflict's fields
# and the id of the retry that follows it.
CHILD = r"""
import json, sys
from pathlib import Path

from threadline.config import load_settings
from threadline.data import connect
from threadline.data.repos import DataRepos
from threadline.errors import Conflict

original = DataRepos._publish


def at_barrier(self, *args, **kwargs):
    DataRepos._publish = original  # only the first attempt waits
    sys.stdout.write("at-barrier\n")
    sys.stdout.flush()
    if sys.stdin.readline() != "go\n":
        raise SystemExit("the barrier was broken")
    return original(self, *args, **kwargs)


DataRepos._publish = at_barrier
ref, source, message = sys.argv[1:4]
repos = connect(load_settings())
try:
    result = repos.commit(ref, [Path(source)], message)
except Conflict as exc:
    report = {"conflict": str(exc), "repo": exc.repo, "branch": exc.branch, "winner": exc.winner}
    retry = repos.commit(ref, [Path(source)], message + " (retry)")
    report.update(retry=retry.commit.id, retry_parents=retry.commit.parents)
    print(json.dumps(report))
else:
    print(json.dumps({"won": result.commit.id}))
"""


def _wait_at_barrier(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "at-barrier\n":
        _, err = proc.communicate(timeout=CHILD_TIMEOUT)
        pytest.fail(f"child did not reach the barrier (got {line!r}):\n{err}")


def _release(*procs: subprocess.Popen[str]) -> list[dict[str, object]]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    return reports


@pytest.mark.parametrize("first_commit", [False, True], ids=["onto-a-head", "onto-empty-branch"])
def test_two_processes_commit_to_one_branch(
    make_home: Callable[..., Home], tmp_path: Path, first_commit: bool
) -> None:
    home = make_home("conc")
    base = None
    with home.session() as repos:
        if not first_commit:
            write_tree(tmp_path / "base", 1, big=1_200_000)
            base = repos.commit("conc", [tmp_path / "base"], "base").commit.id
    sources = {"a": tmp_path / "a", "b": tmp_path / "b"}
    trees = {
        name: write_tree(folder, seed, big=1_200_000) for (name, folder), seed in zip(sources.items(), (2, 3))
    }
    procs = {
        name: home.python(CHILD, "conc@main", str(folder), f"from {name}") for name, folder in sources.items()
    }
    for proc in procs.values():  # both resolved the same head and stored their objects
        _wait_at_barrier(proc)
    reports = dict(zip(procs, _release(*procs.values())))

    winners = [name for name, r in reports.items() if "won" in r]
    losers = [name for name, r in reports.items() if "conflict" in r]
    assert len(winners) == 1, reports
    assert len(losers) == 1, reports
    won, lost = reports[winners[0]], reports[losers[0]]
    winner_id = str(won["won"])
    assert (lost["repo"], lost["branch"], lost["winner"]) == ("conc", "main", winner_id)
    assert f"branch conc@main moved to {winner_id[:12]}" in str(lost["conflict"])
    assert "retry" in str(lost["conflict"])
    assert lost["retry_parents"] == [winner_id]  # the retry builds on the winner

    with home.session() as repos:
        head = repos.resolve("conc@main").require_commit()
        assert head.id == lost["retry"]
        assert [c.id for c in repos.log("conc@main")] == [
            c for c in (head.id, winner_id, base) if c is not None
        ]
        # nothing is lost and no commit row was left behind by the failed attempt
        assert {c.id for c in repos.all_commits()} == {head.id, winner_id} | ({base} - {None})
        assert verify(repos).ok
        checkout(repos, f"conc@{winner_id}", tmp_path / "out-winner")
        checkout(repos, "conc@main", tmp_path / "out-head")
    assert read_tree(tmp_path / "out-winner") == trees[winners[0]]
    assert read_tree(tmp_path / "out-head") == trees[losers[0]]


def test_conflict_in_process_names_branch_and_winner(make_home: Callable[..., Home], tmp_path: Path) -> None:
    home = make_home("conc")
    write_tree(tmp_path / "a", 4, big=1_100_000, small=1)
    write_tree(tmp_path / "b", 5, big=1_100_000, small=1)
    winner = home.open()
    loser = home.open()
    base = winner.commit("conc", [tmp_path / "a"], "base").commit.id
    write_tree(tmp_path / "a2", 6, big=1_100_000, small=1)
    won: list[str] = []
    publish = loser._publish

    def publish_after_winner(*args: object, **kwargs: object) -> None:
        won.append(winner.commit("conc", [tmp_path / "a2"], "winner").commit.id)
        publish(*args, **kwargs)  # type: ignore[arg-type]

    loser._publish = publish_after_winner  # type: ignore[method-assign]
    with pytest.raises(Conflict, match=r"branch conc@main moved to [0-9a-f]{12} .*retry") as info:
        loser.commit("conc", [tmp_path / "b"], "loser")
    assert info.value.winner == won[0]
    assert str(info.value).startswith(f"branch conc@main moved to {won[0][:12]}")
    assert f"expected {base[:12]}" in str(info.value)
    assert loser.resolve("conc@main").require_commit().id == won[0]
    loser._publish = publish  # type: ignore[method-assign]
    retry = loser.commit("conc", [tmp_path / "b"], "loser, again").commit
    assert retry.parents == [won[0]]


def test_gc_waits_for_a_commit_in_flight(make_home: Callable[..., Home], tmp_path: Path) -> None:
    """gc with no grace period, started while a commit has stored its objects but not moved
    its branch, must not free them - nor the garbage objects that commit de-duplicated
    against."""
    home = make_home("old", "conc")
    shared = write_tree(tmp_path / "shared", 7, big=1_500_000)
    with home.session() as repos:  # X is stored, then becomes garbage when its repo goes
        repos.commit("old", [tmp_path / "shared"], "soon garbage")
        repos.delete("old")
    src = tmp_path / "src"
    write_tree(src / "fresh", 8, big=1_100_000)
    for rel, data in shared.items():
        (src / "shared" / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / "shared" / rel).write_bytes(data)
    child = home.python(CHILD, "conc@main", str(src), "in flight")
    _wait_at_barrier(child)  # objects stored, shared store lock held, branch not moved

    repos: DataRepos = home.open()
    asking = threading.Event()
    exclusive = repos.lock.exclusive

    def exclusive_and_signal():  # type: ignore[no-untyped-def]
        asking.set()
        return exclusive()

    repos.lock.exclusive = exclusive_and_signal  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(gc, repos, dry_run=False, grace_seconds=0)
        assert asking.wait(CHILD_TIMEOUT), "gc never asked for the store lock"
        assert not running.done()  # it cannot get the lock while the commit holds it
        (report,) = _release(child)
        plan = running.result(CHILD_TIMEOUT)
    assert plan.objects_removed > 0  # the rest of the deleted repo did go

    with home.session() as fresh:
        head = fresh.resolve("conc@main").require_commit()
        assert head.id == report["won"]
        result = verify(fresh)
        assert result.ok, result.problems
        checkout(fresh, "conc@main", tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(src)
