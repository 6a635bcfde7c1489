"""Factory fixtures shared by every test folder: a Threadline home, data repos, file trees."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.config import ENV_AUTHOR, ENV_DATABASE_URL, ENV_HOME, ENV_STORE_URL, init_home
from threadline.data import connect
from threadline.data.handles import Repo

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from threadline.data.repos import DataRepos


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataRepos]:
    """A fresh Threadline home in `tmp_path` (also the working folder), opened as DataRepos.

    THREADLINE_HOME points at it and the engine variables are cleared, so nothing reads or
    writes a home outside the test's folder.
    """
    monkeypatch.chdir(tmp_path)
    for var in (ENV_DATABASE_URL, ENV_STORE_URL):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(ENV_AUTHOR, "tester")
    monkeypatch.setenv(ENV_HOME, str(tmp_path / ".threadline"))
    repos = connect(init_home())
    yield repos
    repos.close()


@pytest.fixture
def make_repo(home: DataRepos) -> Callable[..., Repo]:
    """`make_repo("sales")` creates a data repo in `home` and returns its handle."""

    def make(name: str, description: str = "", default_branch: str = "main") -> Repo:
        home.create(name, description, default_branch)
        return Repo(home, name)

    return make


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[[str | Path, Mapping[str, bytes]], Path]:
    """`make_tree("src", {"a.csv": b"x\\n", "d/b.bin": b"..."})` writes files, returns the folder.

    A relative folder is taken under `tmp_path`; existing files not named are left alone.
    """

    def make(path: str | Path, files: Mapping[str, bytes]) -> Path:
        root = tmp_path / path
        root.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return root

    return make
