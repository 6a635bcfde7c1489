"""Experiments: named groups of runs, created on first use, renamed, deleted and restored.

Like MLflow, deleting an experiment hides its runs too, and restoring brings them back; the
"Default" experiment, where runs go when none is named, cannot be deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from threadline.errors import AlreadyExists, InvalidArgument, NotFound
from threadline.meta.models import ExperimentRow, RunRow
from threadline.tracking.model import (
    ACTIVE,
    DEFAULT_EXPERIMENT,
    DELETED,
    MAX_NAME,
    MAX_TAG_VALUE,
    VIEWS,
    Experiment,
    check_key,
    check_value,
    now_ms,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from threadline.meta.db import Database


def _experiment(row: ExperimentRow) -> Experiment:
    return Experiment(row.id, row.name, row.lifecycle_stage, dict(row.tags or {}), row.created_at,
                      row.updated_at)


class ExperimentStore:
    """The experiment half of `TrackingStore` (which adds runs); needs `self.db`."""

    db: Database

    def experiment(self, name: str = DEFAULT_EXPERIMENT, *, create: bool = True) -> Experiment:
        """The experiment called `name`, created if missing (unless `create` is False)."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidArgument(f"invalid experiment name {name!r}: use 1-{MAX_NAME} characters")
        with self.db.session() as session:
            row = session.scalar(select(ExperimentRow).where(ExperimentRow.name == name))
            if row is not None:
                return _experiment(row)
        if not create:
            raise NotFound(f"experiment {name!r} does not exist; `threadline runs experiments` "
                           "lists them")
        now = now_ms()
        try:
            with self.db.session() as session, session.begin():
                session.add(ExperimentRow(name=name, tags={}, created_at=now, updated_at=now))
        except DBIntegrityError:  # another process created it first: use theirs
            pass
        return self.experiment(name, create=False)

    def _experiment_row(self, session: Session, experiment_id: int) -> ExperimentRow:
        row = session.get(ExperimentRow, experiment_id)
        if row is None:
            raise NotFound(f"experiment {experiment_id} does not exist; `threadline runs "
                           "experiments` lists them")
        return row

    def get_experiment(self, experiment_id: int) -> Experiment:
        """One experiment by id."""
        with self.db.session() as session:
            return _experiment(self._experiment_row(session, experiment_id))

    def list_experiments(self, view: str = "active") -> list[Experiment]:
        """Experiments in `view` ("active", "deleted" or "all"), oldest first."""
        if view not in VIEWS:
            raise InvalidArgument(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
        with self.db.session() as session:
            rows = session.scalars(select(ExperimentRow).where(
                ExperimentRow.lifecycle_stage.in_(VIEWS[view])).order_by(ExperimentRow.id))
            return [_experiment(r) for r in rows]

    def rename_experiment(self, experiment_id: int, new_name: str) -> Experiment:
        """Give an experiment a new, unused name."""
        if not isinstance(new_name, str) or not new_name.strip() or len(new_name) > MAX_NAME:
            raise InvalidArgument(f"invalid experiment name {new_name!r}: use 1-{MAX_NAME} characters")
        try:
            with self.db.session() as session, session.begin():
                row = self._experiment_row(session, experiment_id)
                row.name, row.updated_at = new_name, now_ms()
        except DBIntegrityError as exc:
            raise AlreadyExists(f"an experiment named {new_name!r} exists already") from exc
        return self.get_experiment(experiment_id)

    def _set_experiment_stage(self, experiment_id: int, stage: str) -> None:
        # Like MLflow, deleting an experiment hides its runs too, and restoring brings them back.
        old = DELETED if stage == ACTIVE else ACTIVE
        with self.db.session() as session, session.begin():
            row = self._experiment_row(session, experiment_id)
            if experiment_id == self._default_id(session) and stage == DELETED:
                raise InvalidArgument(f"the {DEFAULT_EXPERIMENT!r} experiment cannot be deleted")
            row.lifecycle_stage, row.updated_at = stage, now_ms()
            session.execute(update(RunRow).where(RunRow.experiment_id == experiment_id,
                                                 RunRow.lifecycle_stage == old)
                            .values(lifecycle_stage=stage))

    def _default_id(self, session: Session) -> int | None:
        return session.scalar(select(ExperimentRow.id).where(ExperimentRow.name == DEFAULT_EXPERIMENT))

    def delete_experiment(self, experiment_id: int) -> None:
        """Mark an experiment and its runs deleted (hidden from the active view)."""
        self._set_experiment_stage(experiment_id, DELETED)

    def restore_experiment(self, experiment_id: int) -> None:
        """Undo `delete_experiment`."""
        self._set_experiment_stage(experiment_id, ACTIVE)

    def set_experiment_tag(self, experiment_id: int, key: str, value: str) -> None:
        """Set one tag of an experiment."""
        text = check_value(check_key(key, "tag key"), value, MAX_TAG_VALUE, "tag")
        with self.db.session() as session, session.begin():
            row = self._experiment_row(session, experiment_id)
            row.tags = {**(row.tags or {}), key: text}
            row.updated_at = now_ms()

    def delete_experiment_tag(self, experiment_id: int, key: str) -> None:
        """Remove tag `key` from an experiment (MLflow's `delete-experiment-tag`).

        Raises:
            InvalidArgument: `key` is not a valid tag key.
            NotFound: the experiment does not exist, or has no tag `key`.
        """
        check_key(key, "tag key")
        with self.db.session() as session, session.begin():
            row = self._experiment_row(session, experiment_id)
            tags = dict(row.tags or {})
            if key not in tags:
                raise NotFound(f"experiment {experiment_id} ({row.name!r}) has no tag {key!r}; "
                               f"its tags are: {', '.join(sorted(tags)) or 'none'}")
            del tags[key]
            # a new dict, so the JSON column sees the change
            row.tags, row.updated_at = tags, now_ms()
