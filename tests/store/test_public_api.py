"""The names other parts of ledgerlink import from the store stay available."""

from __future__ import annotations

import ledgerlink.store as store_package
from ledgerlink.connector import SecretStore
from ledgerlink.store import DbSecretStore


def test_public_names_are_exported() -> None:
    """The store exports the engine, migration, landing, secret and model names."""
    expected = {
        "AuditLog",
        "Credential",
        "Customer",
        "CustomerLink",
        "DbSecretStore",
        "LandResult",
        "MatchDecision",
        "Outbox",
        "Quarantine",
        "SourceRecord",
        "Store",
        "SyncState",
        "content_hash",
        "create_engine_for",
        "current_revision",
        "downgrade",
        "generate_key",
        "head_revision",
        "upgrade",
    }
    assert expected <= set(store_package.__all__)
    for name in store_package.__all__:
        assert getattr(store_package, name) is not None


def test_db_secret_store_satisfies_the_connector_protocol() -> None:
    """DbSecretStore has the get/put methods connectors call through SecretStore."""
    assert issubclass(DbSecretStore, SecretStore)
