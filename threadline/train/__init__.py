"""Parallel training: shard-and-combine, synchronous data parallelism and parallel search on the executors."""

from threadline.train.context import Progress, ShardInfo
from threadline.train.fit import STRATEGIES, TrainResult, fit, resume

__all__ = ["STRATEGIES", "Progress", "ShardInfo", "TrainResult", "fit", "resume"]
