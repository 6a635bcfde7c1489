"""Run deployments behind uvicorn: one process, or several workers sharing one socket.

Workers are separate processes (horizontal scaling on one machine), each with its own socket
on the shared port (SO_REUSEPORT), so the kernel spreads connections over them; each loads the
deployments itself, and their metrics meet in a shared Prometheus folder. uvicorn stops
accepting on SIGTERM and lets in-flight requests finish (up to `GRACEFUL_SECONDS`) before the
app drains its versions and flushes its prediction logs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from threadline.config import ENV_HOME, load_settings
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.applications import Starlette

    from threadline.serving.ray_backend import RayOptions

log = logging.getLogger(__name__)
ENV_DEPLOYMENTS = "THREADLINE_SERVE_DEPLOYMENTS"
ENV_AUTH = "THREADLINE_SERVE_AUTH"
ENV_LOG = "THREADLINE_SERVE_LOG"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: seconds in-flight requests get to finish after SIGTERM
GRACEFUL_SECONDS = 30


def build_app() -> Starlette:
    """The app of one worker process (uvicorn's factory); settings come from the environment,
    read once here."""
    from threadline.data.connect import connect
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.app import create_app
    from threadline.serving.deployments import Deployments

    settings = load_settings(Path(os.environ[ENV_HOME]) if os.environ.get(ENV_HOME) else None)
    registry = ModelRegistry(connect(settings))
    names = [n for n in os.environ.get(ENV_DEPLOYMENTS, "").split(",") if n]
    return create_app(registry, Deployments(registry), names,
                      require_auth=os.environ.get(ENV_AUTH) == "1",
                      log_predictions=os.environ.get(ENV_LOG, "1") == "1",
                      log_repos=connect(settings))


def serve(names: Sequence[str], host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1,
          home: Path | None = None, auth: bool | None = None, log_predictions: bool = True,
          access_log: bool = False, ray: RayOptions | None = None) -> None:
    """Serve deployments `names` of the home that applies to `home` until interrupted.

    Auth is required when `host` is not a loopback address (and may be asked for on loopback).
    With `ray`, the deployments run as Ray Serve replicas instead of uvicorn workers.

    Raises:
        NotInitialized: there is no Threadline home there.
        NotFound: a deployment does not exist (checked before binding).
        InvalidArgument: a bad port or worker count, or auth required and no token exists.
    """
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.auth import Tokens, is_loopback
    from threadline.serving.deployments import Deployments

    if not 0 < port < 65536:
        raise InvalidArgument(f"port must be between 1 and 65535, not {port}")
    if workers < 1:
        raise InvalidArgument(f"workers must be at least 1, not {workers}")
    if not names:
        raise InvalidArgument("name the deployments to serve: `threadline serve NAME`")
    settings = load_settings(home)
    registry = ModelRegistry.open(settings.home)
    deployments = Deployments(registry)
    for name in names:
        deployments.get(name)
    require_auth = True if not is_loopback(host) else bool(auth)
    if require_auth and not Tokens(registry.db).active_hashes():
        raise InvalidArgument(f"serving on {host} needs authentication and no token exists; create "
                              "one with `threadline token create NAME` (or bind 127.0.0.1)")
    os.environ.update({ENV_HOME: str(settings.home), ENV_DEPLOYMENTS: ",".join(names),
                       ENV_AUTH: "1" if require_auth else "0", ENV_LOG: "1" if log_predictions else "0"})
    if ray is not None:
        try:
            from threadline.serving.ray_backend import serve_on_ray
        except ImportError as exc:
            raise InvalidArgument("serving on Ray needs Ray Serve: pip install 'threadline[ray]'") from exc
        serve_on_ray(names, str(settings.home), host=host, port=port, options=ray,
                     require_auth=require_auth, log_predictions=log_predictions)
        return
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "warning",
               "timeout_graceful_shutdown": GRACEFUL_SECONDS, "server_header": False,
               "date_header": False}
    if workers == 1:
        uvicorn.run(build_app(), **options)  # type: ignore[arg-type]
        return
    metrics_dir = Path(tempfile.mkdtemp(prefix="tl-serve-metrics-"))
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        _supervise(workers, host, port, options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket of its own for one worker; SO_REUSEPORT lets every worker bind the
    same port, and the kernel spreads new connections over them."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


def run_worker(host: str, port: int, options: dict[str, object]) -> None:
    """One worker process: its own socket on the shared port, the app built from the
    environment (spawned by `_supervise`)."""
    config = uvicorn.Config("threadline.serving.server:build_app", factory=True,
                            **{k: v for k, v in options.items() if k not in ("host", "port")})  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[_listen(host, port)])


def _supervise(workers: int, host: str, port: int, options: dict[str, object]) -> None:
    """Start `workers` processes, restart one that dies, and pass SIGINT/SIGTERM on to all
    (each drains its in-flight requests) before returning.

    uvicorn's own `--workers` shares one accepting socket, so whichever process wakes first
    can take every connection a client opens at once and keep-alive keeps them there; one
    socket per worker with SO_REUSEPORT lets the kernel spread them.
    """
    _listen(host, port).close()  # the port is free and the address valid: fail here, not in a worker
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=run_worker, args=(host, port, options), daemon=False)
        process.start()
        return process

    processes = [start() for _ in range(workers)]

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.is_set():
            for index, process in enumerate(processes):
                if not process.is_alive() and not stopping.is_set():
                    log.warning("serving worker %s exited (%s); starting another", process.pid,
                                process.exitcode)
                    processes[index] = start()
            stopping.wait(0.5)
        for process in processes:
            process.join(GRACEFUL_SECONDS + 10)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
