"""A data repo against a reference model: a dict of path -> bytes per commit (hypothesis)."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import time
from typing import TYPE_CHECKING

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from threadline.data.checkout import checkout

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos

OLD_NS = (int(time.time()) - 3600) * 1_000_000_000
# no path is both a file and a folder, so every model state is a valid tree
PATHS = ["a.txt", "b.csv", "d/e.bin", "d/f/g", "h", "ünï.txt"]


def _big(args: tuple[int, int]) -> bytes:
    seed, size = args
    return random.Random(seed).randbytes(size)


CONTENT = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"id\n1\n", b"id\n1\n2"]),
    st.tuples(st.integers(0, 3), st.sampled_from([70_000, 1_100_000])).map(_big),
)


class DataRepoMachine(RuleBasedStateMachine):
    """Writes, deletes, commits and checkouts, compared with snapshots of a dict model.

    Each example gets its own repo and folder in one shared home, so an example costs a few
    commits rather than a database migration.
    """

    def __init__(self, repos: DataRepos, folder: Path) -> None:
        super().__init__()
        self.repos = repos
        self.folder = folder
        self.name = folder.name
        self.repos.create(self.name)
        self.work = folder / "work"
        self.work.mkdir(parents=True)
        self.model: dict[str, bytes] = {}
        self.commits: list[tuple[str, dict[str, bytes]]] = []
        self.checkouts = 0
        self.clock = 0

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(files=st.dictionaries(st.sampled_from(PATHS), CONTENT, min_size=2))
    def first_commit(self, files: dict[str, bytes]) -> None:
        for path, data in files.items():
            self.write(path, data)
        self.commit(update=False)

    def _age(self, target: Path) -> None:
        # Files written in the last seconds are never stat-cached (their mtime may not have
        # ticked yet). Backdating every write to a distinct past time puts the cache in play,
        # so the model also checks that a cached hash is never trusted for changed content.
        self.clock += 1
        ns = OLD_NS + self.clock * 1_000_000
        os.utime(target, ns=(ns, ns))

    @rule(path=st.sampled_from(PATHS), data=CONTENT)
    def write(self, path: str, data: bytes) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._age(target)
        self.model[path] = data

    @precondition(lambda self: any(self.model.values()))
    @rule(data=st.data(), offset=st.integers(0, 1 << 20), flip=st.integers(1, 255))
    def edit_in_place(self, data: st.DataObject, offset: int, flip: int) -> None:
        path = data.draw(st.sampled_from(sorted(p for p, v in self.model.items() if v)))
        new = bytearray(self.model[path])
        new[offset % len(new)] ^= flip  # a real change that the size cannot reveal
        with open(self.work / path, "r+b") as fh:  # same inode, same size
            fh.write(bytes(new))
        self._age(self.work / path)
        self.model[path] = bytes(new)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.model)))
        (self.work / path).unlink()
        del self.model[path]

    @rule(update=st.booleans())
    def commit(self, update: bool) -> None:
        before = self.commits[-1][1] if self.commits else None
        result = self.repos.commit(self.name, [self.work], f"commit {len(self.commits)}", update=update)
        expected = {**before, **self.model} if update and before is not None else dict(self.model)
        if before is not None and expected == before:
            assert not result.created
            assert result.commit.id == self.commits[-1][0]
        else:
            assert result.created
            self.commits.append((result.commit.id, expected))
        if update:  # the working folder holds the whole tree again, for later snapshots
            for path, data in expected.items():
                if path not in self.model:
                    self.write(path, data)

    @precondition(lambda self: bool(self.commits))
    @rule(data=st.data())
    def checkout_earlier_commit(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.commits) - 1))
        commit_id, snapshot = self.commits[index]
        dest = self.folder / f"out{self.checkouts}"
        self.checkouts += 1
        checkout(self.repos, f"{self.name}@{commit_id[:12]}", dest)
        got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        assert got == snapshot
        back = len(self.commits) - 1 - index
        resolved = self.repos.resolve(f"{self.name}@main~{back}").commit
        assert resolved is not None
        assert resolved.id == commit_id

    @invariant()
    def head_and_history_match_the_model(self) -> None:
        log = self.repos.log(self.name)
        assert [c.id for c in log] == [c for c, _ in reversed(self.commits)]
        if self.commits:
            snapshot = self.commits[-1][1]
            assert log[0].file_count == len(snapshot)
            assert log[0].total_bytes == sum(len(v) for v in snapshot.values())


def test_data_repo_against_dict_model(home: DataRepos, tmp_path: Path) -> None:
    numbers = itertools.count()
    run_state_machine_as_test(
        lambda: DataRepoMachine(home, tmp_path / f"m{next(numbers)}"),
        settings=settings(max_examples=25, stateful_step_count=12, deadline=None, database=None),
    )
