"""Monitoring: policies, checks of traffic windows, alerts, and the actions policies took.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the monitoring tables."""
    op.create_table(
        "monitor_policies",
        sa.Column("deployment", sa.String(100), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "monitor_checks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("window_end", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_monitor_checks_deployment_created", "monitor_checks",
                    ["deployment", "created_at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("first_at", sa.BigInteger, nullable=False),
        sa.Column("last_at", sa.BigInteger, nullable=False),
        sa.Column("resolved_at", sa.BigInteger, nullable=True),
        sa.Column("acked_by", sa.String(200), nullable=True),
        sa.Column("acked_at", sa.BigInteger, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index("ix_alerts_deployment_rule", "alerts", ["deployment", "rule", "status"])
    op.create_table(
        "monitor_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("check_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("undone_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    """Drop the monitoring tables."""
    op.drop_table("monitor_actions")
    op.drop_table("alerts")
    op.drop_table("monitor_checks")
    op.drop_table("monitor_policies")
