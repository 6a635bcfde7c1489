"""Reference network factories for `TorchModel`, importable by every worker.

    TorchModel("threadline.train.torch_nets:mlp", params={"features": 20, "classes": 2, "hidden": 64})
"""

from __future__ import annotations

from typing import Any

from threadline.errors import InvalidArgument
from threadline.train.libs import tch

__all__ = ["mlp"]


def mlp(features: int, classes: int = 1, hidden: int = 64, layers: int = 1, dropout: float = 0.0) -> Any:
    """A multi-layer perceptron: `layers` hidden layers of `hidden` ReLU units, `classes` outputs.

    Args:
        features: inputs per row.
        classes: outputs: one logit per class, or 1 for regression.
        hidden: units per hidden layer. layers: hidden layers (0: a linear model).
        dropout: dropout after each hidden layer.
    """
    if min(features, classes, hidden) < 1 or layers < 0:
        raise InvalidArgument(f"mlp(features={features}, classes={classes}, hidden={hidden}, "
                              f"layers={layers}): sizes must be >= 1 and layers >= 0")
    nn = tch("torch.nn")
    parts: list[Any] = []
    width = features
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout:
            parts.append(nn.Dropout(dropout))
        width = hidden
    parts.append(nn.Linear(width, classes))
    return nn.Sequential(*parts)
