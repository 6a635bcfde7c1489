"""A throwaway PostgreSQL server for tests: initdb into a temp folder, listen on loopback.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
`postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_SECONDS = 60


def find_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server; `url(db)` gives a SQLAlchemy URL for a database on it."""

    bin: Path
    data: Path
    port: int
    user: str | None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True,
                              timeout=STARTUP_SECONDS)

    @classmethod
    def start(cls, bin_dir: Path) -> PostgresServer:
        """initdb and start a server on a free loopback port."""
        user = "postgres" if os.geteuid() == 0 else None
        data = Path(tempfile.mkdtemp(prefix="tl-pg-"))
        if user:
            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        server = cls(bin_dir, data, _free_port(), user)
        server._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        server._run("pg_ctl", "-D", str(data), "-w", "-t", str(STARTUP_SECONDS), "-l",
                    str(data / "server.log"), "-o",
                    f"-p {server.port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start")
        return server

    def create_database(self, name: str) -> str:
        """Create a database and return its SQLAlchemy URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, db: str) -> str:
        """SQLAlchemy URL (psycopg 3) of database `db`."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    shutil.rmtree(self.data)
                    break
                except OSError:
                    time.sleep(0.1)
