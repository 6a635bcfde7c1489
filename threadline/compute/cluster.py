"""What a job needs before it runs on a Ray cluster of other machines.

Two things hold on one machine and not across several:

- The code. A task names its function by module; a worker on another machine has only the
  packages installed there, not the user's project. `code_runtime_env` builds a Ray
  `runtime_env` that uploads the project folder (`working_dir`, put on the workers' cwd and
  `sys.path` by Ray) and any project module outside it (`py_modules`). Installed packages,
  Threadline included, are not shipped: the cluster must have them (or `pip` in the env).
- The engines. A job carries the home's database and store URLs; a SQLite file or a
  `file://` store on the driver's disk cannot be reached from another machine.
  `check_reachable` refuses such settings before anything is submitted, unless the caller
  says every node mounts the same filesystem.

A cluster the executor starts itself (no address), or one whose address is a loopback
address, is on this machine: a node of another machine could not join a head node that
listens on loopback only.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from threadline.config import Settings

__all__ = ["CODE_EXCLUDES", "check_reachable", "code_runtime_env", "is_this_machine"]

#: never uploaded with the project (gitignore syntax; Ray also honours the project's .gitignore):
#: the home (data and database), version control, environments, caches, and bulky data files.
#: Ray refuses a package over 512 MiB (its gRPC message limit) and warns from half that.
CODE_EXCLUDES = (
    ".threadline/", ".git/", ".venv/", "venv/", "env/", "__pycache__/", "*.pyc", ".mypy_cache/",
    ".pytest_cache/", ".ruff_cache/", ".ipynb_checkpoints/", "node_modules/", "mlruns/",
    "*.parquet", "*.npy", "*.npz", "*.pt", "*.ckpt", "*.h5", "*.zip", "*.tar.gz",
)
#: modules the cluster must have installed: shipping Threadline's own editable checkout would
#: upload it (and its tests and data) with every job
_NEVER_SHIPPED = frozenset({"threadline"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_this_machine(address: str | None) -> bool:
    """Whether a Ray address can only be a cluster on this machine.

    None (the executor starts a local cluster) and loopback hosts ("127.0.0.1:6379",
    "ray://localhost:10001") are; "auto" and every other host may have nodes elsewhere.
    """
    if address is None:
        return True
    host = urlsplit(address if "://" in address else f"//{address}").hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reachable(settings: Settings, address: str | None, *, shared_filesystem: bool = False) -> None:
    """Refuse settings that workers on other machines of the cluster at `address` cannot use.

    Args:
        settings: the home the job reads and writes.
        address: the Ray cluster's address (None: a local cluster the executor starts).
        shared_filesystem: every node mounts the home at the same path, so local files are
            reachable (the escape hatch).

    Raises:
        InvalidArgument: the database is SQLite or the store a local folder, and the cluster
            may have nodes on other machines.
    """
    if shared_filesystem or is_this_machine(address):
        return
    local = []
    if settings.database_url.startswith("sqlite"):
        local.append(f"a SQLite database ({settings.database_url})")
    if urlsplit(settings.store_url).scheme in ("", "file"):
        local.append(f"a local-folder store ({settings.store_url})")
    if local:
        raise InvalidArgument(
            f"the Ray cluster at {address!r} may run tasks on other machines, which cannot reach "
            f"{' and '.join(local)}; set THREADLINE_DATABASE_URL to a PostgreSQL URL and "
            "THREADLINE_STORE_URL to an s3:// store, or pass --shared-filesystem if every node "
            "mounts this home at the same path")


def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update((Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()))
    return tuple(roots)


def _project_source(module: str) -> Path | None:
    """The file or package folder of `module`'s top-level module, if it is project code
    (found on `sys.path`, not installed, not Threadline itself)."""
    top = module.partition(":")[0].partition(".")[0]
    if not top or top in _NEVER_SHIPPED or top in sys.builtin_module_names:
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # e.g. __main__ of an interactive session
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    source = origin.parent if origin.name == "__init__.py" else origin
    installed = _installed_roots()
    if any(source == root or root in source.parents for root in installed):
        return None
    return source


def code_runtime_env(modules: Iterable[str] = (), *, folder: Path | None = None,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Ray `runtime_env` that ships the project code `modules` import.

    Args:
        modules: the modules tasks import by name ("pkg.steps" or "pkg.steps:fn"); installed
            ones and Threadline's own are skipped.
        folder: the project folder to ship as `working_dir` (default: the folder holding the
            first project module); project modules outside it go as `py_modules`.
        extra: the user's own runtime_env (e.g. `pip`, `env_vars`), merged on top: its
            `working_dir` wins, its `excludes` and `py_modules` are added to ours.

    Returns:
        The runtime_env; `{}` when there is nothing to ship and no `extra`.
    """
    sources = list(dict.fromkeys(s for s in map(_project_source, modules) if s is not None))
    working_dir = folder.resolve() if folder is not None else (sources[0].parent if sources else None)
    env: dict[str, Any] = {}
    if working_dir is not None:
        env["working_dir"] = str(working_dir)
        env["excludes"] = list(CODE_EXCLUDES)
    outside = [str(s) for s in sources if working_dir is None or s.parent != working_dir]
    if outside:
        env["py_modules"] = outside
    for key, value in (extra or {}).items():
        if key in ("excludes", "py_modules") and key in env:
            env[key] = [*env[key], *value]
        else:
            env[key] = value
    return env
