"""Pipelines: runs, step runs (status, datum counts, cache-key parts, log tail) and the cache.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the pipeline tables."""
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(40), nullable=False),
        sa.Column("executor", sa.String(20), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        _when("started_at", nullable=False),
        _when("ended_at", nullable=True),
    )
    op.create_index("ix_pipeline_runs_pipeline_started", "pipeline_runs", ["pipeline", "started_at"])
    op.create_table(
        "pipeline_step_runs",
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("key_parts", sa.JSON, nullable=False),
        sa.Column("output_repo", sa.String(100), nullable=False),
        sa.Column("output_commit", sa.String(64), nullable=True),
        sa.Column("datums_processed", sa.Integer, nullable=False),
        sa.Column("datums_skipped", sa.Integer, nullable=False),
        sa.Column("datums_removed", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("log_tail", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        _when("started_at", nullable=True),
        _when("ended_at", nullable=True),
    )
    op.create_table(
        "pipeline_cache",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("step", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("base_key", sa.String(64), nullable=False),
        sa.Column("output_repo", sa.String(100), nullable=False),
        sa.Column("output_commit", sa.String(64), nullable=False),
        _when("created_at", nullable=False),
    )
    op.create_index(
        "ix_pipeline_cache_base", "pipeline_cache", ["pipeline", "step", "base_key", "created_at"]
    )


def downgrade() -> None:
    """Drop the pipeline tables."""
    for table in ("pipeline_cache", "pipeline_step_runs", "pipeline_runs"):
        op.drop_table(table)
