"""What every strategy works with: the executor, the run, the shards' scratch folder, progress.

Strategies run on the driver; only `Task`s built from module-level functions go to workers,
and workers never touch the metadata database: child runs are written here, by the driver,
as results come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.tracking.model import FINISHED, Metric, now_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from threadline.compute.base import Executor
    from threadline.tracking.active import ActiveRun
    from threadline.train.shards import Spill, TrainData

__all__ = ["Context", "Progress", "ShardInfo"]

#: rows of the training data the driver scores the model on after each epoch
EVAL_ROWS = 20_000


@dataclass(frozen=True)
class Progress:
    """One progress event: `stage` is "shards", "epoch" or "trials"; `done` of `total`."""

    stage: str
    done: int
    total: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardInfo:
    """What one shard (or trial) contributed: its rows, fit seconds and child run."""

    index: int
    rows: int
    seconds: float
    run_id: str = ""


@dataclass
class Context:
    """The driver-side state of one training run."""

    executor: Executor
    run: ActiveRun
    data: TrainData
    spill: Spill
    seed: int
    workers: int
    classifier: bool
    on_progress: Callable[[Progress], None] | None = None
    retries: int = 2
    #: metrics logged per step (epoch) already: the final summary does not log them again
    stepped: set[str] = field(default_factory=set)
    _eval: tuple[np.ndarray, np.ndarray] | None = None

    def progress(self, stage: str, done: int, total: int, **detail: Any) -> None:
        """Report progress to the caller (the CLI draws it live)."""
        if self.on_progress is not None:
            self.on_progress(Progress(stage, done, total, detail))

    def child_run(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                  steps: Mapping[str, list[float]] | None = None) -> str:
        """Record a finished child run of this run (a shard, a trial) in one go; returns its id."""
        store = self.run.store
        info = store.create_run(self.run.info.experiment_id, name=name, parent_id=self.run.id)
        ts = now_ms()
        points = [Metric(k, float(v), ts, 0) for k, v in metrics.items()]
        for key, values in (steps or {}).items():
            points += [Metric(key, float(v), ts, step) for step, v in enumerate(values)]
        store.finish_run(info.id, FINISHED, metrics=points,
                         params={k: str(v) for k, v in params.items()})
        return info.id

    def eval_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """A fixed sample of the training rows to score models on (at most EVAL_ROWS)."""
        if self._eval is None:
            rows = self.data.rows
            pick = np.random.default_rng(self.seed).choice(rows, min(rows, EVAL_ROWS), replace=False)
            pick.sort()
            self._eval = (self.data.X[pick], self.data.y[pick])
        return self._eval

    def score(self, model: Any) -> float:
        """The model's default score (accuracy, R^2; k-means: minus inertia) on the eval sample."""
        X, y = self.eval_sample()
        return float(model.score(X, y))
