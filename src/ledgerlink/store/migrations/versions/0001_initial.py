"""Initial schema: landed records, cursors, golden customers, links, decisions, outbox,
quarantine, audit log and encrypted credentials.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 21:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision (not imported from the models,
# which will keep changing).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# source_record.payload keeps the canonical JSON text as landed: PostgreSQL's ``json`` only
# validates it, where ``jsonb`` would parse it into a tree (most of the cost of a bulk load).
RAW_JSON = sa.JSON()
NAME = 64
EXTERNAL_ID = 255


def ts(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def big_id() -> sa.Column[Any]:
    return sa.Column("id", BIG_ID, primary_key=True, autoincrement=True)


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "source_record",
        big_id(),
        sa.Column("system", sa.String(NAME), nullable=False),
        sa.Column("object", sa.String(NAME), nullable=False),
        sa.Column("external_id", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("payload", RAW_JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        ts("first_seen_at"),
        ts("last_seen_at"),
        ts("changed_at"),
        ts("deleted_at", nullable=True),
        sa.Column("cursor_value", sa.String(EXTERNAL_ID), nullable=True),
        sa.UniqueConstraint("system", "object", "external_id", name="uq_source_record_key"),
    )
    op.create_index(
        "ix_source_record_changed", "source_record", ["system", "object", "changed_at"]
    )

    op.create_table(
        "sync_state",
        sa.Column("connector", sa.String(NAME), primary_key=True),
        sa.Column("stream", sa.String(NAME), primary_key=True),
        sa.Column("cursor", JSON, nullable=False),
        ts("updated_at"),
        ts("last_success_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )

    op.create_table(
        "customer",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("display_name", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("lineage", JSON, nullable=False),
        ts("created_at"),
        ts("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
    )

    op.create_table(
        "customer_link",
        big_id(),
        sa.Column("system", sa.String(NAME), nullable=False),
        sa.Column("object", sa.String(NAME), nullable=False),
        sa.Column("external_id", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column(
            "customer_id",
            sa.String(36),
            sa.ForeignKey("customer.id", name="fk_customer_link_customer"),
            nullable=False,
        ),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        ts("created_at"),
        ts("updated_at"),
        sa.UniqueConstraint("system", "object", "external_id", name="uq_customer_link_ref"),
        sa.CheckConstraint(
            "method IN ('xref', 'probabilistic', 'manual', 'created')",
            name="ck_customer_link_method",
        ),
        sa.CheckConstraint(
            "status IN ('linked', 'review', 'split')", name="ck_customer_link_status"
        ),
    )
    op.create_index("ix_customer_link_customer_id", "customer_link", ["customer_id"])

    op.create_table(
        "match_decision",
        big_id(),
        sa.Column("left_system", sa.String(NAME), nullable=False),
        sa.Column("left_object", sa.String(NAME), nullable=False),
        sa.Column("left_external_id", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("right_system", sa.String(NAME), nullable=True),
        sa.Column("right_object", sa.String(NAME), nullable=True),
        sa.Column("right_external_id", sa.String(EXTERNAL_ID), nullable=True),
        sa.Column(
            "customer_id",
            sa.String(36),
            sa.ForeignKey("customer.id", name="fk_match_decision_customer"),
            nullable=True,
        ),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(EXTERNAL_ID), nullable=False),
        ts("created_at"),
        ts("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(EXTERNAL_ID), nullable=True),
        sa.CheckConstraint(
            "decision IN ('link', 'split', 'never_link')", name="ck_match_decision_decision"
        ),
    )
    op.create_index(
        "ix_match_decision_left",
        "match_decision",
        ["left_system", "left_object", "left_external_id"],
    )
    op.create_index(
        "ix_match_decision_right",
        "match_decision",
        ["right_system", "right_object", "right_external_id"],
    )
    op.create_index("ix_match_decision_customer_id", "match_decision", ["customer_id"])

    op.create_table(
        "outbox",
        big_id(),
        sa.Column("target", sa.String(NAME), nullable=False),
        sa.Column("object", sa.String(NAME), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("entity_kind", sa.String(NAME), nullable=True),
        sa.Column("entity_id", sa.String(EXTERNAL_ID), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        ts("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("remote_id", sa.String(EXTERNAL_ID), nullable=True),
        ts("created_at"),
        ts("updated_at"),
        sa.Column("claimed_by", sa.String(EXTERNAL_ID), nullable=True),
        ts("claimed_until", nullable=True),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'in_flight', 'done', 'failed', 'cancelled')",
            name="ck_outbox_status",
        ),
    )
    op.create_index("ix_outbox_status_next_attempt", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_entity", "outbox", ["entity_kind", "entity_id"])
    open_rows = sa.text("status IN ('pending', 'in_flight')")
    op.create_index(
        "ix_outbox_open",
        "outbox",
        ["target", "id"],
        postgresql_where=open_rows,
        sqlite_where=open_rows,
    )

    op.create_table(
        "quarantine",
        big_id(),
        sa.Column("system", sa.String(NAME), nullable=False),
        sa.Column("object", sa.String(NAME), nullable=False),
        sa.Column("external_id", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        ts("created_at"),
        ts("resolved_at", nullable=True),
        ts("updated_at", nullable=True),
        sa.CheckConstraint("stage IN ('map', 'match', 'plan', 'push')", name="ck_quarantine_stage"),
    )
    op.create_index(
        "uq_quarantine_ref_stage",
        "quarantine",
        ["system", "object", "external_id", "stage"],
        unique=True,
    )

    op.create_table(
        "audit_log",
        big_id(),
        ts("at"),
        sa.Column("actor", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("action", sa.String(NAME), nullable=False),
        sa.Column("subject", sa.String(EXTERNAL_ID), nullable=False),
        sa.Column("details", JSON, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "credential",
        sa.Column("name", sa.String(EXTERNAL_ID), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        ts("updated_at"),
    )


def downgrade() -> None:
    """Drop every table of the store, dependants first."""
    op.drop_table("credential")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("uq_quarantine_ref_stage", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_index("ix_outbox_open", table_name="outbox")
    op.drop_index("ix_outbox_entity", table_name="outbox")
    op.drop_index("ix_outbox_status_next_attempt", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_match_decision_customer_id", table_name="match_decision")
    op.drop_index("ix_match_decision_right", table_name="match_decision")
    op.drop_index("ix_match_decision_left", table_name="match_decision")
    op.drop_table("match_decision")
    op.drop_index("ix_customer_link_customer_id", table_name="customer_link")
    op.drop_table("customer_link")
    op.drop_table("customer")
    op.drop_table("sync_state")
    op.drop_index("ix_source_record_changed", table_name="source_record")
    op.drop_table("source_record")
