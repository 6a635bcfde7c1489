"""Plain records the registry hands out: models, versions, alias moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.meta.models import AliasLogRow, ModelVersionRow, RegisteredModelRow


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model."""

    name: str
    version: int
    flavor: str
    format_id: str
    artifact_commit: str
    artifact_hash: str
    run_id: str | None
    signature: dict[str, Any]
    profile: dict[str, Any]
    metrics: dict[str, Any]
    data: list[dict[str, Any]]
    description: str
    created_by: str
    created_at: int
    aliases: list[str] = field(default_factory=list)
    #: where the files are when they stay outside the registry (a version registered through
    #: MLflow's API: its `runs:/...` or `mlflow-artifacts:/...` source); None for versions whose
    #: files are in tl-models
    external_source: str | None = None

    @property
    def uri(self) -> str:
        """`name@version`, accepted by `load_model`."""
        return f"{self.name}@{self.version}"

    @classmethod
    def from_row(cls, name: str, row: ModelVersionRow, aliases: list[str]) -> ModelVersion:
        """Build from a database row."""
        return cls(name, row.version, row.flavor, row.format_id, row.artifact_commit,
                   row.artifact_hash, row.run_id, dict(row.signature), dict(row.profile),
                   dict(row.metrics), list(row.data), row.description, row.created_by,
                   row.created_at, sorted(aliases),
                   # the `artifact_path` column holds the external source ("" for native versions)
                   row.artifact_path or None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the profile is summarised to its sources)."""
        return {
            "name": self.name, "version": self.version, "flavor": self.flavor,
            "format_id": self.format_id, "artifact_commit": self.artifact_commit,
            "artifact_hash": self.artifact_hash, "run_id": self.run_id,
            "signature": self.signature, "profile_sources": sorted(self.profile),
            "metrics": self.metrics, "data": self.data, "description": self.description,
            "created_by": self.created_by, "created_at": _iso(self.created_at),
            "aliases": self.aliases, "external_source": self.external_source,
        }


@dataclass(frozen=True)
class RegisteredModel:
    """A model name with its aliases (alias -> version), policy and latest version."""

    name: str
    description: str
    tags: dict[str, str]
    policy: dict[str, Any]
    aliases: dict[str, int]
    latest_version: int | None
    created_at: int
    updated_at: int

    @classmethod
    def from_row(
        cls, row: RegisteredModelRow, aliases: dict[str, int], latest: int | None
    ) -> RegisteredModel:
        """Build from a database row."""
        return cls(row.name, row.description, dict(row.tags), dict(row.policy), aliases, latest,
                   row.created_at, row.updated_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name, "description": self.description, "tags": self.tags,
            "policy": self.policy, "aliases": self.aliases, "latest_version": self.latest_version,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class AliasEntry:
    """One move of an alias: set, promote, rollback, undo or delete."""

    id: int
    alias: str
    old_version: int | None
    new_version: int | None
    action: str
    actor: str
    message: str
    meta: dict[str, Any]
    created_at: int

    @classmethod
    def from_row(cls, row: AliasLogRow) -> AliasEntry:
        """Build from a database row."""
        return cls(row.id, row.alias, row.old_version, row.new_version, row.action, row.actor,
                   row.message, dict(row.meta), row.created_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id, "alias": self.alias, "old_version": self.old_version,
            "new_version": self.new_version, "action": self.action, "actor": self.actor,
            "message": self.message, "meta": self.meta, "created_at": _iso(self.created_at),
        }
