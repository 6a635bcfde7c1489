"""Experiment tracking: runs, params, metric series, tags, artifacts and inputs, in lineage."""

from threadline.tracking.active import (
    ActiveRun,
    active_run,
    end_run,
    flush,
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
)
from threadline.tracking.model import Experiment, Metric, Run, RunInfo
from threadline.tracking.store import TrackingStore

__all__ = [
    "ActiveRun",
    "Experiment",
    "Metric",
    "Run",
    "RunInfo",
    "TrackingStore",
    "active_run",
    "end_run",
    "flush",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "start_run",
]
