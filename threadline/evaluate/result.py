"""`EvaluationResult`: what an evaluation found, as returned, stored (`evaluation.json`), shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.evaluate.bootstrap import Interval
    from threadline.evaluate.compare import MetricComparison
    from threadline.evaluate.slices import SliceMetrics

#: the format id written into `evaluation.json`, so readers can dispatch on it
FORMAT = "threadline.evaluation/1"


@dataclass(frozen=True)
class ModelInfo:
    """The model version evaluated: its URI as given and what it resolved to."""

    uri: str
    name: str
    version: int
    flavor: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"uri": self.uri, "name": self.name, "version": self.version, "flavor": self.flavor}


@dataclass(frozen=True)
class DataInfo:
    """The evaluation table: the ref as given and the commit it resolved to."""

    ref: str
    repo: str
    commit: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ref": self.ref, "repo": self.repo, "commit": self.commit, "path": self.path}


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics with confidence intervals, diagnostics, slices and the comparison, if any.

    `model` is the evaluated model (the challenger when `against` names a champion);
    `comparison` holds challenger - champion per metric with a verdict.
    """

    model: ModelInfo
    data: DataInfo
    target: str
    task: str
    rows: int
    seed: int
    replicates: int
    created_at: str
    metrics: dict[str, float | None]
    intervals: dict[str, Interval]
    diagnostics: dict[str, Any]
    slices: list[SliceMetrics] = field(default_factory=list)
    against: ModelInfo | None = None
    against_metrics: dict[str, float | None] = field(default_factory=dict)
    comparison: list[MetricComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the content of `evaluation.json`)."""
        return {
            "format": FORMAT,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "target": self.target,
            "task": self.task,
            "rows": self.rows,
            "seed": self.seed,
            "replicates": self.replicates,
            "created_at": self.created_at,
            "metrics": dict(self.metrics),
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "diagnostics": self.diagnostics,
            "slices": [s.to_dict() for s in self.slices],
            "against": self.against.to_dict() if self.against else None,
            "against_metrics": dict(self.against_metrics),
            "comparison": [c.to_dict() for c in self.comparison],
            "notes": list(self.notes),
            "run_id": self.run_id,
        }
