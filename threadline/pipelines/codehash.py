"""The code part of a step's cache key: what the step runs, and nothing more.

A Python step's hash covers its function's source, the source of the functions and classes of
its own module that it names (transitively), the values of simple constants it names, and the
whole source of every *project* module it reaches - the module of each global it names (a
module, or a function or class imported from one), plus what that module imports, found by
walking each file's AST, transitively. A project module is one whose file
lies under the project root (the `sys.path` folder holding the step's top-level package) and
not inside the interpreter's installation; installed packages are covered by the environment
fingerprint instead (`envhash.py`), so the venv is never hashed file by file.

Editing a helper the step calls in another project module changes the hash; editing an
unrelated module, or an unrelated function in the step's own module, does not.

A command step's hash is the command template plus the content hash of every argument that
names an existing file relative to the pipeline file's folder (`python scripts/clean.py` covers
`scripts/clean.py`). Built-in steps hash the source of the preparation modules they run.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
import textwrap
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import blake3

if TYPE_CHECKING:
    from collections.abc import Callable

_SIMPLE = (str, int, float, bool, bytes, type(None))


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    """Where this interpreter's standard library and packages live (fixed for the process;
    asked for every step of every run, which cost a `sysconfig` expansion and six resolves)."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(Path(sys.prefix).resolve())
    roots.add(Path(sys.base_prefix).resolve())
    return tuple(roots)


def project_root(module_name: str) -> Path | None:
    """The `sys.path` folder that holds the top-level package of `module_name`."""
    try:
        spec = importlib.util.find_spec(module_name.partition(".")[0])
    except (ImportError, ValueError):  # e.g. __main__ of an interactive session
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    return _root_of(spec.origin)


@functools.lru_cache(maxsize=256)
def _root_of(origin: str) -> Path | None:
    """The project folder of a top-level module's file (asked before every plan and job)."""
    path = Path(origin).resolve()
    top = path.parent.parent if path.name == "__init__.py" else path.parent
    return None if _is_installed(top) else top


def _is_installed(path: Path) -> bool:
    return any(path == root or root in path.parents for root in _installed_roots())


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _imports(path: Path, module_name: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_bytes(), str(path))
    package = module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from pkg import mod` may name a submodule
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def module_closure(module_name: str, root: Path) -> dict[str, str]:
    """{module: content hash} of `module_name` and every project module it imports, transitively."""
    out: dict[str, str] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = _module_file(name)
        if path is None or root not in path.parents or _is_installed(path):
            continue
        out[name] = blake3.blake3(path.read_bytes()).hexdigest()
        todo.extend(_imports(path, name) - out.keys())
    return out


def _names(source: str) -> set[str]:
    tree = ast.parse(textwrap.dedent(source))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


#: a function's hash, with the files it was read from (stamped) and the globals it named:
#: a watching driver plans every step on every run, and most runs change no code. The checks
#: hold the function's globals, so an entry keeps its function alive after a re-import
#: replaced it; the size bound limits what edits leave behind.
_HASHES: dict[Callable[..., Any], tuple[str, list[_Check]]] = {}
_HASHES_MAX = 1024


class _Check(NamedTuple):
    """Something a cached hash depends on: a file's (mtime_ns, size), or a global's value."""

    where: str | dict[str, Any]  # a file path, or the globals of a function
    name: str
    value: Any  # the stamp; the value's repr (simple constants); or the value itself


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, None if it cannot be read: what must stay equal for code
    read from it earlier to still be what is on disk."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _holds(check: _Check) -> bool:
    if isinstance(check.where, str):
        return bool(file_stamp(check.where) == check.value)
    value = check.where.get(check.name)
    return bool(value is check.value or (_is_simple(value) and repr(value) == check.value))


def _is_simple(value: Any) -> bool:
    return isinstance(value, _SIMPLE) or (isinstance(value, tuple)
                                          and all(isinstance(v, _SIMPLE) for v in value))


def function_hash(fn: Callable[..., Any]) -> str:
    """The code hash of a Python step function (see the module docstring).

    Remembered per function while the files it was read from and the globals it names are
    unchanged.
    """
    cached = _HASHES.get(fn)
    if cached is not None and all(map(_holds, cached[1])):
        return cached[0]
    checks: list[_Check] = []
    value = _function_hash(fn, checks)
    if len(_HASHES) >= _HASHES_MAX:
        _HASHES.clear()
    _HASHES[fn] = (value, checks)
    return value


def _stamp(path: str | Path | None, checks: list[_Check]) -> None:
    stamp = file_stamp(path) if path is not None else None
    if stamp is not None:
        checks.append(_Check(str(path), "", stamp))


def _function_hash(fn: Callable[..., Any], checks: list[_Check]) -> str:
    root = project_root(fn.__module__)
    parts: dict[str, str] = {}
    modules: dict[str, str] = {}
    todo: list[Callable[..., Any]] = [fn]
    while todo:
        current = todo.pop()
        key = f"{current.__module__}:{current.__qualname__}"
        if key in parts:
            continue
        try:
            _stamp(inspect.getsourcefile(current), checks)
            source = inspect.getsource(current)
        except (OSError, TypeError):
            source = repr(current)
        parts[key] = source
        names = getattr(current, "__globals__", {})
        for name in sorted(_names(source)):
            value = names.get(name)
            if _is_simple(value):
                parts[f"{key}#{name}"] = repr(value)
                checks.append(_Check(names, name, repr(value)))
                continue
            checks.append(_Check(names, name, value))
            if isinstance(value, types.ModuleType):
                if root is not None:
                    modules.update(module_closure(value.__name__, root))
            elif callable(value) and hasattr(value, "__module__"):
                target = getattr(value, "fn", value)  # a @step wrapper: hash the function
                if getattr(target, "__module__", None) == fn.__module__ and (
                        inspect.isfunction(target) or inspect.isclass(target)):
                    todo.append(target)
                elif root is not None and getattr(target, "__module__", None):
                    modules.update(module_closure(target.__module__, root))
    modules.pop(fn.__module__, None)  # its own module counts function by function
    for name in modules:
        _stamp(_module_file(name), checks)
    return _digest({"functions": parts, "modules": modules})


def command_hash(argv: tuple[str, ...], base: Path) -> str:
    """The code hash of a command: the template plus the files its arguments name."""
    files: dict[str, str] = {}
    for arg in argv:
        if "{" in arg or len(arg) > 4096:
            continue
        path = (base / arg).resolve()
        try:
            if path.is_file():
                files[arg] = blake3.blake3(path.read_bytes()).hexdigest()
        except OSError:  # a name too long, a permission error: not a file we can hash
            continue
    return _digest({"argv": list(argv), "files": files})


def builtin_hash(op: str) -> str:
    """The code hash of a built-in step: the source of the package it runs (prep, or train)."""
    name = "train" if op == "train" else "prep"
    package = Path(__file__).resolve().parent.parent / name
    sources = {p.name: blake3.blake3(p.read_bytes()).hexdigest() for p in sorted(package.glob("*.py"))}
    return _digest({"builtin": op, name: sources})


def _digest(value: Any) -> str:
    return blake3.blake3(json.dumps(value, sort_keys=True).encode()).hexdigest()
