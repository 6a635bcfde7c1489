"""An estimator that kills its worker on purpose, once, for the retry tests.

It lives in an importable module (not a test file) because workers unpickle it by reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sklearn.linear_model import SGDClassifier


class CrashingSGD(SGDClassifier):  # type: ignore[misc]
    """SGDClassifier whose partial_fit ends the worker process while `crash_flag` exists (once)."""

    def __init__(self, crash_flag: str = "", *, random_state: Any = None, tol: Any = None) -> None:
        super().__init__(random_state=random_state, tol=tol)
        self.crash_flag = crash_flag

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> Any:
        flag = Path(self.crash_flag) if self.crash_flag else None
        if flag is not None and flag.exists():
            flag.unlink()
            os._exit(17)  # a crash, not an exception: the executor sees a dead worker
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)
