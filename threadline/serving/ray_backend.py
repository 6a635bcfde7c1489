"""Deployments on Ray Serve: the same serving app, as replicas that Ray places and autoscales.

Each replica builds the app of `threadline serve` (serving/app.py) inside its own process, so
routing, batching, caching, admission control and the prediction log behave exactly as with
uvicorn workers; Ray Serve's proxy spreads requests over the replicas and adds or removes
replicas with the load (`autoscaling`). Replicas open the home themselves: on one machine the
embedded home works; across machines the home must be shared (PostgreSQL metadata and a
shared object store). Each replica answers `/metrics` for itself.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray import serve

from threadline.config import ENV_HOME

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.applications import Starlette

#: the Ray Serve application name every Threadline deployment set runs under
APP_NAME = "threadline"


@dataclass(frozen=True)
class RayOptions:
    """How the deployments run on Ray.

    Attributes:
        address: the cluster to join (`auto`, `ray://...`, `host:port`); None starts a local one.
        replicas: fixed replica count (ignored when `max_replicas` is set).
        min_replicas: autoscaling floor.
        max_replicas: autoscaling ceiling; None turns autoscaling off.
        target_ongoing_requests: requests per replica autoscaling aims for.
        num_cpus: CPUs reserved per replica.
    """

    address: str | None = None
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float = 16.0
    num_cpus: float = 1.0


@serve.ingress()
class ThreadlineReplica:
    """One Ray Serve replica: the serving app for `names` of the home at `home`."""

    def __init__(self, home: str, names: list[str], require_auth: bool, log_predictions: bool) -> None:
        self.home = home
        self.names = names
        self.require_auth = require_auth
        self.log_predictions = log_predictions

    def __serve_build_asgi_app__(self) -> Starlette:
        from threadline.serving.server import ENV_AUTH, ENV_DEPLOYMENTS, ENV_LOG, build_app

        os.environ.update({ENV_HOME: self.home, ENV_DEPLOYMENTS: ",".join(self.names),
                           ENV_AUTH: "1" if self.require_auth else "0",
                           ENV_LOG: "1" if self.log_predictions else "0"})
        return build_app()


def deploy(names: Sequence[str], home: str, *, host: str, port: int, options: RayOptions,
           require_auth: bool, log_predictions: bool) -> None:
    """Start (or update) the deployments on Ray Serve and return once every replica is ready."""
    connect(home, options)
    serve.start(http_options={"host": host, "port": port}, detached=False)
    settings: dict[str, Any] = {"ray_actor_options": {"num_cpus": options.num_cpus},
                                "max_ongoing_requests": int(options.target_ongoing_requests * 8)}
    if options.max_replicas is not None:
        settings["autoscaling_config"] = {
            "min_replicas": options.min_replicas, "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests}
    else:
        settings["num_replicas"] = options.replicas
    deployment = serve.deployment(name="threadline-" + "-".join(names), **settings)(ThreadlineReplica)
    app = deployment.bind(home, list(names), require_auth, log_predictions)
    serve.run(app, name=APP_NAME, route_prefix="/")


def connect(home: str, options: RayOptions) -> None:
    """Join (or start) the Ray cluster, once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=options.address, namespace="threadline", log_to_driver=False,
                 runtime_env={"env_vars": {ENV_HOME: home}})


def shutdown() -> None:
    """Stop the deployments and Ray Serve (replicas drain their in-flight requests)."""
    import ray

    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()


def serve_on_ray(names: Sequence[str], home: str, *, host: str, port: int, options: RayOptions,
                 require_auth: bool, log_predictions: bool) -> None:
    """Deploy, then block until SIGINT or SIGTERM and shut down."""
    stop = threading.Event()
    connect(home, options)
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        deploy(names, home, host=host, port=port, options=options, require_auth=require_auth,
               log_predictions=log_predictions)
        stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the drain short
            signal.signal(sig, signal.SIG_IGN)
        shutdown()
