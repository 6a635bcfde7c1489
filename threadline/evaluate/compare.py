"""Champion/challenger: the paired bootstrap difference of each metric, and a verdict.

Both models predict the same rows; each replicate resamples those rows once and scores both
models on that one sample. The difference per replicate (challenger - champion) then carries
only the models' disagreement, not the luck of the draw, so its interval is much tighter than
comparing two separate intervals. A verdict is "within noise" whenever the interval holds 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadline.evaluate.bootstrap import LEVEL, REPLICATES, Interval, interval, replicate
from threadline.evaluate.metrics import LOWER_IS_BETTER, point

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from threadline.evaluate.metrics import Predictions

CHALLENGER_BETTER = "challenger better"
CHAMPION_BETTER = "champion better"
WITHIN_NOISE = "within noise"


@dataclass(frozen=True)
class MetricComparison:
    """One metric of both models, their difference (challenger - champion) and the verdict."""

    metric: str
    champion: float | None
    challenger: float | None
    difference: float | None
    interval: Interval
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"metric": self.metric, "champion": self.champion, "challenger": self.challenger,
                "difference": self.difference, "interval": self.interval.to_dict(),
                "verdict": self.verdict,
                "lower_is_better": self.metric in LOWER_IS_BETTER}


def verdict(metric: str, difference: Interval) -> str:
    """Which model is better on `metric`, given the interval of challenger - champion."""
    if difference.contains(0.0) or difference.low is None:
        return WITHIN_NOISE
    improved = difference.low > 0
    if metric in LOWER_IS_BETTER:
        improved = not improved
    return CHALLENGER_BETTER if improved else CHAMPION_BETTER


def compare(champion: Predictions, challenger: Predictions, *, replicates: int = REPLICATES,
            seed: int = 0, level: float = LEVEL) -> list[MetricComparison]:
    """Compare two models' predictions of the same rows, metric by metric."""
    samples = replicate([champion, challenger], replicates, seed)
    return from_samples(point(champion), point(challenger), samples[0], samples[1], level)


def from_samples(champion: Mapping[str, float | None], challenger: Mapping[str, float | None],
                 champion_samples: Mapping[str, np.ndarray],
                 challenger_samples: Mapping[str, np.ndarray],
                 level: float = LEVEL) -> list[MetricComparison]:
    """Comparisons from both models' point metrics and their metrics on shared replicates.

    Only metrics both models have are compared (log loss needs both to give probabilities).
    """
    out = []
    for metric in (k for k in champion if k in challenger):
        diff = interval(challenger_samples[metric] - champion_samples[metric], level)
        a, b = champion[metric], challenger[metric]
        out.append(MetricComparison(metric, a, b, None if a is None or b is None else b - a,
                                    diff, verdict(metric, diff)))
    return out
