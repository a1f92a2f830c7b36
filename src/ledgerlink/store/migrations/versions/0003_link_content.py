"""When each linked record's company details last changed, for survivorship.

Revision ID: 0003_link_content
Revises: 0002_api_budget
Create Date: 2026-12-03 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_link_content"
down_revision: str | None = "0002_api_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``content_hash`` and ``content_changed_at`` to ``customer_link``."""
    with op.batch_alter_table("customer_link") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("content_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("customer_link") as batch:
        batch.drop_column("content_changed_at")
        batch.drop_column("content_hash")
