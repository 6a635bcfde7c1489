"""Run the API with uvicorn: one process, or several workers sharing one listening socket.

uvicorn picks uvloop and httptools when they are installed, asyncio and h11 otherwise. With
several workers each process opens the home in its own lifespan (SQLite in WAL mode takes
concurrent readers and serialises writers), so the settings travel to them in environment
variables read once, by the app factory, at start.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING

import uvicorn

from threadline.api.app import create_app
from threadline.api.http import DEFAULT_MAX_BODY, DEFAULT_MAX_UPLOAD, Limits
from threadline.config import ENV_HOME, load_settings
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.applications import Starlette

ENV_MAX_UPLOAD = "THREADLINE_SERVER_MAX_UPLOAD"
ENV_MAX_BODY = "THREADLINE_SERVER_MAX_BODY"
#: seconds in-flight requests get to finish after SIGTERM
GRACEFUL_SECONDS = 30
NO_AUTH_WARNING = ("warning: threadline server has no authentication yet; anyone who can reach "
                   "{host}:{port} can read and change this home. Bind 127.0.0.1 unless the "
                   "network is trusted.")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise InvalidArgument(f"{name} must be a positive number of bytes, not {text!r}")
    return int(text)


def build_app() -> Starlette:
    """The app of one worker process (uvicorn's factory); settings come from the environment."""
    return create_app(limits=Limits(max_body=_int_env(ENV_MAX_BODY, DEFAULT_MAX_BODY),
                                    max_upload=_int_env(ENV_MAX_UPLOAD, DEFAULT_MAX_UPLOAD)))


def serve(host: str = "127.0.0.1", port: int = 5000, *, workers: int = 1, access_log: bool = False,
          home: Path | None = None, max_upload: int = DEFAULT_MAX_UPLOAD) -> None:
    """Serve the home that applies to `home` (or the working folder) until interrupted.

    Raises:
        NotInitialized: there is no Threadline home there (checked before binding).
        InvalidArgument: a bad port, worker count or upload limit.
    """
    if not 0 < port < 65536:
        raise InvalidArgument(f"port must be between 1 and 65535, not {port}")
    if workers < 1:
        raise InvalidArgument(f"workers must be at least 1, not {workers}")
    if max_upload <= 0:
        raise InvalidArgument(f"max upload must be a positive number of bytes, not {max_upload}")
    settings = load_settings(home)  # fail now, with the CLI's message, not in a worker
    os.environ[ENV_HOME] = str(settings.home)
    os.environ[ENV_MAX_UPLOAD] = str(max_upload)
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info",
               "timeout_graceful_shutdown": GRACEFUL_SECONDS, "server_header": False}
    if workers == 1:
        uvicorn.run(build_app(), **options)  # type: ignore[arg-type]
    else:
        uvicorn.run("threadline.api.server:build_app", factory=True, workers=workers,
                    **options)  # type: ignore[arg-type]
