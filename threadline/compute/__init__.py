"""Executors: the only place that knows how work is shipped to workers (local processes or Ray)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.compute.base import Executor, Resources, Task, TaskHandle
from threadline.compute.errors import TaskCancelled, TaskFailed, TaskTimeout
from threadline.compute.local import LocalExecutor
from threadline.compute.ray_executor import RayExecutor
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "KINDS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "Resources",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskTimeout",
    "open_executor",
]

#: the executor kinds `open_executor` knows; "ray" is loaded only when asked for (an extra)
KINDS = ("local", "ray")


def open_executor(kind: str = "local", *, workers: int | None = None, address: str | None = None,
                  preload: Sequence[str] = (), runtime_env: Mapping[str, Any] | None = None) -> Executor:
    """Open an executor by name.

    Args:
        kind: "local" (a process pool on this machine) or "ray" (a Ray cluster).
        workers: CPU slots used at once; default: every CPU of the machine or cluster.
        address: the Ray cluster to connect to; None starts a local one. Only for "ray".
        preload: modules local workers start with already imported (see `LocalExecutor`).
        runtime_env: Ray's runtime_env for the job (code to ship, pip packages; see
            `threadline.compute.cluster.code_runtime_env`). Only for "ray".

    Raises:
        InvalidArgument: an unknown kind, an address or runtime_env for "local", or "ray"
            without Ray installed.
    """
    if kind == "local":
        if address is not None:
            raise InvalidArgument(f"the local executor takes no address (got {address!r}); use kind='ray'")
        if runtime_env:
            raise InvalidArgument("the local executor takes no runtime_env (a Ray option); use kind='ray'")
        return LocalExecutor(workers, preload=preload)
    if kind == "ray":
        # RayExecutor imports Ray when constructed, so this module stays light without it
        options = {"runtime_env": dict(runtime_env)} if runtime_env else None
        return RayExecutor(address, workers, init_options=options)
    raise InvalidArgument(f"unknown executor kind {kind!r}; choose one of {', '.join(KINDS)}")
