"""Engines and schema migrations for the store.

:func:`create_engine_for` makes an engine for a database URL: SQLite (the embedded default)
in WAL mode with a busy timeout and foreign keys on, with real transactions (``BEGIN`` issued
by SQLAlchemy, not guessed by the driver); PostgreSQL through psycopg 3. :func:`upgrade` and
:func:`downgrade` run the Alembic migrations shipped inside this package, so they work from any
working directory and from an installed wheel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Select, create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url

__all__ = [
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_IMMEDIATE",
    "create_engine_for",
    "current_revision",
    "downgrade",
    "driver_rows",
    "for_writing",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Execution option: on SQLite, start the transaction with ``BEGIN IMMEDIATE`` (take the write
#: lock at once) so that what the transaction reads cannot change before it writes.
SQLITE_IMMEDIATE = "ledgerlink_sqlite_immediate"


def json_loads(text: str | bytes) -> Any:
    """Parse a JSON column's text: orjson (about four times the standard library's speed).

    Planning and matching read every landed payload of what they cover; parsing is most of
    that read. What orjson refuses and the standard library reads (``NaN``, ``Infinity``)
    falls back to the standard library. An integer beyond 64 bits, which no vendor sends, is
    the exception: orjson reads it as a float (inexact beyond 2**53) where the standard
    library gives the integer; the stored text keeps it exactly.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _normalize_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def for_writing(engine: Engine) -> Engine:
    """Return ``engine`` set up for a transaction that writes.

    On SQLite its transactions begin with ``BEGIN IMMEDIATE``: a deferred transaction that
    reads and then writes fails at once with "database is locked" when another connection
    wrote in between (its snapshot is stale, so waiting would not help), while an immediate
    one waits for the writer's lock up to the busy timeout. The daemon runs pulls, matching,
    planning and pushes in threads of one process, so every write path takes its lock up
    front. PostgreSQL needs nothing: the same engine is returned.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{SQLITE_IMMEDIATE: True})
    return engine


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the settings the store relies on.

    JSON columns are parsed with :func:`json_loads`. ``postgresql://`` URLs use psycopg 3.
    SQLite connections get ``journal_mode=WAL``,
    ``busy_timeout``, ``foreign_keys=ON`` and ``synchronous=NORMAL``; their transactions begin
    explicitly (deferred by default, ``BEGIN IMMEDIATE`` with the :data:`SQLITE_IMMEDIATE`
    execution option) so reads and writes of one transaction see one snapshot.

    Args:
        url: a SQLAlchemy database URL (``sqlite:///path.db``, ``postgresql+psycopg://...``).
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Returns:
        A new engine; the caller disposes of it.
    """
    parsed = _normalize_url(url)
    kwargs.setdefault("json_deserializer", json_loads)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if parsed.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def driver_rows(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as the database driver returns them: plain tuples, without
    SQLAlchemy's work per row (half the time of a read of every link, which plans make a few
    times a pass). For columns the driver gives as they are meant (text and integers), and a
    statement whose values may be written into its SQL. Runs in ``conn``'s transaction,
    begun as any statement would begin it."""
    sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    if not conn.in_transaction():
        conn.begin()  # as a statement through ``conn`` would (SQLite's BEGIN included)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return cast("list[tuple[Any, ...]]", cursor.fetchall())
    finally:
        cursor.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _migrate(engine_or_url: Engine | str | URL, action: str, revision: str) -> None:
    if not isinstance(engine_or_url, Engine):
        engine = create_engine_for(engine_or_url)
        try:
            _migrate(engine, action, revision)
        finally:
            engine.dispose()
        return
    with engine_or_url.begin() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction.

    Args:
        engine_or_url: an engine (left open) or a URL (an engine is made and disposed of).
        revision: target revision, ``head`` by default.

    Raises:
        alembic.util.CommandError: the revision is unknown.
        sqlalchemy.exc.SQLAlchemyError: the database refused a statement (nothing is applied).
    """
    _migrate(engine_or_url, "upgrade", revision)


def downgrade(engine_or_url: Engine | str | URL, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table) in one transaction.

    Args:
        engine_or_url: an engine (left open) or a URL (an engine is made and disposed of).
        revision: target revision, ``base`` by default.

    Raises:
        alembic.util.CommandError: the revision is unknown.
        sqlalchemy.exc.SQLAlchemyError: the database refused a statement (nothing is applied).
    """
    _migrate(engine_or_url, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """Return the database's current revision, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """Return the newest revision shipped with this version of ledgerlink."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a migration
        raise RuntimeError("no migrations found in " + str(MIGRATIONS_DIR))
    return head
