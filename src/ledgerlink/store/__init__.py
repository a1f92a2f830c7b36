"""The ledgerlink store: tables, migrations, landing of raw records, cursors and secrets.

SQLite is the embedded default, PostgreSQL the production store; both run the same Alembic
migrations (``ledgerlink.store.migrations``) and the same code, with each dialect's native
``ON CONFLICT`` for upserts.
"""

from __future__ import annotations

from ledgerlink.store.db import (
    create_engine_for,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from ledgerlink.store.models import (
    AuditLog,
    Credential,
    Customer,
    CustomerLink,
    DecisionKind,
    LinkMethod,
    LinkStatus,
    MatchDecision,
    Outbox,
    OutboxStatus,
    Quarantine,
    QuarantineStage,
    SourceRecord,
    SyncState,
)
from ledgerlink.store.repository import LandResult, Store, canonical_json, content_hash
from ledgerlink.store.secrets import DbSecretStore, generate_key
from ledgerlink.store.types import UTCDateTime, utcnow

__all__ = [
    "AuditLog",
    "Credential",
    "Customer",
    "CustomerLink",
    "DbSecretStore",
    "DecisionKind",
    "LandResult",
    "LinkMethod",
    "LinkStatus",
    "MatchDecision",
    "Outbox",
    "OutboxStatus",
    "Quarantine",
    "QuarantineStage",
    "SourceRecord",
    "Store",
    "SyncState",
    "UTCDateTime",
    "canonical_json",
    "content_hash",
    "create_engine_for",
    "current_revision",
    "downgrade",
    "generate_key",
    "head_revision",
    "upgrade",
    "utcnow",
]
