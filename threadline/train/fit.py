"""`fit` and `resume`: pick a strategy, open the executor and the run, train, log the model.

    import threadline.train as tt
    from sklearn.ensemble import RandomForestClassifier

    result = tt.fit(RandomForestClassifier(n_estimators=200), data="churn@main:train.parquet",
                    target="label", workers=4)
    result.model, result.run_id, result.metrics

The run (experiment "training" by default) records the estimator, its params, the strategy,
workers and seed as params; the data commit as an input (lineage); metrics and timings; the
trained model as the artifact folder `model` (registrable with `ModelRegistry.register(...,
run_id=result.run_id)`); and a `train-spec.json` that `resume` rebuilds the training from.
Shards and trials are child runs. The same seed, data and worker count give the same model
on either executor.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.compute import RayExecutor, Task, open_executor
from threadline.compute.cluster import code_runtime_env
from threadline.errors import InvalidArgument
from threadline.tracking.active import active_run, start_run
from threadline.train import combine as rules
from threadline.train.context import Context, Progress, ShardInfo
from threadline.train.libs import sk, tch
from threadline.train.record import load_checkpoint, load_spec, log_model, save_spec
from threadline.train.search import run_search
from threadline.train.shards import iter_shards, load_data, seed_for, shard_data, spill
from threadline.train.spec import estimator_from_name, estimator_name, plain_params
from threadline.train.sync import run_sync
from threadline.train.torch_ddp import run_ddp
from threadline.train.torch_model import TorchModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from threadline.compute.base import Executor
    from threadline.tracking.store import TrackingStore

__all__ = ["STRATEGIES", "TrainResult", "fit", "resume"]

STRATEGIES = ("auto", "combine", "sync", "search", "single", "ddp")
_SHARD_KEY = 1  # seed_for(seed, _SHARD_KEY, shard): the random_state of one shard's partial model
_PILOT_KEY = 3  # seed_for(seed, _PILOT_KEY, shard): the sample of a shard's pilot fit


@dataclass
class TrainResult:
    """What `fit` returns.

    Attributes:
        model: the trained (combined, averaged or best) model.
        run_id: the parent run.
        strategy: the strategy used ("auto" resolved).
        metrics: final metrics (train_score; valid_<metric> for a search...).
        shards: per shard (combine) or per trial (search): rows, seconds, child run.
        best_params: the winning params of a search.
    """

    model: Any
    run_id: str
    strategy: str
    metrics: dict[str, float]
    shards: list[ShardInfo] = field(default_factory=list)
    best_params: dict[str, Any] = field(default_factory=dict)


def _resolve(estimator: Any, strategy: str, search: dict[str, Any] | None) -> str:
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if isinstance(estimator, TorchModel):
        if strategy not in ("auto", "ddp"):
            raise InvalidArgument(f"a TorchModel trains with strategy='ddp' (or 'auto'), not {strategy!r}")
        tch()  # without torch, say how to install it before a run is created
        return "ddp"
    if strategy == "ddp":
        raise rules.refuse(estimator, "ddp")  # names the strategies that fit
    if strategy == "auto":
        return "search" if search else "combine" if rules.has_combiner(estimator) else (
            "sync" if rules.can_sync(estimator) else "single")
    if strategy == "combine":
        rules.combiner_for(estimator)  # refuses with the strategies that fit
    if strategy == "sync" and not rules.can_sync(estimator):
        raise rules.refuse(estimator, "sync")
    if strategy == "search" and not search:
        raise InvalidArgument("strategy 'search' needs search={'space': {...}}")
    return strategy


def _is_classifier(estimator: Any) -> bool:
    if isinstance(estimator, TorchModel):  # torch training needs no scikit-learn
        return estimator.task == "classification"
    return bool(sk("sklearn.base").is_classifier(estimator))


def _user_modules(estimator: Any) -> list[str]:
    """The modules a worker imports to run `estimator`: its class's, and a TorchModel's network's."""
    modules = [type(estimator).__module__]
    if isinstance(estimator, TorchModel):
        factory = estimator.factory
        modules.append(factory.partition(":")[0] if isinstance(factory, str) else factory.__module__)
    return modules


@contextlib.contextmanager
def _executor(executor: str | Executor, workers: int, address: str | None,
              estimator: Any) -> Iterator[Executor]:
    if not isinstance(executor, str):
        _one_machine(executor)
        yield executor  # the caller's: left open
        return
    # on a running cluster the workers import user estimators and networks from the shipped copy
    env = code_runtime_env(_user_modules(estimator)) if executor == "ray" and address is not None else None
    with open_executor(executor, workers=workers, address=address, runtime_env=env) as pool:
        _one_machine(pool)
        yield pool


def _one_machine(pool: Executor) -> None:
    """Refuse a Ray cluster spanning machines: shards reach the workers through this machine's
    shared memory (`train.shards`), which other machines cannot read."""
    machines = pool.machine_count() if isinstance(pool, RayExecutor) else 1
    if machines > 1:
        raise InvalidArgument(
            f"this Ray cluster has nodes on {machines} machines, and training hands shards to its "
            "workers through this machine's shared memory; train on a cluster of this machine only, "
            "or with executor='local'")


def _with_seed(estimator: Any, seed: int) -> Any:
    model = sk("sklearn.base").clone(estimator)
    if "random_state" in model.get_params(deep=False):
        model.set_params(random_state=seed)
    return model


def _combine(ctx: Context, estimator: Any) -> tuple[Any, dict[str, float], list[ShardInfo]]:
    rule = rules.combiner_for(estimator)
    trees = (rules.split_estimators(estimator.n_estimators, ctx.workers)
             if rule in ("trees", "bagging") else None)
    pilot = rule == "average" and rules.wants_pilot(estimator, ctx.data.rows // ctx.workers)
    threads = max(1, (os.cpu_count() or 1) // ctx.workers)
    handles = []
    try:  # each shard's fit starts as soon as its shard is written
        for i, shard in enumerate(iter_shards(ctx.data, ctx.workers, ctx.seed, ctx.spill,
                                              classifier=ctx.classifier)):
            part = _with_seed(estimator, seed_for(ctx.seed, _SHARD_KEY, i))
            if trees is not None:
                part.set_params(n_estimators=trees[i])
            pilot_seed = seed_for(ctx.seed, _PILOT_KEY, i) if pilot else None
            task = Task(rules.fit_part, (part, shard.path, None, threads, pilot_seed), name=f"shard {i}",
                        retries=ctx.retries)
            handles.append(ctx.executor.submit(task))
    except BaseException:
        for handle in handles:
            handle.cancel()
        raise
    for done, _ in enumerate(ctx.executor.as_completed(handles), 1):
        ctx.progress("shards", done, len(handles))
    results = [h.result() for h in handles]
    began = time.perf_counter()
    options: dict[str, Any] = {}
    if rule == "kmeans":
        X, _ = ctx.eval_sample()
        options = {"sample": X, "seed": ctx.seed}
    model = rules.combine(rule, [r[0] for r in results], [r[1] for r in results], **options)
    metrics = {"combine_seconds": time.perf_counter() - began, "train_score": ctx.score(model)}
    if pilot:
        model.set_params(warm_start=estimator.warm_start)  # the user's setting, not the shards'
    info = [ShardInfo(i, rows, seconds, ctx.child_run(f"shard {i}", {"shard": i, "rule": rule},
                                                      {"rows": rows, "fit_seconds": seconds}))
            for i, (_, rows, seconds) in enumerate(results)]
    return model, metrics, info


def _single(ctx: Context, estimator: Any) -> tuple[Any, dict[str, float]]:
    whole = ctx.spill.add("all", ctx.data.X, ctx.data.y)
    model, _, seconds = ctx.executor.map([Task(rules.fit_part, (_with_seed(estimator, ctx.seed), whole.path),
                                               name="single", retries=ctx.retries)])[0]
    ctx.progress("shards", 1, 1)
    return model, {"fit_seconds": seconds, "train_score": ctx.score(model)}


def _train(ctx: Context, estimator: Any, strategy: str, epochs: int, search: dict[str, Any] | None,
           start: tuple[Any, int] | None = None) -> TrainResult:
    shards: list[ShardInfo] = []
    best: dict[str, Any] = {}
    if strategy == "combine":
        model, metrics, shards = _combine(ctx, estimator)
    elif strategy == "sync":
        parts = shard_data(ctx.data, ctx.workers, ctx.seed, ctx.spill, classifier=ctx.classifier)
        initial, first = start if start is not None else (_with_seed(estimator, ctx.seed), 0)
        model, metrics = run_sync(ctx, initial, parts, epochs, first)
    elif strategy == "ddp":
        parts = shard_data(ctx.data, ctx.workers, ctx.seed, ctx.spill, classifier=ctx.classifier)
        initial, first = start if start is not None else (estimator, 0)
        model, metrics = run_ddp(ctx, initial, parts, epochs, first)
    elif strategy == "search":
        assert search is not None
        model, metrics, shards, best = run_search(ctx, estimator, search)
    else:
        model, metrics = _single(ctx, estimator)
    return TrainResult(model, ctx.run.id, strategy, metrics, shards, best)


def _store(home: str | Path | None, store: TrackingStore | None) -> TrackingStore:
    if store is not None:
        return store
    from threadline.data.connect import default_repos
    from threadline.tracking.store import TrackingStore

    return TrackingStore(default_repos(Path(home) if home is not None else None))


def fit(
    estimator: Any, data: str | tuple[Any, Any], target: str = "label", features: Sequence[str] | None = None,
    *, strategy: str = "auto", workers: int = 2, executor: str | Executor = "local", epochs: int = 5,
    search: dict[str, Any] | None = None, seed: int = 0, experiment: str = "training", name: str = "",
    address: str | None = None, progress: Callable[[Progress], None] | None = None,
    home: str | Path | None = None, store: TrackingStore | None = None,
    _resume: tuple[str, Any, int] | None = None,
) -> TrainResult:
    """Train `estimator` in parallel on a committed table and track it as a run.

    Args:
        estimator: an unfitted scikit-learn estimator (its params are the configuration).
        data: a table ref (`repo@branch:path.parquet`), or an in-memory `(X, y)` pair.
        target: the label column. features: the feature columns (default: all others).
        strategy: "combine" (shard-and-combine), "sync" (per-epoch averaged partial_fit), "ddp"
            (a `TorchModel` on a DistributedDataParallel group), "search", "single", or "auto"
            (ddp for a TorchModel; else search if `search`, else combine, else sync, else single).
        workers: shards, trials or tasks run at once. executor: "local", "ray" or an Executor.
        epochs: passes of the sync strategy.
        search: the search space and options (see `threadline.train.search`).
        seed: every random choice derives from it: same seed, data and workers give the same model.
        experiment, name: where the run goes, and its name.
        address: a Ray cluster address for executor="ray" (None starts a local cluster); the
            project modules of the estimator (and of a TorchModel's network) are shipped to it.
        progress: called with `Progress` events (shards done, epoch, best trial).
        home, store: the Threadline home or tracking store (default: found from the folder).

    Raises:
        InvalidArgument: an unknown strategy, or one the estimator does not support (the
            message names the ones it does), or bad data.
    """
    if not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers={workers!r}: must be an int >= 1")
    chosen = _resolve(estimator, strategy, search)
    tracking = _store(home, store)
    table = load_data(data, target, features, tracking.repos if isinstance(data, str) else None)
    kind = executor if isinstance(executor, str) else executor.kind
    run_name = name or f"{type(estimator).__name__} {chosen}"
    inputs = [table.ref] if table.ref else []
    with start_run(run_name, experiment=experiment, nested=active_run() is not None, inputs=inputs,
                   store=tracking, tags={"resumed_from": _resume[0]} if _resume else None) as run:
        params = {f"estimator.{k}": v for k, v in plain_params(estimator).items()}
        run.log_params({"estimator": estimator_name(estimator), "strategy": chosen, "workers": workers,
                        "seed": seed, "executor": kind, "epochs": epochs, "rows": table.rows, **params})
        save_spec(tracking, run.id, {"estimator": estimator_name(estimator),
                                     "params": plain_params(estimator),
                                     "data": table.commit_ref, "target": target, "features": table.features,
                                     "strategy": chosen, "workers": workers, "executor": kind,
                                     "epochs": epochs, "seed": seed, "experiment": experiment,
                                     "name": run_name, "search": search})
        began = time.perf_counter()
        need = 3 * (table.X.nbytes + table.y.nbytes)  # shards, or a search's train, valid and refit copies
        with spill(need_bytes=need) as scratch, _executor(executor, workers, address, estimator) as pool:
            ctx = Context(pool, run, table, scratch, seed, workers, _is_classifier(estimator), progress)
            start = (_resume[1], _resume[2]) if _resume else None
            result = _train(ctx, estimator, chosen, epochs, search, start)
        result.metrics["wall_seconds"] = time.perf_counter() - began
        run.log_metrics({k: v for k, v in result.metrics.items() if k not in ctx.stepped})
        if result.best_params:
            run.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        log_model(tracking, run.id, result.model)
    return result


def resume(run_id: str, *, executor: str | Executor | None = None, address: str | None = None,
           progress: Callable[[Progress], None] | None = None, home: str | Path | None = None,
           store: TrackingStore | None = None) -> TrainResult:
    """Continue an interrupted sync or ddp training from its last checkpoint, as a new run.

    The new run reads the same data commit with the same seed and workers, tagged
    `resumed_from`; its result equals what the interrupted run would have produced.

    Raises:
        NotFound: the run logged no spec or no checkpoint.
        InvalidArgument: the run was not a sync or ddp training on a committed table.
    """
    tracking = _store(home, store)
    full_id = tracking.resolve_run_prefix(run_id)
    spec = load_spec(tracking, full_id)
    if spec["strategy"] not in ("sync", "ddp") or not spec["data"]:
        raise InvalidArgument(f"run {full_id} used strategy {spec['strategy']!r}"
                              f"{'' if spec['data'] else ' on in-memory data'}; only sync or ddp training "
                              "on a committed table has checkpoints to resume from")
    model, state = load_checkpoint(tracking, full_id)
    estimator = estimator_from_name(spec["estimator"], spec["params"])
    if isinstance(estimator, TorchModel):
        model = estimator.with_state(model)  # the checkpoint holds weights; the spec, the network
    return fit(estimator, spec["data"], spec["target"], spec["features"], strategy=spec["strategy"],
               workers=spec["workers"], executor=executor or spec["executor"], epochs=spec["epochs"],
               seed=spec["seed"], experiment=spec["experiment"], name=f"{spec['name']} (resumed)",
               address=address, progress=progress, store=tracking,
               _resume=(full_id, model, int(state["epoch"]) + 1))
