"""What the registry needs from tracking: a run's inputs and metrics, and its artifacts.

Written as a Protocol so the registry can be given any tracking store (a test can give a
small in-memory one); `open_tracking` builds the real `TrackingStore`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos


class RunSource(Protocol):
    """The part of `threadline.tracking.store.TrackingStore` the registry uses."""

    def get_run(self, run_id: str) -> Any:
        """The run: `.info.id`, `.metrics` (key -> Metric), `.inputs` ([{repo, commit, ref}])."""

    def download_artifacts(self, run_id: str, path: str, dst: Path) -> Path:
        """Copy the run's artifact file or folder `path` under `dst`; return where it is."""

    def list_artifacts(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        """The files and folders directly inside `path` of the run's artifacts."""


def open_tracking(repos: DataRepos) -> RunSource:
    """The tracking store of the same home."""
    store: RunSource = TrackingStore(repos)
    return store


def run_metrics(run: Any) -> dict[str, float | None]:
    """A run's latest metric values, key -> value."""
    out: dict[str, float | None] = {}
    for key, metric in dict(run.metrics).items():
        value = None if metric.value is None else float(metric.value)
        out[str(key)] = None if value is None or math.isnan(value) else value  # JSON has no NaN
    return out


def run_inputs(run: Any) -> list[dict[str, Any]]:
    """A run's recorded inputs: [{"repo", "commit", "ref"}]."""
    return [dict(i) for i in (run.inputs or [])]
