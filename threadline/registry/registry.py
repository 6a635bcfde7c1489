"""`ModelRegistry`: register versions, read them, move aliases, load models by URI.

Model files live in the data repo `tl-models` (see store.py); versions, aliases and their
history in the metadata tables; every version is a lineage node `model_version:name/N` with
edges from the run that produced it and the data commits it was trained on. Creating,
editing, renaming and deleting models and versions, and external (MLflow) versions, are in
models_admin.py.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from threadline.errors import InvalidArgument, NotFound
from threadline.lineage.graph import Node
from threadline.meta.models import ModelVersionRow, RegisteredModelRow
from threadline.registry import aliases as alias_ops
from threadline.registry import models_admin, promotion, versions
from threadline.registry import rollback as rollback_ops
from threadline.registry.examples import read_example
from threadline.registry.flavors.base import (
    LoadPolicy,
    ModelMeta,
    hash_files,
    read_meta,
    verify_files,
    write_meta,
)
from threadline.registry.flavors.catalog import get_flavor, load_folder, save_folder
from threadline.registry.gates import parse_policy
from threadline.registry.names import ModelRef, check_alias, check_model_name, parse_model_uri
from threadline.registry.records import AliasEntry, ModelVersion, RegisteredModel
from threadline.registry.runs import open_tracking, run_inputs, run_metrics
from threadline.registry.store import ModelStore

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from threadline.data.repos import DataRepos
    from threadline.registry.runs import RunSource


class ModelRegistry:
    """The model registry of one Threadline home.

    Args:
        repos: the data layer (its database holds the registry's tables).
        tracking: where runs are read from; default: the home's tracking store.
    """

    def __init__(self, repos: DataRepos, tracking: RunSource | None = None) -> None:
        self.repos = repos
        self.db = repos.db
        self.store = ModelStore(repos)
        self._tracking = tracking

    @classmethod
    def open(cls, home: str | Path | None = None) -> ModelRegistry:
        """The registry of the home that applies to `home` or the working folder."""
        from threadline.data.connect import default_repos

        return cls(default_repos(Path(home) if home is not None else None))

    @property
    def tracking(self) -> RunSource:
        """The tracking store runs are read from (opened on first use)."""
        if self._tracking is None:
            self._tracking = open_tracking(self.repos)
        return self._tracking

    # ------------------------------------------------------------------ register
    def register(
        self,
        name: str,
        model: Any = None,
        *,
        run_id: str | None = None,
        artifact_path: str = "model",
        flavor: str | None = None,
        example: Any = None,
        data: Sequence[str] = (),
        metrics: Mapping[str, Any] | None = None,
        description: str = "",
        **flavor_options: Any,
    ) -> ModelVersion:
        """Register a new version of model `name`.

        Either saves `model` (a live object; its flavor detected unless given) or, with
        `run_id` and no model, registers the model folder the run logged at `artifact_path`.

        Args:
            name: the model's name (letters, digits, '.', '_', '-').
            model: a fitted model object, or None to take the run's artifact (or for `pyfunc`,
                whose code is given as `code=` and `entry=` options).
            run_id: the run that trained it (lineage; default data and metrics come from it).
            artifact_path: where in the run's artifacts its model folder is.
            flavor: force a flavor (`sklearn`, `xgboost`, `lightgbm`, `onnx`, `torch`, `pyfunc`,
                `pickle`).
            example: an input batch: stored with the version, and the signature is inferred
                from it and the model's output on it.
            data: training-data refs (`repo@branch:path`); default: the run's inputs.
            metrics: metric values; default: the run's latest metrics.
            description: free text.
            **flavor_options: passed to the flavor's save (e.g. `code`, `entry` for pyfunc).
        """
        check_model_name(name)
        run = self.tracking.get_run(run_id) if run_id else None
        # everything that can be refused is checked before the model files are committed
        data_entries = (versions.resolve_data(self.repos, data) if data else
                        versions.data_from_inputs(self.repos, run_inputs(run)) if run else [])
        metric_values = versions.check_metrics(
            metrics if metrics is not None else (run_metrics(run) if run else {}))
        profile = versions.training_profile(self.repos, data_entries)
        scratch = Path(tempfile.mkdtemp(prefix="tl-register-"))
        try:
            folder = scratch / "model"
            folder.mkdir()
            if model is not None or flavor == "pyfunc":
                meta = save_folder(model, folder, flavor=flavor, example=example, **flavor_options)
            elif run_id:
                meta = self._take_run_folder(run_id, artifact_path, folder)
            else:
                raise InvalidArgument("register needs a model object, or run_id= of a run that "
                                      "logged a model folder")
            artifact_commit = self.store.commit(
                name, folder, f"model {name} ({meta.flavor})" + (f" from run {run_id}" if run_id else ""),
                Node(versions.RUN_KIND, run_id) if run_id else None,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        fields = {
            "run_id": run_id, "artifact_commit": artifact_commit, "artifact_path": "",
            "flavor": meta.flavor, "format_id": meta.format_id, "artifact_hash": meta.hash,
            "signature": meta.signature,
            "profile": profile, "metrics": metric_values,
            "data": data_entries, "description": description, "created_by": self.repos.author,
        }
        versions.ensure_model(self.db.session, name, description)
        row = versions.insert_version(self.db.session, name, fields,
                                      versions.lineage_sources(run_id, data_entries, artifact_commit))
        return ModelVersion.from_row(name, row, [])

    def _take_run_folder(self, run_id: str, artifact_path: str, folder: Path) -> ModelMeta:
        """Copy a run's model folder into `folder`, re-hashing every file it lists."""
        with tempfile.TemporaryDirectory(prefix="tl-run-model-") as tmp:
            got = Path(self.tracking.download_artifacts(run_id, artifact_path, Path(tmp)))
            source = got if (got / "threadline-model.json").is_file() else got / artifact_path
            meta = read_meta(source)
            # the run's description is input, not truth: hashes are recomputed from the bytes
            actual = hash_files(source, list(meta.files))
            if actual != meta.files:
                raise InvalidArgument(f"the model folder {artifact_path!r} of run {run_id} does not "
                                      "match its own description; re-log the model")
            get_flavor(meta.flavor)  # an unknown flavor is refused now, not at load time
            for name in meta.files:
                shutil.copyfile(source / name, folder / name)
            write_meta(folder, meta)
        return meta

    # -------------------------------------------------------------------- reads
    def model_row(self, session: Session, name: str) -> RegisteredModelRow:
        """The model's row in the caller's session (for the registry's own modules)."""
        row = session.scalar(select(RegisteredModelRow).where(
            RegisteredModelRow.name == check_model_name(name)))
        if row is None:
            raise NotFound(f"model {name!r} is not registered; `threadline models list` shows "
                           "the registered models")
        return row

    def _latest(self, session: Session, model_id: int) -> int | None:
        return session.scalar(select(func.max(ModelVersionRow.version))
                              .where(ModelVersionRow.model_id == model_id))

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases, policy and latest version number."""
        with self.db.session() as session:
            row = self.model_row(session, name)
            return RegisteredModel.from_row(row, alias_ops.aliases_of(session, row.id),
                                            self._latest(session, row.id))

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        with self.db.session() as session:
            rows = session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name)).all()
            return [RegisteredModel.from_row(r, alias_ops.aliases_of(session, r.id),
                                             self._latest(session, r.id)) for r in rows]

    def version_row(self, session: Session, ref: ModelRef) -> tuple[RegisteredModelRow, ModelVersionRow]:
        """The model's and the version's rows a ref names, in the caller's session."""
        model = self.model_row(session, ref.name)
        number = ref.version
        if ref.alias is not None:
            number = alias_ops.current(session, model.id, ref.alias)
            if number is None:
                raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}; set it with "
                               f"`threadline models alias {ref.name} {ref.alias} VERSION`")
        elif number is None:
            number = self._latest(session, model.id)
            if number is None:
                raise NotFound(f"model {ref.name!r} has no versions yet")
        row = session.scalar(select(ModelVersionRow).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.version == number))
        if row is None:
            raise NotFound(f"model {ref.name!r} has no version {number}; `threadline models show "
                           f"{ref.name}` lists them")
        return model, row

    def _aliases_for(self, session: Session, model_id: int, version: int) -> list[str]:
        return [a for a, v in alias_ops.aliases_of(session, model_id).items() if v == version]

    def get_version(self, name: str, version: int | str | None = None) -> ModelVersion:
        """A version by number, alias, or (None) the latest: `get_version("churn", "production")`."""
        ref = parse_model_uri(name) if version is None else (
            ModelRef(check_model_name(name), version=version) if isinstance(version, int)
            else parse_model_uri(f"{name}@{version}"))
        with self.db.session() as session:
            model, row = self.version_row(session, ref)
            return ModelVersion.from_row(model.name, row, self._aliases_for(session, model.id, row.version))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        with self.db.session() as session:
            model = self.model_row(session, name)
            by_version: dict[int, list[str]] = {}
            for alias, number in alias_ops.aliases_of(session, model.id).items():
                by_version.setdefault(number, []).append(alias)
            rows = session.scalars(select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
                                   .order_by(ModelVersionRow.version)).all()
            return [ModelVersion.from_row(model.name, r, by_version.get(r.version, [])) for r in rows]

    # ------------------------------------------------------------------- aliases
    def set_alias(self, name: str, alias: str, version: int, actor: str | None = None,
                  message: str = "", *, force: bool = False, action: str = "set",
                  meta: dict[str, Any] | None = None,
                  expected: int | str | None = "current") -> AliasEntry:
        """Point `alias` at `version` (moved by compare-and-swap and logged).

        An alias with gates in the model's policy moves only through `promote`, unless
        `force` (recorded in the log entry's meta).
        """
        check_alias(alias)
        with self.db.session() as session, session.begin():
            model, row = self.version_row(session, ModelRef(name, version=int(version)))
            if action == "set" and dict(model.policy).get(alias):
                if not force:
                    raise InvalidArgument(
                        f"alias {alias!r} of {name!r} has promotion gates; move it with "
                        f"`threadline models promote {name} {version} --to {alias}` "
                        "(or force=True / --force to bypass them, which is logged)")
                meta = {**(meta or {}), "forced": True}
            old = alias_ops.current(session, model.id, alias) if expected == "current" else expected
            assert old is None or isinstance(old, int)
            alias_ops.move(session, model.id, model.name, alias, expected=old, new=row.version,
                           action=action, actor=actor or self.repos.author, message=message, meta=meta)
            return AliasEntry.from_row(alias_ops.log(session, model.id, alias, limit=1)[0])

    def delete_alias(self, name: str, alias: str, actor: str | None = None, message: str = "") -> None:
        """Remove an alias (its history stays)."""
        check_alias(alias)
        with self.db.session() as session, session.begin():
            model = self.model_row(session, name)
            old = alias_ops.current(session, model.id, alias)
            if old is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            alias_ops.move(session, model.id, model.name, alias, expected=old, new=None,
                           action="delete", actor=actor or self.repos.author, message=message)

    def alias_history(self, name: str, alias: str | None = None, limit: int = 1000) -> list[AliasEntry]:
        """Moves of a model's aliases (or one alias), newest first."""
        if alias is not None:
            check_alias(alias)
        with self.db.session() as session:
            model = self.model_row(session, name)
            return [AliasEntry.from_row(r) for r in alias_ops.log(session, model.id, alias, limit)]

    # -------------------------------------------------------------------- policy
    def set_policy(self, name: str, policy: Mapping[str, Any] | str) -> dict[str, Any]:
        """Replace a model's promotion policy (a dict or YAML text); returns it as stored."""
        parsed = parse_policy(policy)
        with self.db.session() as session, session.begin():
            row = self.model_row(session, name)
            row.policy = dict(parsed)
            row.updated_at = versions.now_ms()
        return dict(parsed)

    def get_policy(self, name: str) -> dict[str, Any]:
        """A model's promotion policy (alias -> gates)."""
        return self.get_model(name).policy

    # ------------------------------------------------------- models & versions
    def create_model(self, name: str, description: str = "",
                     tags: Mapping[str, str] | None = None) -> RegisteredModel:
        """Register a model name with no versions yet (MLflow clients create one before its
        first version; `register` creates the model itself when needed).

        Raises:
            InvalidArgument: the name or a tag is malformed.
            AlreadyExists: a model has that name.
        """
        return models_admin.create_model(self, name, description, tags)

    def update_model(self, name: str, *, description: str | None = None,
                     tags: Mapping[str, str] | None = None) -> RegisteredModel:
        """Replace a model's description and/or set tags (merged into its tags; remove one with
        `delete_model_tag`). Returns the model as stored."""
        return models_admin.update_model(self, name, description=description, tags=tags)

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove tag `key` of a model; NotFound names the model and the missing key."""
        models_admin.delete_model_tag(self, name, key)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Give a model a new, unused name; its versions, aliases and alias history follow it.

        Files: the branch `name` of tl-models keeps its name and every existing version keeps
        its pinned commit there, so they load as before; versions registered after the rename
        are committed on branch `new_name`. Lineage: nodes `model_version:name/N` are history
        and keep their ids; the rename adds an edge `model_version:name/N -renamed_to->
        model_version:new_name/N` for each version, so the lineage of `new_name@N` reaches the
        run and data of the old node. Renaming to the current name changes nothing.

        Raises:
            InvalidArgument: `new_name` is not a valid model name.
            NotFound: no model is called `name`.
            AlreadyExists: a model is called `new_name` already.
        """
        return models_admin.rename_model(self, name, new_name)

    def delete_model(self, name: str) -> None:
        """Remove a model with its versions, aliases and alias history, in one transaction.

        Lineage edges stay (they are history), and so do the files: the model's branch of
        tl-models (and, for external versions, the run's artifacts) keep them.
        """
        models_admin.delete_model(self, name)

    def register_external(self, name: str, run_id: str, source: str, *, path: str = "",
                          description: str = "") -> ModelVersion:
        """Record a new version of model `name` whose files stay in a run's artifacts.

        For models logged in MLflow's format (flavor `mlflow`): nothing is copied or loaded.
        The version pins the run's artifact commit, records `source` (the URI clients read the
        files from, e.g. `runs:/<run>/model`) as its `external_source`, and gets lineage edges
        from the run and its artifact commit. `load_model` refuses it: Threadline's flavors
        cannot load MLflow's format.

        Args:
            name: a model created already (`create_model`).
            run_id: the run that logged the files.
            source: the URI the files are served at (at most 500 characters).
            path: where in the run's artifacts the files are; they must exist.
            description: free text.

        Raises:
            NotFound: the model or the run does not exist, or the run has nothing at `path`.
            InvalidArgument: the name or the source is malformed.
        """
        return models_admin.register_external(self, name, run_id, source, path=path,
                                              description=description)

    def update_version_description(self, name: str, version: int, description: str) -> ModelVersion:
        """Replace the description of a version (the only thing about a version that changes)."""
        return models_admin.update_version_description(self, name, version, description)

    def delete_version(self, name: str, version: int, *, actor: str | None = None) -> None:
        """Remove a version; each alias pointing at it is deleted too, logged in the alias
        history as a `delete` by `actor` ("version N deleted"). Its files and lineage stay."""
        models_admin.delete_version(self, name, version, actor=actor)

    # ---------------------------------------------------------------------- load
    def load_model(self, uri: str, *, trusted: Sequence[str] = (), allow_pickle: bool = False,
                   allow_code: bool = False) -> Any:
        """Load a model by URI (`churn`, `churn@3`, `churn@production`); returns an object with
        `.predict`.

        Nothing executable is loaded by default: skops types beyond its safe list need
        `trusted=[...]`, pickles `allow_pickle=True` (and the bytes must match the registered
        hash), pyfunc code and a torch model's own network factory (one not shipped with
        threadline) `allow_code=True`. Every file is checked against the registered hash.
        """
        version = self.get_version(uri)
        return self.load_version(version, trusted=trusted, allow_pickle=allow_pickle,
                                 allow_code=allow_code)

    def load_version(self, version: ModelVersion, *, trusted: Sequence[str] = (),
                     allow_pickle: bool = False, allow_code: bool = False) -> Any:
        """Load a version already looked up (see `load_model`)."""
        models_admin.check_loadable(version)
        policy = LoadPolicy(tuple(trusted), allow_pickle, allow_code, version.artifact_hash)
        with self.store.fetch(version.artifact_commit) as folder:
            return load_folder(folder, policy, flavor=version.flavor)

    def load_example(self, version: ModelVersion) -> Any:
        """The example batch stored with a version, or None."""
        if version.external_source is not None:
            return None  # its files are MLflow's: no Threadline example is stored with them
        with self.store.fetch(version.artifact_commit) as folder:
            meta = read_meta(folder)
            if meta.example is None:
                return None
            verify_files(folder, meta, version.artifact_hash)
            return read_example(folder, meta.example)

    # ----------------------------------------------------- promotion & rollback
    def promote(self, name: str, version: int, to: str = "production", *, approve: str | None = None,
                actor: str | None = None, message: str = "", trusted: Sequence[str] = (),
                allow_pickle: bool = False, allow_code: bool = False) -> AliasEntry:
        """Move alias `to` to `version` if every gate of the policy passes; else `GateFailed`.

        `trusted`, `allow_pickle` and `allow_code` apply when a latency gate loads the model.
        """
        return promotion.promote(self, name, version, to, approve=approve, actor=actor,
                                 message=message, trusted=trusted, allow_pickle=allow_pickle,
                                 allow_code=allow_code)

    def rollback(self, name: str, alias: str = "production", *, to: int | None = None,
                 with_data: bool = False, actor: str | None = None, message: str = "") -> AliasEntry:
        """Move `alias` back to its previous holder (or `to`); `with_data` also moves the
        training-data branches to the commits that version was trained on. One log entry."""
        return rollback_ops.rollback(self, name, alias, to=to, with_data=with_data, actor=actor,
                                     message=message)

    def rollback_undo(self, name: str, alias: str = "production", *, actor: str | None = None,
                      message: str = "") -> AliasEntry:
        """Reverse the latest rollback of `alias`, data branches included."""
        return rollback_ops.rollback_undo(self, name, alias, actor=actor, message=message)
