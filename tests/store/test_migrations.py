"""Migrations: empty to head, back to base and up again, with no drift from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from ledgerlink.store import (
    create_engine_for,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)

STORE_TABLES = {
    "audit_log",
    "credential",
    "customer",
    "customer_link",
    "match_decision",
    "outbox",
    "quarantine",
    "source_record",
    "sync_state",
}


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    """An empty database migrates to head, back to base (no tables) and to head again."""
    engine = create_engine_for(empty_database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) >= STORE_TABLES
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert _tables(engine) == set()
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) >= STORE_TABLES
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(empty_database_url: str) -> None:
    """Autogenerate finds no difference between the models and the migrated schema."""
    engine = create_engine_for(empty_database_url)
    try:
        upgrade(engine)
        assert _drift(engine) == []
    finally:
        engine.dispose()


def test_upgrade_by_url_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading by URL works from a directory without alembic.ini or migrations."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = create_engine_for(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_at_head_is_a_no_op(engine: Engine) -> None:
    """Upgrading a database already at head changes nothing and keeps it at head."""
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _drift(engine) == []


def test_each_test_starts_at_head_with_empty_tables(engine: Engine) -> None:
    """The shared fixture hands every test a database at head whose tables hold no rows."""
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }
    assert counts == dict.fromkeys(counts, 0)
    assert set(counts) >= STORE_TABLES
