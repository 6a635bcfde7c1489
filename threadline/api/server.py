"""Run the API with uvicorn: one process, or several workers sharing one listening socket.

uvicorn picks uvloop and httptools when they are installed, asyncio and h11 otherwise. With
several workers each process opens the home in its own lifespan (SQLite in WAL mode takes
concurrent readers and serialises writers), so the settings travel to them in environment
variables read once, by the app factory, at start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import uvicorn

from threadline.api.app import create_app
from threadline.api.http import DEFAULT_MAX_BODY, DEFAULT_MAX_UPLOAD, Limits
from threadline.config import ENV_HOME, load_settings
from threadline.data.connect import connect
from threadline.errors import InvalidArgument
from threadline.serving.auth import Tokens, is_loopback

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.applications import Starlette

ENV_MAX_UPLOAD = "THREADLINE_SERVER_MAX_UPLOAD"
ENV_MAX_BODY = "THREADLINE_SERVER_MAX_BODY"
#: seconds in-flight requests get to finish after SIGTERM
GRACEFUL_SECONDS = 30
ENV_AUTH = "THREADLINE_SERVER_AUTH"
ENV_MONITOR = "THREADLINE_SERVER_MONITOR"


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
                                    max_upload=_int_env(ENV_MAX_UPLOAD, DEFAULT_MAX_UPLOAD)),
                      require_auth=os.environ.get(ENV_AUTH) == "1",
                      monitor=os.environ.get(ENV_MONITOR) == "1")


def serve(host: str = "127.0.0.1", port: int = 5000, *, workers: int = 1, access_log: bool = False,
          home: Path | None = None, max_upload: int = DEFAULT_MAX_UPLOAD, auth: bool = False,
          monitor: bool = False) -> None:
    """Serve the home that applies to `home` (or the working folder) until interrupted.

    A bearer token is required on every route but the health probes when `host` is not a
    loopback address (or `auth` asks for it on loopback); starting then needs an active token.

    Raises:
        NotInitialized: there is no Threadline home there (checked before binding).
        InvalidArgument: a bad port, worker count or upload limit, or auth is required and no
            token exists.
    """
    if not 0 < port < 65536:
        raise InvalidArgument(f"port must be between 1 and 65535, not {port}")
    if workers < 1:
        raise InvalidArgument(f"workers must be at least 1, not {workers}")
    if max_upload <= 0:
        raise InvalidArgument(f"max upload must be a positive number of bytes, not {max_upload}")
    settings = load_settings(home)  # fail now, with the CLI's message, not in a worker
    require_auth = auth or not is_loopback(host)
    if require_auth:
        repos = connect(settings)
        try:
            if not Tokens(repos.db).active_hashes():
                raise InvalidArgument(f"serving on {host} needs authentication and no token exists; "
                                      "create one with `threadline token create NAME` (or bind "
                                      "127.0.0.1)")
        finally:
            repos.close()
    os.environ[ENV_HOME] = str(settings.home)
    os.environ[ENV_MAX_UPLOAD] = str(max_upload)
    os.environ[ENV_AUTH] = "1" if require_auth else "0"
    # one process runs the monitoring passes: with several workers, only the first would be
    # right, so they are refused together
    if monitor and workers > 1:
        raise InvalidArgument("--monitor runs the policies in the server process; use it with one "
                              "worker (or run `threadline monitor run` beside the server)")
    os.environ[ENV_MONITOR] = "1" if monitor else "0"
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info",
               "timeout_graceful_shutdown": GRACEFUL_SECONDS, "server_header": False}
    if workers == 1:
        uvicorn.run(build_app(), **options)  # type: ignore[arg-type]
    else:
        uvicorn.run("threadline.api.server:build_app", factory=True, workers=workers,
                    **options)  # type: ignore[arg-type]
