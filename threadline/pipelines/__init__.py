"""Data-driven pipelines: DAGs of steps whose outputs are commits, re-run exactly when their inputs change."""

from __future__ import annotations

from threadline.pipelines.python_api import Input, Output, Pipeline, step

__all__ = ["Input", "Output", "Pipeline", "step"]

#: what a local worker imports before its first step (the data layer: ~0.3 s), preloaded once
#: into the executor's forkserver
WORKER_MODULES = ("threadline.pipelines.worker",)
