"""Parallel training: shard-and-combine, synchronous data parallelism, torch DDP and parallel search."""

from threadline.train.context import Progress, ShardInfo
from threadline.train.fit import STRATEGIES, TrainResult, fit, resume
from threadline.train.torch_model import TorchModel

__all__ = ["STRATEGIES", "Progress", "ShardInfo", "TorchModel", "TrainResult", "fit", "resume"]
