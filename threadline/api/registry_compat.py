"""Stand-ins for registry operations MLflow's API has and `ModelRegistry` lacks yet.

Creating a model without a version, editing its description and tags, renaming and deleting
it, recording a version whose files stay in a run's artifacts (an MLflow model, flavor
`mlflow`), editing and deleting versions. They belong in `threadline.registry`; until they
exist there these functions do the same through the registry's own helpers and rows, each in
one transaction, with the registry's name checks and messages.

A version registered through MLflow keeps its MLflow source URI (`runs:/<run>/<path>` or
`mlflow-artifacts:/<exp>/<run>/artifacts/<path>`) in `artifact_path`, points `artifact_commit`
at the run's artifact commit (so the files are pinned and show in lineage) and is recorded with
flavor `mlflow` and format `mlflow-model`: Threadline's flavors cannot load MLflow's format, so
`threadline models load` refuses it, but MLflow clients download it through the artifact proxy.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from threadline.errors import AlreadyExists, InvalidArgument, NotFound
from threadline.meta.models import AliasLogRow, ModelAliasRow, ModelVersionRow, RegisteredModelRow
from threadline.registry import versions
from threadline.registry.names import ModelRef, check_model_name

if TYPE_CHECKING:
    from threadline.registry.registry import ModelRegistry
    from threadline.tracking.store import TrackingStore

MLFLOW_FLAVOR = "mlflow"
MLFLOW_FORMAT = "mlflow-model"
_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]{32})(?:/(?P<path>.*))?$")
_ARTIFACTS_URI = re.compile(
    r"^mlflow-artifacts:(?://[^/]*)?/(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<path>.*))?$")


def parse_source(source: str) -> tuple[str, str]:
    """(run id, artifact path) of an MLflow model source URI.

    Raises:
        InvalidArgument: the source is not a `runs:/` or this server's `mlflow-artifacts:` URI.
    """
    match = _RUNS_URI.match(source) or _ARTIFACTS_URI.match(source)
    if match is None:
        raise InvalidArgument(
            f"model version source {source!r} is not served here: use runs:/<run_id>/<path> or "
            "mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path> of this server")
    return match["run"], (match["path"] or "").strip("/")


def create_model(registry: ModelRegistry, name: str, description: str, tags: dict[str, str]) -> None:
    """A registered model with no versions yet; AlreadyExists if the name is taken."""
    check_model_name(name)
    stamp = versions.now_ms()
    try:
        with registry.db.session() as session, session.begin():
            session.add(RegisteredModelRow(name=name, description=description, tags=dict(tags),
                                           policy={}, created_at=stamp, updated_at=stamp))
    except DBIntegrityError as exc:
        raise AlreadyExists(f"model {name!r} is registered already") from exc


def update_model(registry: ModelRegistry, name: str, *, description: str | None = None,
                 set_tags: dict[str, str] | None = None, delete_tag: str | None = None) -> None:
    """Change a model's description or tags."""
    with registry.db.session() as session, session.begin():
        row = registry.model_row(session, name)
        if description is not None:
            row.description = description
        tags = dict(row.tags or {})
        tags.update(set_tags or {})
        if delete_tag is not None:
            if delete_tag not in tags:
                raise NotFound(f"model {name!r} has no tag {delete_tag!r}")
            del tags[delete_tag]
        row.tags, row.updated_at = tags, versions.now_ms()


def rename_model(registry: ModelRegistry, name: str, new_name: str) -> None:
    """Give a model a new, unused name (its versions and aliases follow it)."""
    check_model_name(new_name)
    try:
        with registry.db.session() as session, session.begin():
            row = registry.model_row(session, name)
            row.name, row.updated_at = new_name, versions.now_ms()
    except DBIntegrityError as exc:
        raise AlreadyExists(f"model {new_name!r} is registered already") from exc


def delete_model(registry: ModelRegistry, name: str) -> None:
    """Remove a model, its versions, aliases and alias history (the files stay until gc)."""
    with registry.db.session() as session, session.begin():
        row = registry.model_row(session, name)
        for table in (AliasLogRow, ModelAliasRow, ModelVersionRow):
            session.execute(delete(table).where(table.model_id == row.id))
        session.delete(row)


def create_mlflow_version(registry: ModelRegistry, tracking: TrackingStore, name: str, source: str,
                          run_id: str, description: str) -> int:
    """Record an MLflow model a run logged as a new version; returns its number."""
    check_model_name(name)
    source_run, path = parse_source(source)
    if run_id and run_id != source_run:
        raise InvalidArgument(f"run_id {run_id} does not match the run {source_run} of source {source!r}")
    run = tracking.get_run(source_run)
    if run.info.artifact_commit is None or not tracking.list_artifacts(source_run, path):
        raise NotFound(f"run {source_run} has no artifacts at {path!r}; log the model before "
                       "registering it")
    fields = {
        "run_id": source_run, "artifact_commit": run.info.artifact_commit, "artifact_path": source,
        "flavor": MLFLOW_FLAVOR, "format_id": MLFLOW_FORMAT, "artifact_hash": "",
        "signature": {}, "profile": {}, "metrics": {}, "data": [], "description": description,
        "created_by": registry.repos.author,
    }
    with registry.db.session() as session:
        registry.model_row(session, name)  # NotFound unless the model was created first
    row = versions.insert_version(registry.db.session, name, fields, versions.lineage_sources(
        source_run, [], run.info.artifact_commit))
    return row.version


def sources(registry: ModelRegistry, name: str) -> dict[int, str]:
    """version -> the MLflow source URI of each version of a model registered through MLflow."""
    with registry.db.session() as session:
        model = registry.model_row(session, name)
        rows = session.execute(select(ModelVersionRow.version, ModelVersionRow.artifact_path).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.flavor == MLFLOW_FLAVOR))
        return {version: path for version, path in rows}


def update_version(registry: ModelRegistry, name: str, version: int, description: str) -> None:
    """Change a version's description (the only mutable field of a version)."""
    with registry.db.session() as session, session.begin():
        _model, row = registry.version_row(session, ModelRef(name, version=version))
        row.description = description


def delete_version(registry: ModelRegistry, name: str, version: int) -> None:
    """Remove a version and the aliases pointing at it (their history stays)."""
    with registry.db.session() as session, session.begin():
        model, row = registry.version_row(session, ModelRef(name, version=version))
        for alias in session.scalars(select(ModelAliasRow.alias).where(
                ModelAliasRow.model_id == model.id, ModelAliasRow.version == version)).all():
            session.add(AliasLogRow(model_id=model.id, alias=alias, old_version=version,
                                    new_version=None, action="delete", actor=registry.repos.author,
                                    message=f"version {version} deleted", meta={},
                                    created_at=versions.now_ms()))
        session.execute(delete(ModelAliasRow).where(ModelAliasRow.model_id == model.id,
                                                     ModelAliasRow.version == version))
        session.delete(row)
