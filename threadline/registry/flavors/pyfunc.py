"""Models written as Python code: a class or function in a file stored with the model.

The code is data until someone who trusts it loads it with `allow_code=True`; only then is the
stored file imported. The entry point is a function (it becomes `predict`) or a class,
instantiated without arguments, whose `load_context(folder)` is called when it has one (during
the load: the folder is temporary, so it reads what it needs then).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from threadline.errors import InvalidArgument
from threadline.registry.errors import UntrustedModel
from threadline.registry.flavors.base import (
    Flavor,
    LoadPolicy,
    ModelMeta,
    SavedFiles,
    check_file_name,
    python_version,
)

_ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FunctionModel:
    """A plain function presented as a model: `predict(data) == function(data)`."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def predict(self, data: Any) -> Any:
        """Call the function."""
        return self.function(data)


class PyfuncFlavor(Flavor):
    """Declared code: `register(name, flavor="pyfunc", code="model.py", entry="Model")`."""

    name = "pyfunc"

    def detect(self, model: Any) -> bool:
        return False  # only on request

    def format_id(self, model: Any) -> str:
        return f"pyfunc/1+python/{'.'.join(python_version().split('.')[:2])}"

    def save(self, model: Any, folder: Path, **options: Any) -> SavedFiles:
        code = options.get("code")
        entry = options.get("entry")
        if not code or not entry:
            raise InvalidArgument("a pyfunc model needs code='path/to/file.py' and entry='Name'")
        if not isinstance(entry, str) or not _ENTRY_RE.match(entry):
            raise InvalidArgument(f"entry {entry!r} must be a class or function name")
        source = Path(code)
        if source.suffix != ".py" or not source.is_file():
            raise InvalidArgument(f"code {code!r} must be an existing .py file")
        name = check_file_name(source.name)
        shutil.copyfile(source, folder / name)
        return SavedFiles([name], {"module": name, "entry": entry})

    def load(self, folder: Path, meta: ModelMeta, policy: LoadPolicy) -> Any:
        module_file = check_file_name(str(meta.options.get("module", "")))
        entry = str(meta.options.get("entry", ""))
        if module_file not in meta.files or not _ENTRY_RE.match(entry):
            raise InvalidArgument("the pyfunc model's description names no stored module and entry")
        if not policy.allow_code:
            raise UntrustedModel(
                f"this model is Python code ({module_file}:{entry}) and runs when loaded; load it "
                "only if you trust its code, with allow_code=True (--allow-code)",
                ["code"],
            )
        # a unique module name per file content: two versions never share a cached module
        digest = hashlib.sha256((folder / module_file).read_bytes()).hexdigest()[:16]
        module_name = f"threadline_pyfunc_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, folder / module_file)
        if spec is None or spec.loader is None:
            raise InvalidArgument(f"cannot import {module_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            sys.modules.pop(module_name, None)
            raise
        target = getattr(module, entry, None)
        if target is None:
            raise InvalidArgument(f"{module_file} defines no {entry!r}")
        if isinstance(target, type):
            instance = target()
            if hasattr(instance, "load_context"):
                instance.load_context(folder)
            return instance
        return FunctionModel(target)
