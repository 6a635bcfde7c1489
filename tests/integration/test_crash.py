"""kill -9 of a committing process, at random times and at named checkpoints.

RELIABILITY.md promises that a commit is visible in one atomic step and that a crash loses at
most the commit in flight. Each trial starts a child that commits a few MB onto `crash@main`,
SIGKILLs it, then reopens the home in this process and checks: the store opens, the dead
writer's temp files are gone, `verify` is clean, the branch is at the old head or at a complete
new commit whose checkout is byte-identical to the source, and no other commit row exists.

Random trials print their seeds; replay a run with `TL_CRASH_SEED=<base seed>`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from threadline.data.checkout import checkout
from threadline.data.maintenance import gc
from threadline.data.verify import verify

from .homes import CHILD_TIMEOUT, read_tree, write_tree

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .homes import Home

REF = "crash@main"

# The child: commit argv[2] onto argv[1]; TL_TEST_CHECKPOINT names a point where it kills
# itself with SIGKILL (patched in the child only, the library is unchanged).
CHILD = r"""
import os, signal, sys
from pathlib import Path

from threadline.config import load_settings
from threadline.data import connect
from threadline.data.repos import DataRepos
from threadline.storage.local import LocalObjectStore
from threadline.storage.packs import PackWriter


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def kill_before(cls, name):
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        die()
        return original(*args, **kwargs)

    setattr(cls, name, wrapper)


def kill_after(cls, name):
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        die()

    setattr(cls, name, wrapper)


def kill_before_index(self, items, _original=LocalObjectStore.put_many):
    items = list(items)
    if any(key.endswith(".idx") for key, _ in items):
        die()
    return _original(self, items)


checkpoint = os.environ.get("TL_TEST_CHECKPOINT", "")
if checkpoint == "pack-unpublished":
    kill_before(PackWriter, "_publish")
elif checkpoint == "pack-without-index":
    LocalObjectStore.put_many = kill_before_index
elif checkpoint == "objects-published":
    kill_before(DataRepos, "_publish")
elif checkpoint == "commit-row-flushed":
    kill_before(DataRepos, "_move_branch")
elif checkpoint == "branch-moved-uncommitted":
    kill_after(DataRepos, "_move_branch")
elif checkpoint == "transaction-committed":
    kill_after(DataRepos, "_publish")
elif checkpoint:
    raise SystemExit("unknown checkpoint " + checkpoint)

repos = connect(load_settings())
sys.stdout.write("ready\n")
sys.stdout.flush()
result = repos.commit(sys.argv[1], [Path(sys.argv[2])], sys.argv[3])
sys.stdout.write(result.commit.id + "\n")
"""


@dataclass
class Outcome:
    """What one trial did: whether the child was killed and whether its commit landed.

    `seconds` runs from the child's `ready` to its commit id for a trial that is not killed.
    """

    pid: int
    killed: bool
    landed: bool
    seconds: float
    leftovers: list[str] = field(default_factory=list)


@dataclass
class CrashRig:
    """Runs crash trials against one home and checks the promises after each."""

    home: Home
    work: Path
    base_seed: int
    head: str | None = None
    known: set[str] = field(default_factory=set)

    def trial(self, seed: int, *, delay: float | None = None, checkpoint: str = "") -> Outcome:
        """Commit a new tree from `seed` in a child; kill it after `delay` s or at `checkpoint`."""
        src = self.work / f"src-{seed}"
        files = write_tree(src, seed, base_seed=self.base_seed)
        message = f"trial {seed}"
        proc = self.home.python(CHILD, REF, str(src), message, extra_env={"TL_TEST_CHECKPOINT": checkpoint})
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        started = time.monotonic()
        if ready != "ready\n":
            _, err = proc.communicate(timeout=CHILD_TIMEOUT)
            pytest.fail(f"seed {seed}: child failed before committing:\n{err}")
        printed = ""
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        elif not checkpoint:  # time the commit itself, without the interpreter's shutdown
            printed = proc.stdout.readline()
        seconds = time.monotonic() - started
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)  # also reaps the child
        out = printed + out
        killed = proc.returncode == -signal.SIGKILL
        assert killed or proc.returncode == 0, f"seed {seed}: child failed:\n{err}"
        leftovers = sorted(p.name for p in self.home.store_tmp.iterdir())
        landed = self.check(seed, files, message, printed=None if killed else out.strip())
        return Outcome(proc.pid, killed, landed, seconds, leftovers)

    def check(self, seed: int, files: dict[str, bytes], message: str, printed: str | None) -> bool:
        """Reopen the home and check every promise; return whether the new commit landed."""
        with self.home.session() as repos:  # opening the store removes dead writers' temp files
            leftovers = sorted(p.name for p in self.home.store_tmp.iterdir())
            assert leftovers == [], f"seed {seed}: a dead writer's temp files remain: {leftovers}"
            report = verify(repos)
            assert report.ok, f"seed {seed}: verify found {report.problems}"
            head = repos.resolve(REF).commit
            commits = {c.id for c in repos.all_commits()}
            last_move = repos.history(REF, limit=1)[0]
            if head is None or head.id == self.head:
                assert commits == self.known, f"seed {seed}: a partial commit is visible"
                assert last_move.new_commit == self.head, f"seed {seed}: the branch log moved"
                assert printed is None, f"seed {seed}: the child reported {printed} but it is lost"
                return False
            assert head.message == message, f"seed {seed}: the head is an unknown commit"
            assert head.parents == ([self.head] if self.head else [])
            assert commits == self.known | {head.id}, f"seed {seed}: extra commit rows"
            assert (last_move.old_commit, last_move.new_commit) == (self.head, head.id)
            assert printed in (None, head.id)
            assert head.file_count == len(files)
            assert head.total_bytes == sum(map(len, files.values()))
            dest = self.work / f"out-{seed}"
            checkout(repos, f"crash@{head.id}", dest)
            assert read_tree(dest) == files, f"seed {seed}: the checkout differs from the source"
        self.head = head.id
        self.known.add(head.id)
        return True


@pytest.fixture
def rig(make_home: Callable[..., Home], tmp_path: Path) -> CrashRig:
    """A home with an empty `crash` repo and a base tree seed."""
    home = make_home("crash")
    work = tmp_path / "work"
    work.mkdir()
    return CrashRig(home, work, base_seed=random.SystemRandom().randrange(1 << 30))


def _random_trials(rig: CrashRig, trials: int) -> None:
    base = int(os.environ.get("TL_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    rig.base_seed = base
    print(f"crash trials: base seed {base} (replay with TL_CRASH_SEED={base})")
    # Trial 0 is not killed: it gives the branch a head and times a full commit, so the kill
    # delays of the other trials spread over the whole commit on this machine.
    first = rig.trial(base)
    assert first.landed
    assert not first.killed
    span = first.seconds * 1.5
    print(f"  seed {base}: not killed, commit took {first.seconds:.3f}s")
    killed = landed = 0
    for i in range(1, trials + 1):
        seed = base + i
        delay = random.Random(seed).uniform(0.0, span)
        outcome = rig.trial(seed, delay=delay)
        print(f"  seed {seed}: kill after {delay:.3f}s -> killed={outcome.killed} landed={outcome.landed}")
        killed += outcome.killed
        landed += outcome.landed
    assert killed, f"base seed {base}: no trial was killed in flight; the delays are too long"
    # Garbage from the killed trials goes, everything live stays.
    with rig.home.session() as repos:
        gc(repos, dry_run=False, grace_seconds=0)
        assert verify(repos).ok
        assert repos.resolve(REF).require_commit().id == rig.head
    packs = {p.stem for p in rig.home.packs.glob("*.pack")}
    assert packs == {p.stem for p in rig.home.packs.glob("*.idx")}


@pytest.mark.timeout(120)
def test_random_kills_leave_old_or_complete_new_commit(rig: CrashRig) -> None:
    _random_trials(rig, trials=8)


@pytest.mark.stress
@pytest.mark.timeout(1200)
def test_random_kills_stress(rig: CrashRig) -> None:
    _random_trials(rig, trials=100)


@pytest.mark.parametrize(
    ("checkpoint", "lands"),
    [
        ("pack-unpublished", False),
        ("pack-without-index", False),
        ("objects-published", False),
        ("commit-row-flushed", False),
        ("branch-moved-uncommitted", False),
        ("transaction-committed", True),
    ],
)
def test_kill_at_named_checkpoint(rig: CrashRig, checkpoint: str, lands: bool) -> None:
    with rig.home.session() as repos:  # an earlier commit the branch must keep pointing at
        base_src = rig.work / "base"
        write_tree(base_src, rig.base_seed, base_seed=rig.base_seed)
        rig.head = repos.commit(REF, [base_src], "base").commit.id
        rig.known = {rig.head}
    outcome = rig.trial(rig.base_seed + 1, delay=None, checkpoint=checkpoint)
    assert outcome.killed, f"the child never reached checkpoint {checkpoint}"
    assert outcome.landed is lands
    if checkpoint == "pack-unpublished":  # it died with a half-written pack in the temp folder
        assert any(f"-{outcome.pid}-" in name for name in outcome.leftovers), outcome.leftovers
    # gc with no grace removes what the dead writer left (an orphan pack without its index,
    # a published pack no commit uses) and keeps every live object.
    with rig.home.session() as repos:
        plan = gc(repos, dry_run=False, grace_seconds=0)
        if checkpoint == "pack-without-index":
            assert len(plan.orphans) == 1
        report = verify(repos)
        assert report.ok, report.problems
        assert repos.resolve(REF).require_commit().id == rig.head
        dest = rig.work / "after-gc"
        checkout(repos, REF, dest)
    assert read_tree(dest) == read_tree(rig.work / ("src-" + str(rig.base_seed + 1) if lands else "base"))
    packs = {p.stem for p in rig.home.packs.glob("*.pack")}
    assert packs == {p.stem for p in rig.home.packs.glob("*.idx")}
