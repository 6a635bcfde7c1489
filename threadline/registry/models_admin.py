"""Managing registered models and versions: create, describe, tag, rename, delete, and record
versions whose files stay outside the registry.

These are the operations MLflow's registry API has besides registering and aliasing; the
`ModelRegistry` methods of the same names call them. Each runs in one transaction.

An external version (flavor `mlflow`, format `mlflow-model`) is one whose files stay in a run's
artifacts: nothing is copied into tl-models and nothing is loaded. Its `artifact_commit` is the
run's artifact commit (so the files are pinned and appear in lineage), and the URI the files
are read from is kept in the version's `artifact_path` column and shown as
`ModelVersion.external_source`. Threadline's flavors cannot load MLflow's format, so
`load_model` refuses such a version; MLflow clients download it through the artifact proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from threadline.errors import AlreadyExists, InvalidArgument, NotFound
from threadline.lineage.graph import Edge, add_edges
from threadline.meta.models import AliasLogRow, ModelAliasRow, ModelVersionRow, RegisteredModelRow
from threadline.registry import aliases as alias_ops
from threadline.registry import versions
from threadline.registry.names import ModelRef, check_model_name
from threadline.registry.records import ModelVersion, RegisteredModel

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from threadline.registry.registry import ModelRegistry

EXTERNAL_FLAVOR = "mlflow"
EXTERNAL_FORMAT = "mlflow-model"
#: the size of the `artifact_path` column the source is kept in
MAX_SOURCE = 500
#: MLflow's limits on registered-model tags
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 5000
RENAMED = "renamed_to"


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Model tags as a plain dict of strings; a bad key or value is refused, naming it."""
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_TAG_KEY:
            raise InvalidArgument(f"invalid model tag key {key!r}: use 1-{MAX_TAG_KEY} characters")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(f"invalid value for model tag {key!r}: use a string of at most "
                                  f"{MAX_TAG_VALUE} characters")
        out[key] = value
    return out


def check_loadable(version: ModelVersion) -> None:
    """Refuse to load an external version: its files are in a format only MLflow reads."""
    if version.external_source is not None:
        raise InvalidArgument(
            f"{version.uri} is an external {version.flavor!r} model (files at "
            f"{version.external_source}); Threadline cannot load it: load it with MLflow, e.g. "
            f"mlflow.pyfunc.load_model('models:/{version.name}/{version.version}') against "
            "`threadline server`")


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"invalid version {version!r}: give a version number (1, 2, ...)")
    return version


def _model_record(session: Session, row: RegisteredModelRow) -> RegisteredModel:
    latest = session.scalar(select(func.max(ModelVersionRow.version))
                            .where(ModelVersionRow.model_id == row.id))
    return RegisteredModel.from_row(row, alias_ops.aliases_of(session, row.id), latest)


def create_model(registry: ModelRegistry, name: str, description: str = "",
                 tags: Mapping[str, str] | None = None) -> RegisteredModel:
    """See `ModelRegistry.create_model`."""
    check_model_name(name)
    values = check_tags(tags)
    stamp = versions.now_ms()
    try:
        with registry.db.session() as session, session.begin():
            row = RegisteredModelRow(name=name, description=description, tags=values, policy={},
                                     created_at=stamp, updated_at=stamp)
            session.add(row)
            session.flush()
            return RegisteredModel.from_row(row, {}, None)
    except DBIntegrityError as exc:
        raise AlreadyExists(f"model {name!r} is registered already; `threadline models show "
                            f"{name}` shows it") from exc


def update_model(registry: ModelRegistry, name: str, *, description: str | None = None,
                 tags: Mapping[str, str] | None = None) -> RegisteredModel:
    """See `ModelRegistry.update_model`."""
    values = check_tags(tags)
    with registry.db.session() as session, session.begin():
        row = registry.model_row(session, name)
        if description is not None:
            row.description = description
        # a new dict, so the JSON column sees the change
        row.tags, row.updated_at = {**(row.tags or {}), **values}, versions.now_ms()
        return _model_record(session, row)


def delete_model_tag(registry: ModelRegistry, name: str, key: str) -> None:
    """See `ModelRegistry.delete_model_tag`."""
    with registry.db.session() as session, session.begin():
        row = registry.model_row(session, name)
        tags = dict(row.tags or {})
        if key not in tags:
            raise NotFound(f"model {name!r} has no tag {key!r}; its tags are: "
                           f"{', '.join(sorted(tags)) or 'none'}")
        del tags[key]
        row.tags, row.updated_at = tags, versions.now_ms()


def rename_model(registry: ModelRegistry, name: str, new_name: str) -> RegisteredModel:
    """See `ModelRegistry.rename_model`."""
    check_model_name(new_name)
    try:
        with registry.db.session() as session, session.begin():
            row = registry.model_row(session, name)
            if new_name == row.name:
                return _model_record(session, row)
            numbers = session.scalars(select(ModelVersionRow.version)
                                      .where(ModelVersionRow.model_id == row.id)).all()
            # lineage is history and keeps the old node ids; these edges lead from them to the
            # new ones, so walking up from `new/N` still finds the run and data of `old/N`
            add_edges(session, [Edge(versions.version_node(name, n), RENAMED,
                                     versions.version_node(new_name, n)) for n in numbers])
            row.name, row.updated_at = new_name, versions.now_ms()
            session.flush()  # a taken name fails here, inside the try
            return _model_record(session, row)
    except DBIntegrityError as exc:
        raise AlreadyExists(f"cannot rename {name!r} to {new_name!r}: model {new_name!r} is "
                            "registered already; choose another name or delete that model") from exc


def delete_model(registry: ModelRegistry, name: str) -> None:
    """See `ModelRegistry.delete_model`."""
    with registry.db.session() as session, session.begin():
        row = registry.model_row(session, name)
        for table in (AliasLogRow, ModelAliasRow, ModelVersionRow):
            session.execute(delete(table).where(table.model_id == row.id))
        session.delete(row)


def register_external(registry: ModelRegistry, name: str, run_id: str, source: str, *,
                      path: str = "", description: str = "") -> ModelVersion:
    """See `ModelRegistry.register_external`."""
    check_model_name(name)
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE:
        raise InvalidArgument(f"invalid external source {source!r}: give the URI the files are "
                              f"read from (1-{MAX_SOURCE} characters), e.g. runs:/<run_id>/model")
    run = registry.tracking.get_run(run_id)  # NotFound for an unknown run
    commit = run.info.artifact_commit
    if commit is None or not registry.tracking.list_artifacts(run_id, path):
        raise NotFound(f"run {run_id} has no artifacts at {path!r}; log the model before "
                       "registering it")
    fields = {
        "run_id": run_id, "artifact_commit": commit, "artifact_path": source,
        "flavor": EXTERNAL_FLAVOR, "format_id": EXTERNAL_FORMAT, "artifact_hash": "",
        "signature": {}, "profile": {}, "metrics": {}, "data": [], "description": description,
        "created_by": registry.repos.author,
    }
    # one transaction (retried with the next number if a concurrent registration took it)
    row = versions.insert_version(registry.db.session, name, fields,
                                  versions.lineage_sources(run_id, [], commit))
    return ModelVersion.from_row(name, row, [])


def update_version_description(registry: ModelRegistry, name: str, version: int,
                               description: str) -> ModelVersion:
    """See `ModelRegistry.update_version_description`."""
    ref = ModelRef(name, version=_check_version(version))
    with registry.db.session() as session, session.begin():
        model, row = registry.version_row(session, ref)
        row.description = description
        held = [a for a, v in alias_ops.aliases_of(session, model.id).items() if v == version]
        return ModelVersion.from_row(model.name, row, held)


def delete_version(registry: ModelRegistry, name: str, version: int, *,
                   actor: str | None = None) -> None:
    """See `ModelRegistry.delete_version`."""
    ref = ModelRef(name, version=_check_version(version))
    with registry.db.session() as session, session.begin():
        model, row = registry.version_row(session, ref)
        for alias, held in alias_ops.aliases_of(session, model.id).items():
            if held == version:
                alias_ops.move(session, model.id, model.name, alias, expected=version, new=None,
                               action="delete", actor=actor or registry.repos.author,
                               message=f"version {version} deleted")
        session.delete(row)
