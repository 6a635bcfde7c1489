"""Stand-ins for the few tracking operations MLflow's API has and `TrackingStore` lacks yet.

Deleting a run tag and an experiment tag. They belong in `threadline.tracking.store`
(`TrackingStore.delete_tag(run_id, key)` and `TrackingStore.delete_experiment_tag(experiment_id,
key)`); until they exist there, these functions do the same in one transaction each, with the
same checks and messages, through the tracking layer's table objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete

from threadline.errors import InvalidArgument, NotFound
from threadline.meta.models import ExperimentRow, RunRow
from threadline.tracking.model import ACTIVE, RESERVED_PREFIX, check_key, now_ms
from threadline.tracking.search import TAGS

if TYPE_CHECKING:
    from threadline.tracking.store import TrackingStore


def delete_run_tag(store: TrackingStore, run_id: str, key: str) -> None:
    """Remove tag `key` from a run; NotFound when the run or the tag does not exist."""
    check_key(key, "tag key")
    if key.startswith(RESERVED_PREFIX):
        raise InvalidArgument(f"tag key {key!r} is reserved for Threadline")
    with store.db.session() as session, session.begin():
        row = session.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist; `threadline runs list` shows runs")
        if row.lifecycle_stage != ACTIVE:
            raise InvalidArgument(f"run {run_id} is deleted; restore it before changing its tags")
        gone = session.execute(delete(TAGS).where(TAGS.c.run_id == run_id, TAGS.c.key == key))
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"run {run_id} has no tag {key!r}")


def delete_experiment_tag(store: TrackingStore, experiment_id: int, key: str) -> None:
    """Remove tag `key` from an experiment; NotFound when either does not exist."""
    with store.db.session() as session, session.begin():
        row = session.get(ExperimentRow, experiment_id)
        if row is None:
            raise NotFound(f"experiment {experiment_id} does not exist")
        tags = dict(row.tags or {})
        if key not in tags:
            raise NotFound(f"experiment {experiment_id} has no tag {key!r}")
        del tags[key]
        row.tags, row.updated_at = tags, now_ms()
