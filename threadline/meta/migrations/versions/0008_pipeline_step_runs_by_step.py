"""Pipelines: find a step's newest run by an index, not by reading every run of its pipeline.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index step runs by (step, ended_at): planning a step reads its newest finished run."""
    op.create_index("ix_pipeline_step_runs_step_ended", "pipeline_step_runs", ["step", "ended_at"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_pipeline_step_runs_step_ended", table_name="pipeline_step_runs")
