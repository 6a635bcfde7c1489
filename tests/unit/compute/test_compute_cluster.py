"""What a job needs on a Ray cluster of other machines: the engine check and the shipped code
(pure functions of settings, addresses and modules: no cluster is started)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from threadline.compute.cluster import CODE_EXCLUDES, check_reachable, code_runtime_env, is_this_machine
from threadline.config import Settings
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterator

SQLITE = "sqlite:////home/me/proj/.threadline/meta.db"
FILES = "file:///home/me/proj/.threadline/objects"
POSTGRES = "postgresql+psycopg://tl@db.internal/threadline"
S3 = "s3://ml-bucket/threadline"


def _settings(database_url: str, store_url: str) -> Settings:
    return Settings(Path("/home/me/proj/.threadline"), database_url, store_url, "me")


@pytest.mark.parametrize("address", [None, "127.0.0.1:6379", "localhost:6379", "ray://127.0.0.1:10001",
                                     "ray://localhost:10001", "[::1]:6379", "127.0.1.1:6379"])
def test_a_local_or_loopback_cluster_is_this_machine(address: str | None) -> None:
    assert is_this_machine(address)
    check_reachable(_settings(SQLITE, FILES), address)  # local files are reachable there


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "ray://head.internal:10001", "head:6379"])
def test_any_other_address_may_span_machines(address: str) -> None:
    assert not is_this_machine(address)


@pytest.mark.parametrize(("database_url", "store_url", "named"), [
    (SQLITE, FILES, "a SQLite database .* and a local-folder store"),
    (SQLITE, S3, r"a SQLite database \(sqlite:////home/me/proj/.threadline/meta.db\);"),
    (POSTGRES, FILES, r"a local-folder store \(file:///home/me/proj/.threadline/objects\);"),
])
def test_local_engines_are_refused_on_a_cluster_of_other_machines(database_url: str, store_url: str,
                                                                   named: str) -> None:
    fix = "set THREADLINE_DATABASE_URL to a PostgreSQL URL and THREADLINE_STORE_URL to an s3:// store"
    expected = f"cluster at '10.0.0.5:6379' may run tasks on other machines, which cannot reach {named}"
    with pytest.raises(InvalidArgument, match=f"{expected}.*{fix}.*--shared-filesystem"):
        check_reachable(_settings(database_url, store_url), "10.0.0.5:6379")


def test_shared_engines_pass_and_a_shared_filesystem_is_the_escape_hatch() -> None:
    check_reachable(_settings(POSTGRES, S3), "10.0.0.5:6379")
    check_reachable(_settings(SQLITE, FILES), "10.0.0.5:6379", shared_filesystem=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder on sys.path with a module `shipme_steps` and a package `shipme_pkg`,
    and a second folder with a package `shipme_other`."""
    root, other = tmp_path / "proj", tmp_path / "elsewhere"
    (root / "shipme_pkg").mkdir(parents=True)
    (root / "shipme_pkg" / "__init__.py").write_text("")
    (root / "shipme_steps.py").write_text("X = 1\n")
    (other / "shipme_other").mkdir(parents=True)
    (other / "shipme_other" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(other))
    importlib.invalidate_caches()
    yield root.resolve()
    for name in ("shipme_steps", "shipme_pkg", "shipme_other"):
        sys.modules.pop(name, None)


def test_the_project_folder_ships_as_working_dir_and_modules_outside_it_as_py_modules(project: Path) -> None:
    modules = ["shipme_steps:fn", "shipme_pkg.sub", "shipme_other.nets", "numpy", "threadline.x"]
    env = code_runtime_env(modules, extra={"pip": ["polars"], "excludes": ["big/"]})
    assert env == {"working_dir": str(project), "excludes": [*CODE_EXCLUDES, "big/"],
                   "py_modules": [str(project.parent / "elsewhere" / "shipme_other")], "pip": ["polars"]}
    assert ".threadline/" in CODE_EXCLUDES
    assert ".git/" in CODE_EXCLUDES


def test_installed_and_threadline_modules_ship_nothing() -> None:
    assert code_runtime_env(["numpy", "sklearn.linear_model", "threadline.train.torch_nets", "json"]) == {}
    assert code_runtime_env(["numpy"], extra={"pip": ["x"]}) == {"pip": ["x"]}
