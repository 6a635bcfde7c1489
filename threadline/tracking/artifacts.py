"""Run artifacts as data commits: repo `tl-artifacts`, one branch per run, named by its id.

Each `log_artifacts` call commits onto the run's branch with `update=True`, so the tree grows
with every call, and the content store de-duplicates: the same model file logged by two runs
is stored once. The commit is recorded in lineage as `run -[produced]-> data_commit`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from threadline.data.checkout import checkout
from threadline.data.paths import normalize_path
from threadline.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from threadline.tracking.model import run_node

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.manifest import Manifest
    from threadline.tracking.store import TrackingStore

ARTIFACT_REPO = "tl-artifacts"
_RETRIES = 3


def _ensure_branch(store: TrackingStore, run_id: str) -> None:
    repos = store.repos
    with contextlib.suppress(AlreadyExists):  # made by an earlier run, or a concurrent one
        repos.create(ARTIFACT_REPO, "artifacts of tracked runs (one branch per run id)")
    if run_id not in repos.get(ARTIFACT_REPO).branches:
        with contextlib.suppress(AlreadyExists):  # a concurrent first call of the same run
            repos.branch(ARTIFACT_REPO, run_id)


def log_artifacts(store: TrackingStore, run_id: str, local: Path, artifact_path: str = "") -> str:
    """Commit a file (under its own name) or a folder's contents under `artifact_path`."""
    info = store.get_run(run_id).info
    if info.lifecycle_stage != "active":
        raise InvalidArgument(f"run {run_id} is deleted; restore it before logging artifacts")
    if not local.exists():
        raise NotFound(f"cannot log artifact {local}: no such file or folder")
    prefix = normalize_path(artifact_path, allow_root=True)
    _ensure_branch(store, run_id)
    for attempt in range(_RETRIES):
        try:
            result = store.repos.commit(
                f"{ARTIFACT_REPO}@{run_id}", [local], f"artifacts of run {run_id}",
                prefix=prefix, update=True, produced_by=run_node(run_id),
                metadata={"run_id": run_id},
            )
            break
        except Conflict:  # another thread of the same run committed first: add on top of it
            if attempt == _RETRIES - 1:
                raise
    if result.commit.id != info.artifact_commit:
        store.set_artifact_commit(run_id, result.commit.id)
    return result.commit.id


def _manifest(store: TrackingStore, run_id: str) -> tuple[str | None, Manifest | None]:
    commit_id = store.get_run(run_id).info.artifact_commit
    if commit_id is None:
        return None, None
    commit = store.repos.resolve(f"{ARTIFACT_REPO}@{commit_id}").require_commit()
    return commit_id, store.repos.manifest(commit)


def list_artifacts(store: TrackingStore, run_id: str, path: str = "") -> list[dict[str, Any]]:
    """Entries directly inside folder `path` ({"path", "is_dir", "size"}; size None for folders).

    A `path` naming a file lists that file alone.
    """
    norm = normalize_path(path, allow_root=True)
    _commit, manifest = _manifest(store, run_id)
    if manifest is None:
        return []
    single = manifest.get(norm) if norm else None
    if single is not None:
        return [{"path": single.path, "is_dir": False, "size": single.size}]
    found: dict[str, dict[str, Any]] = {}
    start = f"{norm}/" if norm else ""
    for entry in manifest.under(norm):
        head, sep, _rest = entry.path[len(start):].partition("/")
        child = start + head
        if sep:
            found.setdefault(child, {"path": child, "is_dir": True, "size": None})
        else:
            found[child] = {"path": child, "is_dir": False, "size": entry.size}
    return [found[k] for k in sorted(found)]


def download_artifacts(store: TrackingStore, run_id: str, path: str, dst: Path) -> Path:
    """Write artifact `path` into folder `dst`: a file lands as `dst/NAME`, a folder as
    `dst/NAME/...`, the root (`""`) as the whole tree under `dst`. Returns that local path."""
    norm = normalize_path(path, allow_root=True)
    commit_id, manifest = _manifest(store, run_id)
    if manifest is None or (norm and manifest.get(norm) is None and not manifest.is_dir(norm)):
        raise NotFound(f"run {run_id} has no artifact {path!r}; `threadline runs show {run_id}` "
                       "lists its artifacts")
    name = norm.rpartition("/")[2]
    target = dst if not norm or manifest.get(norm) is not None else dst / name
    checkout(store.repos, f"{ARTIFACT_REPO}@{commit_id}:{norm}", target, force=True)
    return dst / name if norm else dst


def read_artifact(store: TrackingStore, run_id: str, path: str) -> bytes:
    """The bytes of the artifact file `path` (hash-verified by the content store)."""
    norm = normalize_path(path)
    _commit, manifest = _manifest(store, run_id)
    entry = manifest.get(norm) if manifest is not None else None
    if entry is None:
        if manifest is not None and manifest.is_dir(norm):
            raise InvalidArgument(f"artifact {path!r} of run {run_id} is a folder; read a file in it")
        raise NotFound(f"run {run_id} has no artifact {path!r}")
    return store.repos.content.read_file(entry.stored)
