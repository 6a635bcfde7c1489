"""Step code as it is on disk now, in a process that lives across runs.

A step's cache key hashes the source files of its project modules as they are on disk when a
run is planned (`codehash.py`). A process that imported those modules earlier - a kept worker
of `pipeline watch`, the watching driver itself, a notebook - would still run the code it
imported, so an edited step would re-run, run the old code, and record that output under
the new code's hash; every later run would then reuse it.

So this process remembers the file stamp (modification time and size) each project module had
when it was first seen imported, and before a step is loaded `forget_changed` compares them
with the files. If any module of the step's project changed, every module of that project is
dropped from `sys.modules` - all of them, since the unchanged ones hold references into the
changed ones - and the next import reads the files again, as a new process would.
Installed packages are left alone: the environment fingerprint covers them.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import sysconfig
from typing import TYPE_CHECKING

from threadline.pipelines.codehash import file_stamp, project_root

if TYPE_CHECKING:
    from pathlib import Path

#: module name -> (file, mtime_ns, size) when this process first saw it imported
_STAMPS: dict[str, tuple[str, int, int]] = {}
#: module name -> the module object last looked at, project module or not
_SEEN: dict[str, object] = {}


@functools.cache
def _installed() -> tuple[str, ...]:
    """Folder prefixes of the interpreter's standard library and packages, as given and resolved."""
    paths = sysconfig.get_paths()
    given = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    given |= {sys.prefix, sys.base_prefix}
    return tuple({os.path.join(p, "") for p in given}
                 | {os.path.join(os.path.realpath(p), "") for p in given})


def remember_imports() -> None:
    """Stamp the project modules imported (or imported again) since the last call."""
    if sys.modules == _SEEN:  # the same names, each the same module object: nothing new
        return
    installed = _installed()
    for name, module in list(sys.modules.items()):
        if _SEEN.get(name) is module:
            continue
        _SEEN[name] = module
        _STAMPS.pop(name, None)
        if name == "__main__" or name.partition(".")[0] == "threadline":
            continue  # never imported twice: its classes must stay the ones everything holds
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py") or path.startswith(installed):
            continue
        real = os.path.realpath(path)
        stamp = file_stamp(real)
        if stamp is not None and not real.startswith(installed):
            _STAMPS[name] = (real, *stamp)
    if len(_SEEN) > len(sys.modules):  # some were removed from sys.modules meanwhile: forgotten,
        # _SEEN holds exactly what sys.modules holds (the check on entry)
        for name in [n for n in _SEEN if n not in sys.modules]:
            del _SEEN[name]
            _STAMPS.pop(name, None)


def forget_changed(module_name: str) -> list[str]:
    """Drop the modules of `module_name`'s project from `sys.modules` if any of their files
    changed since they were imported; returns the names dropped (none if nothing changed)."""
    root = project_root(module_name)
    if root is None:
        return []
    remember_imports()
    mine = _under(root)
    if all(file_stamp(path) == (mtime, size) for path, mtime, size in mine.values()):
        return []
    for name in mine:
        sys.modules.pop(name, None)
        del _STAMPS[name]
        del _SEEN[name]
    importlib.invalidate_caches()
    return sorted(mine)


def _under(root: Path) -> dict[str, tuple[str, int, int]]:
    prefix = os.path.join(str(root), "")
    return {name: stamp for name, stamp in _STAMPS.items() if stamp[0].startswith(prefix)}
