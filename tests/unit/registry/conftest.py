"""Registry fixtures: a registry on the test home, small fitted models and their data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.registry import ModelRegistry

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


@pytest.fixture
def registry(home: DataRepos) -> ModelRegistry:
    """A ModelRegistry on the test's fresh home."""
    return ModelRegistry(home)


@pytest.fixture
def xy() -> tuple[Any, Any]:
    """A small separable binary classification problem (features, labels)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    labels = (features[:, 0] + 0.2 * features[:, 1] > 0).astype(int)
    return features, labels


@pytest.fixture
def classifier(xy: tuple[Any, Any]) -> Any:
    """A fitted scikit-learn logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(*xy)
