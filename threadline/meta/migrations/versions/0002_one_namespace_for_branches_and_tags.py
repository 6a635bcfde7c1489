"""Branches and tags share one namespace per repo.

`resolve` tries a branch before a tag, so a branch named like a tag would hide it. The data
layer checks this before inserting; this unique index closes the race between two processes
creating a branch and a tag of the same name at once.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the unique index on (repo_id, name)."""
    op.create_index("uq_refs_repo_name", "refs", ["repo_id", "name"], unique=True)


def downgrade() -> None:
    """Drop the unique index."""
    op.drop_index("uq_refs_repo_name", table_name="refs")
