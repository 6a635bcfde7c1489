"""Integration fixtures: real homes on disk, real child processes, generated source trees.

`make_home("repo", ...)` builds a Threadline home in `tmp_path` in one line; the `Home` it
returns opens the data layer in this process (closed at teardown), runs the CLI, and starts
Python children whose environment - never this process's - points `THREADLINE_HOME` at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.config import init_home

from .homes import Home

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def make_home(tmp_path: Path) -> Iterator[Callable[..., Home]]:
    """`make_home(*repos)`: a new home with the given (empty) data repos created."""
    homes: list[Home] = []

    def make(*repo_names: str, name: str = "home") -> Home:
        root = tmp_path / name
        root.mkdir()
        init_home(root)
        home = Home(root)
        homes.append(home)
        with home.session() as repos:
            for repo in repo_names:
                repos.create(repo)
        return home

    yield make
    for home in homes:
        home.close()
