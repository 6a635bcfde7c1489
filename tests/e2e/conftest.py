"""End-to-end fixtures: a user's working folder and the real `threadline` command in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from integration.homes import cli_executable

if TYPE_CHECKING:
    from pathlib import Path

#: one CLI call must finish within this many seconds
CLI_TIMEOUT = 120


@dataclass
class Shell:
    """Runs `threadline ...` in `cwd` as a user would; the home is found from the folder."""

    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """Run the CLI; check the exit status unless `code` is None."""
        result = subprocess.run(
            [cli_executable(), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if code is not None:
            assert result.returncode == code, (
                f"threadline {' '.join(args)} exited {result.returncode}, wanted {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def raw(self, *args: str, code: int = 0) -> bytes:
        """Run the CLI and return its stdout as bytes (for `cat`)."""
        result = subprocess.run(
            [cli_executable(), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert result.returncode == code, result.stderr.decode()
        return result.stdout

    def json(self, *args: str) -> Any:
        """Run a `--json` command and parse what it printed."""
        return json.loads(self.run(*args, "--json").stdout)

    def python_json(self, script: str) -> Any:
        """Run a Python script here (set-up through the SDK) and parse the JSON it prints."""
        done = subprocess.run([sys.executable, "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    """A fresh working folder; no THREADLINE_* variable leaks in from the test's environment."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(THREADLINE_AUTHOR="e2e", COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")
    return Shell(work, env)
