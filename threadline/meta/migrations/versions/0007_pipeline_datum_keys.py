"""Pipelines: a cache entry of a datum step holds its datums' keys (they were commit metadata).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `pipeline_cache.datums`: zstd-compressed JSON, datum name -> key."""
    with op.batch_alter_table("pipeline_cache") as batch:
        batch.add_column(sa.Column("datums", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    """Drop the column (the entries' outputs are then re-processed whole once)."""
    with op.batch_alter_table("pipeline_cache") as batch:
        batch.drop_column("datums")
