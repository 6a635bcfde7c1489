"""`import threadline` stays light: no Ray, cloud SDKs, torch, web stack, dataframes or ORM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["ray", "boto3", "torch", "fastapi", "pandas", "pyarrow", "sqlalchemy"]


def _imported_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_import_threadline_is_light() -> None:
    assert _imported_after("import threadline", HEAVY) == []


def test_import_threadline_really_imports_it() -> None:
    # guards the test above against a broken subprocess that imports nothing at all
    assert _imported_after("import threadline.data", ["threadline.data", "sqlalchemy"]) == [
        "threadline.data",
        "sqlalchemy",
    ]


@pytest.mark.parametrize("statement", ["import threadline.data", "import threadline.cli.main"])
def test_data_layer_and_cli_load_no_dataframes_or_remote_stacks(statement: str) -> None:
    assert (
        _imported_after(statement, ["ray", "boto3", "torch", "fastapi", "pandas", "pyarrow", "alembic"]) == []
    )
