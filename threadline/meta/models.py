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
    ForeignKey,
    Index,
    Integer,
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
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
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)

    __table_args__ = (
        UniqueConstraint("from_kind", "from_id", "relation", "to_kind", "to_id", name="uq_edge"),
        Index("ix_lineage_from", "from_kind", "from_id"),
        Index("ix_lineage_to", "to_kind", "to_id"),
    )
