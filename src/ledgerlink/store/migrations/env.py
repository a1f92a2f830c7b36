"""Alembic environment for the ledgerlink store.

Runs online only. :func:`ledgerlink.store.db.upgrade` hands over an open connection through
``config.attributes["connection"]``; the ``alembic`` command line (``alembic.ini`` at the
repository root) gives ``sqlalchemy.url`` or the ``LEDGERLINK_DATABASE_URL`` environment
variable instead. SQLite gets batch mode so later migrations can alter tables.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import ledgerlink.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from ledgerlink.store.db import create_engine_for

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new engine from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("LEDGERLINK_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set LEDGERLINK_DATABASE_URL or sqlalchemy.url in alembic.ini")
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
