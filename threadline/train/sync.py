"""Synchronous data parallelism for `partial_fit` learners, with a checkpoint every epoch.

Each epoch every worker takes the current global model, makes one `partial_fit` pass over
its shard (rows shuffled with a seed derived from the run's seed, the epoch and the shard),
and sends the model back; the driver averages coefficients and intercepts weighted by shard
rows and advances the learning-rate counter `t_` by every row seen, as one process would.
The averaged model is checkpointed into the run (model, epoch, seed) before the next epoch.

Every random choice derives from (seed, epoch, shard), so the seed and the epoch number are
the whole RNG state: a retried shard (its worker died) recomputes the identical update, and
a resumed run continues exactly where the interrupted one stopped.

Naive Bayes statistics are sums, not parameters to average: one pass over the shards merged
exactly (the combine rule) is already the single-process model, so they take one epoch.

Mini-batch k-means: the driver seeds the centroids from a sample (one `partial_fit`), so every
worker starts from the same, aligned clusters; workers step through their shard in
`batch_size` mini-batches; each centroid is merged as the mean of the workers' centroids
weighted by how many rows each assigned to it this epoch.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.compute.base import Task
from threadline.train import combine as rules
from threadline.train.record import save_checkpoint
from threadline.train.shards import distinct, load_shard, seed_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.train.context import Context
    from threadline.train.shards import Shard

__all__ = ["run_sync", "sync_step"]

_EPOCH_KEY = 2  # seed_for(seed, _EPOCH_KEY, epoch, shard): the shuffle of one shard in one epoch


def sync_step(model: Any, shard_path: str, classes: Any, seed: int) -> tuple[Any, int, float]:
    """Worker side: one partial_fit pass of `model` over a shuffled shard; (model, rows, seconds)."""
    X, y = load_shard(shard_path)
    start = time.perf_counter()
    # Ray hands arguments over as read-only views of its object store; partial_fit writes in place
    model = copy.deepcopy(model)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    if _is_mbk(model):
        size = int(model.batch_size)
        for begin in range(0, len(order), size):
            model.partial_fit(X[np.sort(order[begin:begin + size])])
    elif classes is not None:
        model.partial_fit(X[order], y[order], classes=classes)
    else:
        model.partial_fit(X[order], y[order])
    return model, int(X.shape[0]), time.perf_counter() - start


def _is_nb(model: Any) -> bool:
    return any(c.__name__ in ("GaussianNB", "MultinomialNB") for c in type(model).__mro__)


def _is_mbk(model: Any) -> bool:
    return any(c.__name__ == "MiniBatchKMeans" for c in type(model).__mro__)


def _merge_mbk(previous: Any, parts: Sequence[Any]) -> Any:
    """Centroids weighted by the rows each worker assigned to them this epoch; counts summed."""
    added = np.asarray([p._counts - previous._counts for p in parts])
    total = added.sum(axis=0)
    centers = np.asarray([p.cluster_centers_ for p in parts])
    weights = added / np.where(total == 0, 1, total)
    merged = copy.deepcopy(parts[0])
    moved = (weights[..., None] * centers).sum(axis=0)
    merged.cluster_centers_ = np.where(total[:, None] > 0, moved, previous.cluster_centers_)
    merged._counts = previous._counts + total
    merged.n_steps_ = previous.n_steps_ + sum(p.n_steps_ - previous.n_steps_ for p in parts)
    return merged


def _merge(previous: Any, parts: Sequence[Any], rows: Sequence[int]) -> Any:
    if _is_mbk(previous):
        return _merge_mbk(previous, parts)
    if _is_nb(previous):
        return rules.combine(rules.combiner_for(previous), parts, rows)
    merged = rules.combine("average", parts, rows)
    start = float(getattr(previous, "t_", 1.0))
    if hasattr(merged, "t_"):
        # the learning-rate schedule advances by every row seen, as in one process
        merged.t_ = start + sum(float(p.t_) - start for p in parts)
    return merged


def run_sync(ctx: Context, model: Any, shards: Sequence[Shard], epochs: int, first_epoch: int = 0
             ) -> tuple[Any, dict[str, float]]:
    """Run epochs `first_epoch` .. `epochs - 1` from `model`; returns the model and its metrics."""
    classes = distinct(ctx.data.y) if ctx.classifier else None
    if _is_nb(model):
        epochs = min(epochs, 1)  # exact after one pass; more would count rows twice
    if _is_mbk(model) and not hasattr(model, "cluster_centers_"):
        model.partial_fit(ctx.eval_sample()[0])  # one shared start: the workers' clusters stay aligned
    for epoch in range(first_epoch, epochs):
        began = time.perf_counter()
        fresh = not hasattr(model, "coef_") or _is_nb(model)
        if _is_mbk(model):
            fresh = False
        tasks = [Task(sync_step, (copy.deepcopy(model), shard.path, classes if fresh else None,
                                  seed_for(ctx.seed, _EPOCH_KEY, epoch, i)),
                      name=f"epoch {epoch} shard {i}", retries=ctx.retries)
                 for i, shard in enumerate(shards)]
        results = ctx.executor.map(tasks)
        model = _merge(model, [r[0] for r in results], [r[1] for r in results])
        score = ctx.score(model)
        seconds = time.perf_counter() - began
        stepped = {"train_score": score, "epoch_seconds": seconds,
                   "slowest_shard_seconds": max(r[2] for r in results)}
        ctx.run.log_metrics(stepped, step=epoch)
        ctx.stepped.update(stepped)
        save_checkpoint(ctx.run.store, ctx.run.id, model,
                        {"epoch": epoch, "epochs": epochs, "seed": ctx.seed,
                         "rng": {"derivation": "seed_for(seed, 2, epoch, shard)", "next_epoch": epoch + 1},
                         "t": float(getattr(model, "t_", 0.0))})
        ctx.progress("epoch", epoch + 1, epochs, train_score=score)
    return model, {"train_score": ctx.score(model), "epochs_run": float(max(0, epochs - first_epoch))}
