"""Data repos, commits, refs, the ref log and lineage edges.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the foundation tables."""
    op.create_table(
        "repos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("default_branch", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "commits",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("parents", sa.JSON, nullable=False),
        sa.Column("manifest", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("total_bytes", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_commits_repo_created", "commits", ["repo_id", "created_at"])
    op.create_table(
        "refs",
        sa.Column(
            "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("commit_id", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "ref_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("old_commit", sa.String(64), nullable=True),
        sa.Column("new_commit", sa.String(64), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_ref_log_repo_name", "ref_log", ["repo_id", "name", "id"])
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("from_kind", sa.String(40), nullable=False),
        sa.Column("from_id", sa.String(200), nullable=False),
        sa.Column("relation", sa.String(40), nullable=False),
        sa.Column("to_kind", sa.String(40), nullable=False),
        sa.Column("to_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.UniqueConstraint("from_kind", "from_id", "relation", "to_kind", "to_id", name="uq_edge"),
    )
    op.create_index("ix_lineage_from", "lineage_edges", ["from_kind", "from_id"])
    op.create_index("ix_lineage_to", "lineage_edges", ["to_kind", "to_id"])


def downgrade() -> None:
    """Drop the foundation tables."""
    for table in ("lineage_edges", "ref_log", "refs", "commits", "repos"):
        op.drop_table(table)
