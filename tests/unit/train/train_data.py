"""Generated training problems shared by the training tests (an importable module, unique name)."""

from __future__ import annotations

import numpy as np


def blobs(rows: int = 2000, features: int = 5, classes: int = 3, seed: int = 0,
          spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A classification problem: Gaussian blobs around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, features))
    y = rng.integers(classes, size=rows)
    return centres[y] + rng.normal(scale=spread, size=(rows, features)), y


def linear(rows: int = 2000, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A regression problem: a linear function plus a little noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    return X, X @ rng.normal(size=features) + 0.5 + rng.normal(scale=0.1, size=rows)
