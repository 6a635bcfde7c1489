"""Model files in the data repo `tl-models`, one branch per model.

Each version's folder is committed as the whole tree of the model's branch, so the branch's
history holds every version (reachable for gc) and unchanged files share their chunks in the
content store with the run artifacts they were copied from.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from threadline.data.checkout import checkout
from threadline.errors import AlreadyExists, Conflict

if TYPE_CHECKING:
    from collections.abc import Iterator

    from threadline.data.repos import DataRepos
    from threadline.lineage.graph import Node

MODELS_REPO = "tl-models"
#: how often a commit is retried when another writer moved the model's branch meanwhile
COMMIT_TRIES = 5


class ModelStore:
    """Commit model folders and check them out again.

    Args:
        repos: the data layer.
    """

    def __init__(self, repos: DataRepos) -> None:
        self.repos = repos

    def _ensure_branch(self, name: str) -> None:
        with contextlib.suppress(AlreadyExists):
            self.repos.create(MODELS_REPO, "model files of the registry, one branch per model")
        info = self.repos.get(MODELS_REPO)
        if name not in info.branches:
            with contextlib.suppress(AlreadyExists):
                self.repos.branch(MODELS_REPO, name)

    def commit(self, name: str, folder: Path, message: str, produced_by: Node | None) -> str:
        """Commit `folder` as the tree of branch `name`; returns the commit id."""
        self._ensure_branch(name)
        for attempt in range(COMMIT_TRIES):
            try:
                result = self.repos.commit(f"{MODELS_REPO}@{name}", [folder], message,
                                           produced_by=produced_by, metadata={"model": name})
            except Conflict:
                if attempt == COMMIT_TRIES - 1:
                    raise
                continue
            return result.commit.id
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def fetch(self, commit_id: str) -> Iterator[Path]:
        """Check out a version's files into a temporary folder, removed afterwards."""
        scratch = Path(tempfile.mkdtemp(prefix="tl-model-"))
        try:
            folder = scratch / "model"
            checkout(self.repos, f"{MODELS_REPO}@{commit_id}", folder)
            yield folder
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
