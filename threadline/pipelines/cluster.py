"""A Ray executor for running a pipeline on a cluster: its steps' code shipped, its engines checked.

`run_pipeline(..., executor="ray")` starts a private local cluster. To use a running cluster,
open the executor here and pass it in (the caller shuts it down):

    with open_cluster_executor(spec, settings, "10.0.0.5:6379") as pool:
        run_pipeline(spec, settings, repos, executor=pool)

What ships is the project folder the steps import from (for a YAML pipeline: the folder of
the file, so the scripts its commands run ship too); see `threadline.compute.cluster`. A
worker imports a Python step by module name, and on another machine only the shipped copy
has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.compute import open_executor
from threadline.compute.cluster import check_reachable, code_runtime_env

if TYPE_CHECKING:
    from collections.abc import Mapping

    from threadline.compute import Executor
    from threadline.config import Settings
    from threadline.pipelines.spec import PipelineSpec

__all__ = ["open_cluster_executor", "pipeline_runtime_env"]


def pipeline_runtime_env(spec: PipelineSpec, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Ray runtime_env shipping the code `spec`'s steps run, with the user's `extra` on top."""
    modules = [step.target.partition(":")[0] for step in spec.steps if step.kind == "python"]
    if spec.source.get("kind") == "module":
        modules.append(spec.source["module"])
    base = spec.source.get("base") if spec.source.get("kind") == "yaml" else None
    return code_runtime_env(modules, folder=Path(base) if base else None, extra=extra)


def open_cluster_executor(
    spec: PipelineSpec,
    settings: Settings,
    address: str | None,
    *,
    workers: int | None = None,
    ship_code: bool = True,
    runtime_env: Mapping[str, Any] | None = None,
    shared_filesystem: bool = False,
) -> Executor:
    """Check the engines, then connect to the cluster at `address` shipping the pipeline's code.

    Args:
        spec: the pipeline to run.
        settings: the home it runs in; its database and store must be reachable from every
            node (see `check_reachable`).
        address: the cluster ("host:6379", "ray://host:10001", "auto"); None starts a local one.
        workers: CPU slots used at once (default: every CPU of the cluster).
        ship_code: upload the project code (default); off when the nodes have it installed.
        runtime_env: the user's own Ray runtime_env (e.g. `{"pip": [...]}`), merged in.
        shared_filesystem: every node mounts the home at the same path: skip the engine check.

    Raises:
        InvalidArgument: a SQLite database or local-folder store with a cluster that may span
            machines (before connecting), or the cluster cannot be reached.
    """
    check_reachable(settings, address, shared_filesystem=shared_filesystem)
    env = pipeline_runtime_env(spec, runtime_env) if ship_code else dict(runtime_env or {})
    return open_executor("ray", workers=workers, address=address, runtime_env=env)
