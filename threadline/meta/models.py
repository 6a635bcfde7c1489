"""The metadata schema, shared by every layer; each layer queries only its own tables.

Portable across SQLite and PostgreSQL: string ids, JSON columns, timezone-aware timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Threadline table."""


class RepoRow(Base):
    """A data repository."""

    __tablename__ = "repos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    default_branch: Mapped[str] = mapped_column(String(100), default="main", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)


class CommitRow(Base):
    """An immutable data commit; its id is the hash of its canonical record."""

    __tablename__ = "commits"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), nullable=False)
    parents: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    manifest: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False)
    file_count: Mapped[int] = mapped_column(Integer, nullable=False)
    total_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_commits_repo_created", "repo_id", "created_at"),)


class RefRow(Base):
    """A branch or tag: a named pointer to a commit, moved only by compare-and-swap."""

    __tablename__ = "refs"

    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # "branch" | "tag"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    commit_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=True)

    # branches and tags share one namespace (a branch would hide a tag of the same name)
    __table_args__ = (Index("uq_refs_repo_name", "repo_id", "name", unique=True),)


class RefLogRow(Base):
    """One move of a branch: every commit, rollback and reset, so any state can be restored."""

    __tablename__ = "ref_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    old_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    new_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(20), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=True)

    __table_args__ = (Index("ix_ref_log_repo_name", "repo_id", "name", "id"),)


class LineageEdgeRow(Base):
    """`(from_kind, from_id) -[relation]-> (to_kind, to_id)`: `to` was made from `from`."""

    __tablename__ = "lineage_edges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    from_kind: Mapped[str] = mapped_column(String(40), nullable=False)
    from_id: Mapped[str] = mapped_column(String(200), nullable=False)
    relation: Mapped[str] = mapped_column(String(40), nullable=False)
    to_kind: Mapped[str] = mapped_column(String(40), nullable=False)
    to_id: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)

    __table_args__ = (
        UniqueConstraint("from_kind", "from_id", "relation", "to_kind", "to_id", name="uq_edge"),
        Index("ix_lineage_from", "from_kind", "from_id"),
        Index("ix_lineage_to", "to_kind", "to_id"),
    )


# --- tracking: experiments, runs and what they log (issue 5) -------------------------------


class ExperimentRow(Base):
    """A named group of runs (MLflow's experiment)."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active", nullable=False)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # ms since the epoch
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class RunRow(Base):
    """A tracked execution; times are milliseconds since the epoch, as in MLflow's API."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False
    )
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str] = mapped_column(String(250), default="", nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="RUNNING", nullable=False)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active", nullable=False)
    user: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    start_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the data commit holding the run's artifacts (None until the first artifact is logged)
    artifact_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: git commit, hash of uncommitted changes, Python version, package-set hash
    source: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    __table_args__ = (
        Index("ix_runs_experiment_start", "experiment_id", "start_time"),
        Index("ix_runs_parent", "parent_id"),
    )


class ParamRow(Base):
    """One parameter of a run; logged once, never changed (as in MLflow)."""

    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class TagRow(Base):
    """One tag of a run; setting it again replaces the value."""

    __tablename__ = "tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class MetricRow(Base):
    """One point of a metric series: (run, key, step, timestamp) -> value."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(250), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=True)  # NULL stands for NaN
    step: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    timestamp: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_metrics_run_key_step", "run_id", "key", "step"),)


class LatestMetricRow(Base):
    """The latest point of each series (highest step, then time): what searches filter on."""

    __tablename__ = "latest_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=True)
    step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    timestamp: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)


# --- registry: models, versions, aliases and their history (issue 5) -----------------------


class RegisteredModelRow(Base):
    """A registered model: a name, its promotion policy and its versions."""

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    #: the promotion gates, per alias (see registry/gates.py)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ModelVersionRow(Base):
    """One immutable version of a model: artifact commit, flavor, signature, lineage."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    artifact_commit: Mapped[str] = mapped_column(String(64), nullable=False)
    artifact_path: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    flavor: Mapped[str] = mapped_column(String(40), nullable=False)
    format_id: Mapped[str] = mapped_column(String(80), nullable=False)
    #: the hash of the serialized model, checked before any opt-in unpickling
    artifact_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    #: training data: [{"repo": ..., "commit": ..., "branch": ...}]
    data: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_version"),)


class ModelAliasRow(Base):
    """A movable pointer (`production`, `staging`, ...) to one version of a model."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AliasLogRow(Base):
    """One move of an alias (set, promote, rollback, delete) with who, why and what came along."""

    __tablename__ = "alias_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False
    )
    alias: Mapped[str] = mapped_column(String(100), nullable=False)
    old_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(20), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)
    #: gate results, approver, data branches moved with the model
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_alias_log_model_alias", "model_id", "alias", "id"),)


# --- pipelines: runs, step runs and the step cache (issue 4) -------------------------------


class PipelineRunRow(Base):
    """One run of a pipeline: who started it, on what inputs, and how it ended."""

    __tablename__ = "pipeline_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    pipeline: Mapped[str] = mapped_column(String(200), nullable=False)
    #: running | succeeded | failed (a dead driver's run is shown as interrupted)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    trigger: Mapped[str] = mapped_column(String(40), nullable=False)  # manual | watch | cron
    executor: Mapped[str] = mapped_column(String(20), nullable=False)
    #: parameter overrides given to the run
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    #: the data refs the run read and the commit each resolved to (what `watch` compares)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    host: Mapped[str] = mapped_column(String(200), nullable=False)
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_pipeline_runs_pipeline_started", "pipeline", "started_at"),)


class PipelineStepRunRow(Base):
    """One step of a run: whether it ran or was reused, why, on how many datums, and its output."""

    __tablename__ = "pipeline_step_runs"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: pending | running | succeeded | cached | failed | skipped
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    cache_key: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    #: the parts of the cache key (inputs, code, params, env), what dry runs compare
    key_parts: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    output_repo: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    output_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    datums_processed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    datums_skipped: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    datums_removed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    log_tail: Mapped[str] = mapped_column(Text, default="", nullable=False)
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    #: a step's newest finished run (`RunStore.last_parts`), whatever the number of runs
    __table_args__ = (Index("ix_pipeline_step_runs_step_ended", "step", "ended_at"),)


class PipelineCacheRow(Base):
    """A finished step: cache key -> the output commit it produced (written after the commit)."""

    __tablename__ = "pipeline_cache"

    pipeline: Mapped[str] = mapped_column(String(200), primary_key=True)
    step: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the key without the content of a datum-split input: entries sharing it can lend datums
    base_key: Mapped[str] = mapped_column(String(64), nullable=False)
    output_repo: Mapped[str] = mapped_column(String(100), nullable=False)
    output_commit: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: a datum step's datums, name -> key, as zstd-compressed JSON (`pipelines.runs`)
    datums: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (Index("ix_pipeline_cache_base", "pipeline", "step", "base_key", "created_at"),)


# --- serving: deployments, their history, and API tokens (issue 7) -------------------------


class DeploymentRow(Base):
    """A named endpoint: its routes and serving settings (`spec`), at revision `revision`."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    #: {"routes": [...], "settings": {...}} (see serving/spec.py)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class DeploymentLogRow(Base):
    """One change of a deployment: the whole spec after it, who, why; any revision restores."""

    __tablename__ = "deployment_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(100), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(20), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (UniqueConstraint("deployment", "revision", name="uq_deployment_revision"),)


class ApiTokenRow(Base):
    """A bearer token for the servers, stored as its hash only."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    #: BLAKE3 of the token; the token itself is shown once, at creation
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# --- monitoring: checks, alerts, policies and the actions they took (issue 8) -------------


class MonitorPolicyRow(Base):
    """A deployment's monitoring policy (checks, alert rules, actions) as stored YAML/JSON."""

    __tablename__ = "monitor_policies"

    deployment: Mapped[str] = mapped_column(String(100), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class MonitorCheckRow(Base):
    """One check of one window of a deployment's traffic: drift, accuracy or an estimate."""

    __tablename__ = "monitor_checks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    window_start: Mapped[int] = mapped_column(BigInteger, nullable=False)
    window_end: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    #: ok | drift | breach | no_verdict
    verdict: Mapped[str] = mapped_column(String(20), nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_monitor_checks_deployment_created", "deployment", "created_at"),)


class AlertRow(Base):
    """An alert: a rule's breach, from first firing to resolution, with acknowledgement."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(100), nullable=False)
    rule: Mapped[str] = mapped_column(String(100), nullable=False)
    #: pending (breaching, not yet for long enough) | firing | resolved
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    first_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    resolved_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)

    __table_args__ = (Index("ix_alerts_deployment_rule", "deployment", "rule", "status"),)


class MonitorActionRow(Base):
    """An action a policy took (fallback, retrain, canary, promote, rollback) and its outcome."""

    __tablename__ = "monitor_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    check_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    undone_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
