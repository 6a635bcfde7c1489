"""A Ray executor for running a pipeline on a cluster: its steps' code shipped, its engines checked.

`run_pipeline(..., executor="ray")` starts a private local cluster. To use a running cluster,
open the executor here and pass it in (the caller shuts it down):

    with open_cluster_executor([spec], settings, "head.example:6379") as pool:
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
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from threadline.compute import Executor
    from threadline.config import Settings
    from threadline.pipelines.spec import PipelineSpec

__all__ = ["open_cluster_executor", "pipeline_runtime_env"]


def pipeline_runtime_env(specs: Sequence[PipelineSpec],
                         extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Ray runtime_env shipping the code the steps of `specs` run, with the user's `extra` on top.

    Pipelines of one YAML file ship its folder (with the scripts their commands run); Python
    pipelines ship the folder of their modules.
    """
    modules: list[str] = []
    bases: set[str] = set()
    for spec in specs:
        modules += [step.target.partition(":")[0] for step in spec.steps if step.kind == "python"]
        if spec.source.get("kind") == "module":
            modules.append(spec.source["module"])
        if spec.source.get("kind") == "yaml" and spec.source.get("base"):
            bases.add(str(spec.source["base"]))
    if len(bases) > 1:
        raise InvalidArgument(f"these pipelines come from YAML files in several folders "
                              f"({', '.join(sorted(bases))}); a Ray job ships one project folder: "
                              "run them from one folder")
    return code_runtime_env(modules, folder=Path(bases.pop()) if bases else None, extra=extra)


def open_cluster_executor(
    specs: Sequence[PipelineSpec],
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
        specs: the pipelines to run (their code ships).
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
    env = pipeline_runtime_env(specs, runtime_env) if ship_code else dict(runtime_env or {})
    return open_executor("ray", workers=workers, address=address, runtime_env=env)
