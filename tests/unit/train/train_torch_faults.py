"""A torch network that kills or hangs its worker on purpose, once, mid-epoch, for the DDP retry tests.

It lives in an importable module (not a test file) because workers import the factory by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from threadline.train.torch_nets import mlp


class CrashingNet(torch.nn.Module):
    """An MLP whose rank `rank` exits (or hangs) at its `step`-th forward pass while `flag` exists."""

    def __init__(self, flag: str, rank: int, step: int, hang: bool, **params: Any) -> None:
        super().__init__()
        self.net = mlp(**params)
        self.flag, self.rank, self.step, self.hang, self.calls = flag, rank, step, hang, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        flag = Path(self.flag) if self.flag else None
        if (self.calls == self.step and flag is not None and flag.exists() and dist.is_initialized()
                and dist.get_rank() == self.rank):
            flag.unlink()
            if self.hang:
                time.sleep(3600)  # a stuck rank: its peers time out, the driver kills this worker
            os._exit(17)  # a crash, not an exception: the executor sees a dead worker
        out: torch.Tensor = self.net(x)
        return out


def crashing_mlp(crash_flag: str = "", crash_rank: int = 1, crash_step: int = 3, hang: bool = False,
                 **params: Any) -> CrashingNet:
    """The factory: `TorchModel("train_torch_faults:crashing_mlp", params={"crash_flag": ..., ...})`."""
    return CrashingNet(crash_flag, crash_rank, crash_step, hang, **params)
