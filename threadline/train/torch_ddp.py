"""PyTorch DistributedDataParallel on the executors: one round of rank tasks per epoch.

Each epoch the driver writes the starting state (weights and optimizer state) into the scratch
folder and submits one task per shard at once; task `r` of `N` joins a process group through
a TCPStore the driver hosts on loopback (gloo on CPU, nccl on a GPU), loads the state, wraps
the module in `DistributedDataParallel` and makes one pass over its own shard, with gradients averaged across
ranks every step. Rank 0 writes the new state; the driver checkpoints it into the run (model,
optimizer, epoch, seed) before the next epoch.

Every rank takes the same number of steps (a rank with one row more spreads it over its
batches): DDP needs the ranks' collectives to pair up, and one extra step would wait forever.

A process group cannot lose a member, so a failure is an epoch's: when any rank fails (an
exception, a killed worker, a peer timed out) the driver cancels the others (`Executor.map`
fails fast: the local executor kills their workers, Ray force-cancels them) and reruns the
whole epoch with a fresh store, from the same starting state, up to `ctx.retries` times. Every
random choice derives from (seed, epoch, rank), so a retried epoch or a resumed run computes
the identical update, and the local and Ray executors train the identical model on CPU.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.compute.base import Resources, Task
from threadline.compute.errors import TaskCancelled, TaskFailed
from threadline.errors import InvalidArgument
from threadline.train.libs import tch
from threadline.train.record import save_checkpoint
from threadline.train.shards import load_shard, seed_for
from threadline.train.torch_model import TorchModel, load_state, save_state

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from threadline.train.context import Context
    from threadline.train.shards import Shard

__all__ = ["RankJob", "RankResult", "ddp_rank", "run_ddp"]

_EPOCH_KEY = 2  # seed_for(seed, _EPOCH_KEY, epoch, rank): the shuffle of one rank's shard in one epoch
_INIT_KEY = 3  # seed_for(seed, _INIT_KEY): the initial weights
_TORCH_KEY = 4  # seed_for(seed, _TORCH_KEY, epoch, rank): torch's RNG (dropout) on one rank in one epoch
#: how long a rank waits for the others to start (the executor may be busy, a worker respawning)
JOIN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RankJob:
    """What one rank needs for one epoch (small: paths, not arrays or weights)."""

    model: TorchModel  # unfitted: options only
    rank: int
    world: int
    port: int  # of the driver's TCPStore (rendezvous)
    shard: str
    start: str  # the state file the epoch starts from
    out: str  # where rank 0 writes the new state
    steps: int
    classes: list[Any] | None
    shuffle_seed: int
    torch_seed: int


@dataclass(frozen=True)
class RankResult:
    """What one rank reports: rows, seconds, and the epoch's mean loss over all ranks."""

    rank: int
    rows: int
    seconds: float
    loss: float


@contextlib.contextmanager
def rendezvous(timeout_s: float) -> Iterator[int]:
    """A TCPStore for one attempt of one epoch, hosted by the driver on loopback; yields its port.

    The driver's store is up before any rank starts, so no rank waits in a connect back-off,
    and it outlives a dead rank 0. Its socket is bound here, to 127.0.0.1 and a port the
    kernel picks, so it listens on loopback only (a store of its own would listen on every
    interface) and no other process can take the port between choosing and binding it.
    """
    dist = tch("torch.distributed")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        fd = sock.detach()  # the store owns and closes the descriptor from here
    try:
        store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                              timeout=timedelta(seconds=timeout_s), master_listen_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield port
    finally:
        del store


def _loopback_interface() -> str | None:
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in ("lo", "lo0") if n in names), None)


def _device(model: TorchModel, rank: int, world: int) -> Any:
    torch = tch()
    count = torch.cuda.device_count() if model.device != "cpu" and torch.cuda.is_available() else 0
    if model.device == "cpu" or (model.device == "auto" and count < world):
        return torch.device("cpu")  # "auto": a GPU per rank, or the CPU for all of them
    if count == 0:
        raise InvalidArgument("TorchModel(device='cuda'): this worker sees no GPU")
    return torch.device("cuda", rank % count)  # nccl refuses two ranks on one GPU by itself


@contextlib.contextmanager
def _process_group(job: RankJob, device: Any) -> Iterator[Any]:
    """Join the epoch's process group; always leave it, and restore torch's and gc's settings.

    The DDP wrapper's reducer holds the group. Freed after `destroy_process_group`, it would run
    the gloo destructor with the GIL held while gloo's threads wait for the GIL: a deadlock. So
    the epoch's garbage is freed before the group is destroyed - cheaply: with the collector
    paused, all of it is still in the youngest generation, which one `gc.collect(0)` sweeps.
    """
    torch, dist = tch(), tch("torch.distributed")
    backend = job.model.backend or ("nccl" if device.type == "cuda" else "gloo")
    loopback = _loopback_interface()
    if loopback is not None:  # peers talk over loopback only, never the host's public address
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", loopback)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    collecting = gc.isenabled()
    torch.set_num_threads(job.model.threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.cuda.set_device(device)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gc.disable()
    try:
        store = dist.TCPStore("127.0.0.1", job.port, is_master=False,
                              timeout=timedelta(seconds=max(JOIN_TIMEOUT_S, job.model.timeout_s)))
        _join(store, job.world)
        dist.init_process_group(backend, store=store, rank=job.rank, world_size=job.world,
                                timeout=timedelta(seconds=job.model.timeout_s))
        try:
            yield dist
        finally:
            gc.collect(0)
            dist.destroy_process_group()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        if collecting:
            gc.enable()


def _join(store: Any, world: int) -> None:
    """Wait until every rank has started (a respawned worker may still be importing torch).

    Only then does the group's `timeout_s` start to count: it bounds waiting for a hung peer,
    not for a slow start. A rank that dies before joining is noticed by the driver instead.
    """
    if int(store.add("threadline/joined", 1)) == world:
        store.set("threadline/all-joined", "1")
    store.wait(["threadline/all-joined"])


def ddp_rank(job: RankJob) -> RankResult:
    """Worker side: one epoch of rank `job.rank` over its shard; rank 0 writes the new state."""
    device = _device(job.model, job.rank, job.world)
    began = time.perf_counter()
    with _process_group(job, device) as dist:
        try:
            rows, loss = _train_epoch(job, device, dist)
        except BaseException as exc:
            # the traceback's frames would keep the DDP wrapper alive past the group (see above)
            traceback.clear_frames(exc.__traceback__)
            raise
    return RankResult(job.rank, rows, time.perf_counter() - began, loss)


def _train_epoch(job: RankJob, device: Any, dist: Any) -> tuple[int, float]:
    torch = tch()
    torch.manual_seed(job.torch_seed)
    model = job.model.with_state(load_state(Path(job.start)))
    module = model.build().to(device)  # the factory runs inside the group: it may ask its rank
    ddp = tch("torch.nn.parallel").DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = model.make_optimizer(ddp.parameters())
    if model.optimizer_state_:
        optimizer.load_state_dict(model.optimizer_state_)
    loss_fn = model.make_loss()
    X, y = load_shard(job.shard)
    inputs = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(device)
    targets = model.targets(y).to(device)
    order = np.random.default_rng(job.shuffle_seed).permutation(len(inputs))
    total = torch.zeros((), dtype=torch.float64, device=device)
    ddp.train()
    for batch in np.array_split(order, job.steps):
        index = torch.from_numpy(np.sort(batch)).to(device)
        optimizer.zero_grad(set_to_none=True)
        out = ddp(inputs[index])
        if model.task == "regression" and out.ndim == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        loss = loss_fn(out, targets[index])
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(batch)
    sums = torch.stack([total, torch.tensor(float(len(inputs)), dtype=torch.float64, device=device)])
    dist.all_reduce(sums)  # the epoch's loss over every rank's rows
    if job.rank == 0:
        cpu = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        classes = None if job.classes is None else np.asarray(job.classes)
        save_state(Path(job.out), cpu, _to_cpu(optimizer.state_dict()), classes)
    return len(inputs), float(sums[0] / sums[1])


def _to_cpu(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _initial(ctx: Context, model: TorchModel, classes: np.ndarray | None) -> TorchModel:
    """Seeded initial weights, built on the driver and checked against the data's shape."""
    torch = tch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(ctx.seed, _INIT_KEY))
        module = model.unfitted().build()
    X, _ = ctx.eval_sample()
    want = (2, len(classes)) if classes is not None else (2,)
    try:
        with torch.no_grad():
            got = tuple(module(torch.from_numpy(np.asarray(X[:2], dtype=np.float32))).shape)
    except RuntimeError as exc:
        raise InvalidArgument(f"{model!r} does not take rows of {X.shape[1]} features: {exc}") from exc
    if got != want and not (classes is None and got == (2, 1)):
        raise InvalidArgument(f"{model!r} outputs shape {got} for 2 rows; the {model.task} data needs "
                              f"{want} (one output per {'class' if classes is not None else 'row'})")
    start = model.unfitted()
    start.state_ = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    start.classes_ = classes
    return start


def _epoch(ctx: Context, model: TorchModel, shards: Sequence[Shard], epoch: int, steps: int,
           start: Path) -> tuple[list[RankResult], Path, int]:
    """Run one epoch, retried whole with a fresh store; (results, new state file, attempts)."""
    world, spec = len(shards), model.unfitted()
    resources = Resources(cpus=1, gpus=1 if model.device == "cuda" else 0)
    classes = None if model.classes_ is None else model.classes_.tolist()
    failure: TaskFailed | TaskCancelled | None = None
    for attempt in range(ctx.retries + 1):
        out = start.with_name(f"epoch-{epoch}-attempt-{attempt}.pt")
        with rendezvous(model.timeout_s) as port:
            jobs = [RankJob(spec, r, world, port, shard.path, str(start), str(out), steps, classes,
                            seed_for(ctx.seed, _EPOCH_KEY, epoch, r),
                            seed_for(ctx.seed, _TORCH_KEY, epoch, r)) for r, shard in enumerate(shards)]
            tasks = [Task(ddp_rank, (job,), name=f"epoch {epoch} rank {job.rank}", resources=resources)
                     for job in jobs]
            try:
                # fail fast: the first failure cancels (kills) the other ranks, which would only
                # wait for the dead peer until the group's timeout
                return ctx.executor.map(tasks), out, attempt + 1
            except (TaskFailed, TaskCancelled) as exc:
                failure = exc
    assert failure is not None
    raise failure


def run_ddp(ctx: Context, model: TorchModel, shards: Sequence[Shard], epochs: int, first_epoch: int = 0
            ) -> tuple[TorchModel, dict[str, float]]:
    """Train epochs `first_epoch` .. `epochs - 1` from `model` (its state, if trained); model, metrics.

    Raises:
        InvalidArgument: torch is missing, the executor runs fewer tasks at once than there are
            ranks, or the network does not fit the data.
        TaskFailed: an epoch failed on every attempt.
    """
    tch()  # say how to install torch before any work
    if ctx.executor.workers < len(shards):
        raise InvalidArgument(f"ddp runs its {len(shards)} ranks at once but the executor has "
                              f"{ctx.executor.workers} workers; open it with workers>={len(shards)}")
    if model.state_ is None:
        classes = np.unique(ctx.data.y) if model.task == "classification" else None
        model = _initial(ctx, model, classes)
    steps = max(1, math.ceil(min(s.rows for s in shards) / model.batch_size))
    scratch = ctx.spill.root / "ddp"
    scratch.mkdir(exist_ok=True)
    loss = math.nan
    for epoch in range(first_epoch, epochs):
        began = time.perf_counter()
        start = scratch / f"epoch-{epoch}-start.pt"
        assert model.state_ is not None
        save_state(start, model.state_, model.optimizer_state_, model.classes_)
        results, out, attempts = _epoch(ctx, model, shards, epoch, steps, start)
        model = model.with_state(load_state(out))
        loss = results[0].loss
        stepped = {"train_loss": loss, "epoch_seconds": time.perf_counter() - began,
                   "slowest_rank_seconds": max(r.seconds for r in results), "epoch_attempts": float(attempts)}
        ctx.run.log_metrics(stepped, step=epoch)
        ctx.stepped.update(stepped)
        save_checkpoint(ctx.run.store, ctx.run.id, model,
                        {"epoch": epoch, "epochs": epochs, "seed": ctx.seed,
                         "rng": {"derivation": "seed_for(seed, 2|4, epoch, rank)", "next_epoch": epoch + 1}})
        ctx.progress("epoch", epoch + 1, epochs, train_loss=loss)
        for stale in (start, out):
            stale.unlink(missing_ok=True)
    metrics = {"train_score": ctx.score(model), "epochs_run": float(max(0, epochs - first_epoch))}
    if not math.isnan(loss):
        metrics["train_loss"] = loss
    return model, metrics
