"""API budgets shared by every replica: calls per (connector, budget) in the current window.

Revision ID: 0002_api_budget
Revises: 0001_initial
Create Date: 2026-12-02 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_api_budget"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64


def upgrade() -> None:
    """Create ``api_budget``."""
    op.create_table(
        "api_budget",
        sa.Column("connector", sa.String(NAME), primary_key=True),
        sa.Column("budget", sa.String(NAME), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("vendor_used", sa.Integer(), nullable=True),
        sa.Column("vendor_limit", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop ``api_budget``."""
    op.drop_table("api_budget")
