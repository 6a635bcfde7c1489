"""A deployment running in one server process: its loaded versions and its route table, kept
in step with the registry and the deployment's revisions without dropping a request.

Every `refresh_s` the runtime resolves the deployment's routes (a new revision, or an alias
that moved). When the resolution changed it loads the versions it does not hold yet, in a
thread, and warms each on its stored example: a version that fails to load or to answer is
never routed to (the old table keeps serving and the error shows in the status). Only then is
the new table swapped in, in one assignment on the event loop. Versions left out are drained:
unloaded once their in-flight requests are answered, and their cache entries dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from threadline.serving.admission import Admission, RateLimiter
from threadline.serving.batching import MicroBatcher
from threadline.serving.predictor import Predictor, example_inputs
from threadline.serving.router import RouteTable, Target

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.registry.records import ModelVersion
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.deployments import Deployment, Deployments
    from threadline.serving.spec import Settings

log = logging.getLogger(__name__)
#: longest an unloaded version waits for its in-flight requests
DRAIN_SECONDS = 30.0


@dataclass
class Loaded:
    """A version held in memory: its predictor and batcher."""

    predictor: Predictor
    batcher: MicroBatcher
    loaded_at: float = field(default_factory=time.time)


class DeploymentRuntime:
    """One deployment as served by this process.

    Args:
        name: the deployment.
        deployments: where its spec and revisions are read.
        registry: where versions are resolved and loaded from.
    """

    def __init__(self, name: str, deployments: Deployments, registry: ModelRegistry) -> None:
        self.name = name
        self.deployments = deployments
        self.registry = registry
        self.table: RouteTable | None = None
        self.settings: Settings | None = None
        self.admission: Admission | None = None
        #: per-client rate limit (None: off), rebuilt when its settings change
        self.limiter: RateLimiter | None = None
        self.loaded: dict[str, Loaded] = {}
        self.last_error: str | None = None
        self._key: tuple[Any, ...] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        #: told each unloaded version's id (the cache drops its entries)
        self.on_unload: list[Callable[[str], Any]] = []
        #: told the rows of every model call of a version (the batch-size metric)
        self.on_batch: Callable[[Predictor, int], None] | None = None

    @property
    def ready(self) -> bool:
        """Whether a route table is in place."""
        return self.table is not None

    # ------------------------------------------------------------ resolution
    def _resolve(self) -> tuple[Deployment, list[ModelVersion]]:
        deployment = self.deployments.get(self.name)
        return deployment, [self.registry.get_version(r.model) for r in deployment.spec.routes]

    def _load(self, version: ModelVersion, settings: Settings) -> Loaded:
        model = self.registry.load_version(version, trusted=settings.trusted,
                                           allow_pickle=settings.allow_pickle,
                                           allow_code=settings.allow_code)
        example = self.registry.load_example(version)
        predictor = Predictor(version, model, onnx=settings.onnx, example=example)
        if example is not None:  # the readiness check: it must answer its own example
            predictor.predict(example_inputs(example, predictor.columns))
        batcher = MicroBatcher(predictor.predict, max_rows=settings.max_batch_size,
                               max_wait=settings.max_wait_ms / 1000,
                               others_in_flight=lambda: self.admission.others() if self.admission else 0,
                               seconds_per_call=lambda: predictor.seconds_per_call,
                               name=predictor.id.replace("/", "-"),
                               on_call=lambda rows: self.on_batch(predictor, rows) if self.on_batch else None)
        return Loaded(predictor, batcher)

    async def refresh(self) -> bool:
        """Apply a new revision or alias move if there is one; True when the table changed.

        Errors (a version that will not load or answer) are kept in `last_error`; the table in
        place keeps serving.
        """
        try:
            deployment, versions = await run_in_threadpool(self._resolve)
        except Exception as exc:  # noqa: BLE001 - the status shows it; serving goes on
            self.last_error = f"cannot resolve deployment {self.name!r}: {exc}"
            return False
        key = (deployment.revision, tuple(f"{v.name}/{v.version}" for v in versions))
        if key == self._key:
            return False
        settings = deployment.spec.settings
        fresh: dict[str, Loaded] = {}
        try:
            for version in versions:
                vid = f"{version.name}/{version.version}"
                if vid not in self.loaded and vid not in fresh:
                    fresh[vid] = await run_in_threadpool(self._load, version, settings)
        except Exception as exc:  # noqa: BLE001 - the version never receives traffic
            for item in fresh.values():
                item.batcher.close()
            self.last_error = f"version not served: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            log.warning("deployment %s: %s", self.name, self.last_error)
            return False
        self.loaded.update(fresh)
        for item in self.loaded.values():  # batching settings apply to every held version
            item.batcher.max_rows = settings.max_batch_size
            item.batcher.max_wait = settings.max_wait_ms / 1000
        serving: list[Target] = []
        shadows: list[Target] = []
        for route, version in zip(deployment.spec.routes, versions):
            item = self.loaded[f"{version.name}/{version.version}"]
            target = Target(route, item.predictor, item.batcher)
            (shadows if route.mode == "shadow" else serving).append(target)
        if self.admission is None:
            self.admission = Admission(settings.max_concurrency, settings.max_queue)
        burst = settings.rate_burst or max(int(settings.rate_limit), 1)
        if not settings.rate_limit:
            self.limiter = None
        elif self.limiter is None or (self.limiter.rate, self.limiter.burst) != (settings.rate_limit, burst):
            self.limiter = RateLimiter(settings.rate_limit, burst)
        self.settings = settings
        self.table = RouteTable(serving, shadows, deployment.revision)  # the swap
        self._key = key
        self.last_error = None
        in_use = {t.predictor.id for t in self.table.targets()}
        for vid in [v for v in self.loaded if v not in in_use]:
            task = asyncio.get_running_loop().create_task(self._unload(self.loaded.pop(vid)))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        return True

    async def _unload(self, item: Loaded) -> None:
        """Wait for the version's in-flight requests, then free it."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while item.predictor.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await run_in_threadpool(item.batcher.close)
        for callback in self.on_unload:
            callback(item.predictor.id)
        log.info("deployment %s: unloaded %s", self.name, item.predictor.id)

    async def drain(self) -> None:
        """Wait for in-flight requests of every version, then free them all (shutdown)."""
        if self.admission is not None:
            self.admission.draining = True
        items = list(self.loaded.values())
        self.loaded.clear()
        self.table = None
        await asyncio.gather(*(self._unload(i) for i in items), *self._draining)

    def status(self) -> dict[str, Any]:
        """What this process serves for the deployment (the status endpoint's body)."""
        table = self.table
        return {
            "deployment": self.name,
            "pid": os.getpid(),
            "ready": table is not None,
            "revision": table.revision if table else None,
            "last_error": self.last_error,
            "routes": [{"route": t.route.name, "mode": t.route.mode, "model": t.route.model,
                        "weight": t.route.weight, "version": t.predictor.id,
                        "engine": t.predictor.engine, "inflight": t.predictor.inflight}
                       for t in (table.targets() if table else [])],
            "admitted": self.admission.admitted if self.admission else 0,
        }
