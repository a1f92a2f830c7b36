"""Landing raw records and keeping stream cursors: the store's hot path.

:meth:`Store.land` upserts records into ``source_record`` with the dialect's native
``INSERT .. ON CONFLICT (system, object, external_id) DO UPDATE .. WHERE`` the content hash
differs (or the record comes back from the dead), so an unchanged record writes nothing.
Before writing, each batch reads the stored hashes of its keys and drops the records whose
hash is unchanged, so re-reading a stream costs one indexed read per batch and no writes.
On PostgreSQL the changed records of a batch are COPied into a session-local temporary table
and moved with one ``INSERT .. SELECT .. ON CONFLICT``; on SQLite one ``executemany``. No ORM
objects are built on this path. Payloads are serialized once (the canonical JSON that is
hashed is also what is stored).

Counting: on PostgreSQL the upsert returns ``xmax = 0`` for inserted rows (updated rows carry
the updating transaction's id), and rows the ``WHERE`` filtered out are not returned (another
writer already stored the same content): exact even with concurrent writers. On SQLite the
landing transaction starts with ``BEGIN IMMEDIATE``, so the pre-read is exact by itself.
Counts are per distinct (object, id): when a call holds the same record twice, the last one wins.

Timestamps (see :mod:`ledgerlink.store.models`): a change sets ``changed_at``; a live record
also sets ``last_seen_at``; a tombstone sets ``deleted_at`` and keeps the last payload and hash.

:meth:`Store.land_page` lands a page and saves its cursor in one transaction: a crash or an
error leaves both as they were, so a page is never skipped nor half applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import psycopg
from sqlalchemy import (
    Column,
    MetaData,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql import Executable, literal_column

from ledgerlink.connector.protocol import Cursor, Page, Record
from ledgerlink.log import get_logger
from ledgerlink.store.db import SQLITE_IMMEDIATE
from ledgerlink.store.models import SourceRecord, SyncState
from ledgerlink.store.types import UTCDateTime

__all__ = ["DEFAULT_BATCH_SIZE", "LandResult", "Store", "canonical_json", "content_hash"]

DEFAULT_BATCH_SIZE = 2000
_ANALYZE_MIN_ROWS = 5000
_log = get_logger(component="store")

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
)
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_STATE = SyncState.__table__  # type: ignore[attr-defined]


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of ``payload``: sorted keys, no whitespace, ASCII only.

    Raises:
        TypeError: a value is not JSON (datetime, Decimal, set, ...).
        ValueError: a float is NaN or infinite.
    """
    return _ENCODER.encode(payload)


def content_hash(payload: Mapping[str, Any]) -> str:
    """Return the hex sha256 of the canonical JSON of ``payload``.

    Two payloads that differ only in key order or whitespace have the same hash.

    Raises:
        TypeError: a value is not JSON.
        ValueError: a float is NaN or infinite.
    """
    return hashlib.sha256(_ENCODER.encode(payload).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class LandResult:
    """What landing did: new records, changed records, unchanged ones, and new deletions."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    @property
    def written(self) -> int:
        """Number of rows written (everything but the unchanged)."""
        return self.inserted + self.updated + self.deleted

    def __add__(self, other: LandResult) -> LandResult:
        return LandResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
        )


_Row = tuple[str, str, str, str | None]  # external_id, canonical payload, hash, cursor value


def _sqlite_row(
    system: str, object_name: str, row: _Row, now_db: Any, deleted_db: Any
) -> dict[str, Any]:
    external_id, canonical, digest, cursor_value = row
    return {
        "system": system,
        "object": object_name,
        "external_id": external_id,
        "payload_json": canonical,
        "content_hash": digest,
        "now_db": now_db,
        "deleted_db": deleted_db,
        "cursor_value": cursor_value,
    }


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


_COLUMNS = [
    "system",
    "object",
    "external_id",
    "payload",
    "content_hash",
    "first_seen_at",
    "last_seen_at",
    "changed_at",
    "deleted_at",
    "cursor_value",
]
_KEY = ["system", "object", "external_id"]

# PostgreSQL only: where a batch is COPied before the upsert. Private to each session; its rows
# go at commit (and are truncated after each batch). Not part of the migrated schema.
_LANDING = Table(
    "ledgerlink_landing",
    MetaData(),
    Column("external_id", Text(), nullable=False),
    Column("payload", Text(), nullable=False),
    Column("content_hash", Text(), nullable=False),
    Column("cursor_value", Text()),
)
_LANDING_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_LANDING.name} (external_id text NOT NULL, "
    "payload text NOT NULL, content_hash text NOT NULL, cursor_value text) "
    "ON COMMIT DELETE ROWS"
)


def _on_conflict_live(stmt: Any) -> Any:
    """A live record replaces a different stored one, or brings a deleted one back."""
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=_KEY,
        set_={
            "payload": excluded.payload,
            "content_hash": excluded.content_hash,
            "last_seen_at": excluded.last_seen_at,
            "changed_at": excluded.changed_at,
            "deleted_at": None,
            "cursor_value": excluded.cursor_value,
        },
        where=or_(
            _SOURCE.c.content_hash != excluded.content_hash,
            _SOURCE.c.deleted_at.is_not(None),
        ),
    )


def _on_conflict_tomb(stmt: Any) -> Any:
    """A tombstone marks a live stored record deleted and keeps its last payload."""
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=_KEY,
        set_={
            "deleted_at": excluded.deleted_at,
            "changed_at": excluded.changed_at,
            "cursor_value": func.coalesce(excluded.cursor_value, _SOURCE.c.cursor_value),
        },
        where=_SOURCE.c.deleted_at.is_(None),
    )


class Store:
    """Access to the store used by the sync engine: landing records and stream cursors.

    Args:
        engine: from :func:`ledgerlink.store.create_engine_for`, migrated to head.
        batch_size: records per upsert statement.
    """

    def __init__(self, engine: Engine, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.engine = engine
        self.batch_size = batch_size
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        self._write_engine = (
            engine.execution_options(**{SQLITE_IMMEDIATE: True})
            if self.dialect == "sqlite"
            else engine
        )
        self._live_stmt, self._tomb_stmt = self._build_upserts()
        self._timestamp_to_db: Any = UTCDateTime().bind_processor(engine.dialect)
        self._inserted_since_analyze = 0
        self._rows_at_analyze = 0

    def __repr__(self) -> str:
        return f"Store(dialect={self.dialect!r}, batch_size={self.batch_size})"

    # -- statements -------------------------------------------------------------------------

    def _build_upserts(self) -> tuple[Executable, Executable]:
        if self.dialect == "postgresql":
            return self._build_postgresql_upserts()
        # Timestamps are converted to the stored form once per batch (see _land_batch), not
        # once per row and column: a quarter of the time of a first load otherwise.
        now_db = bindparam("now_db", type_=Text())
        base = sqlite.insert(_SOURCE).values(
            payload=bindparam("payload_json", type_=Text()),
            first_seen_at=now_db,
            last_seen_at=now_db,
            changed_at=now_db,
            deleted_at=bindparam("deleted_db", type_=Text()),
        )
        return _on_conflict_live(base), _on_conflict_tomb(base)

    def _build_postgresql_upserts(self) -> tuple[Executable, Executable]:
        # The batch is COPied into a session-local temporary table, then moved with one
        # INSERT .. SELECT .. ON CONFLICT: far cheaper than binding thousands of parameters.
        now = bindparam("now", type_=UTCDateTime())
        inserted: Any = literal_column("(xmax = 0)").label("inserted")
        statements = []
        for deleted_at in (null(), now):
            source = select(
                bindparam("system", type_=Text()),
                bindparam("object", type_=Text()),
                _LANDING.c.external_id,
                cast(_LANDING.c.payload, JSONB),
                _LANDING.c.content_hash,
                now,
                now,
                now,
                deleted_at,
                _LANDING.c.cursor_value,
            )
            statements.append(postgresql.insert(_SOURCE).from_select(_COLUMNS, source))
        live, tomb = statements
        return (
            _on_conflict_live(live).returning(inserted),
            _on_conflict_tomb(tomb).returning(inserted),
        )

    # -- landing ----------------------------------------------------------------------------

    def land(self, system: str, records: Sequence[Record], *, now: datetime) -> LandResult:
        """Upsert ``records`` of ``system`` into ``source_record`` in one transaction.

        Args:
            system: the system the records come from (``salesforce``, ``stripe``, ...).
            records: records and tombstones, any objects, in source order.
            now: the landing time, timezone-aware.

        Returns:
            How many records were inserted, updated, unchanged and newly deleted.

        Raises:
            TypeError, ValueError: a payload is not JSON, or ``now`` is naive.
            sqlalchemy.exc.SQLAlchemyError: the database refused the write (nothing is kept).
        """
        _require_aware(now)
        with self._write_engine.begin() as conn:
            result = self._land(conn, system, records, now)
        self._refresh_statistics(result.inserted)
        return result

    def land_page(self, system: str, page: Page, *, connector: str, now: datetime) -> LandResult:
        """Land a page's records and save its cursor for (``connector``, ``page.stream``) together.

        Args:
            system: the system the records come from.
            page: the records and the cursor valid once they are stored.
            connector: the connector whose cursor is saved (usually the system's name).
            now: the landing time, timezone-aware.

        Returns:
            The landing counts.

        Raises:
            TypeError, ValueError: a payload or the cursor is not JSON, or ``now`` is naive;
                neither records nor cursor are kept.
            sqlalchemy.exc.SQLAlchemyError: the database refused a write; nothing is kept.
        """
        _require_aware(now)
        with self._write_engine.begin() as conn:
            result = self._land(conn, system, page.records, now)
            self._save_cursor(conn, connector, page.stream, page.cursor, now)
        self._refresh_statistics(result.inserted)
        return result

    def _refresh_statistics(self, inserted: int) -> None:
        """Analyze ``source_record`` on PostgreSQL each time its size about doubled.

        The pre-read of stored hashes relies on the planner knowing that (system, object)
        matches many rows. A table loaded faster than autovacuum analyzes it has no statistics,
        and the planner would then scan every stored row of the object per batch: quadratic
        over a first sync. ANALYZE samples a bounded number of rows, so doing it when the rows
        landed by this store reach the number known at the last analysis costs a few runs
        over a whole bulk load.
        """
        if self.dialect != "postgresql" or inserted == 0:
            return
        self._inserted_since_analyze += inserted
        if self._inserted_since_analyze < max(_ANALYZE_MIN_ROWS, self._rows_at_analyze):
            return
        self._inserted_since_analyze = 0
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"ANALYZE {_SOURCE.name}")
                estimate = conn.execute(
                    text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"),
                    {"name": _SOURCE.name},
                ).scalar()
                conn.commit()
        except SQLAlchemyError as exc:  # the landing is committed; statistics are an optimisation
            _log.warning("store.analyze_failed", table=_SOURCE.name, error=type(exc).__name__)
            return
        self._rows_at_analyze = max(int(estimate or 0), 0)

    def _land(
        self, conn: Connection, system: str, records: Sequence[Record], now: datetime
    ) -> LandResult:
        latest: dict[str, dict[str, Record]] = {}
        for record in records:
            latest.setdefault(record.object, {})[record.id] = record
        result = LandResult()
        for object_name, by_id in latest.items():
            batch_iter = iter(by_id.values())
            while batch := list(islice(batch_iter, self.batch_size)):
                result += self._land_batch(conn, system, object_name, batch, now)
        return result

    def _land_batch(
        self,
        conn: Connection,
        system: str,
        object_name: str,
        batch: list[Record],
        now: datetime,
    ) -> LandResult:
        stored = self._stored_state(conn, system, object_name, [r.id for r in batch])
        # (external_id, canonical payload, hash, cursor value) of what must be written
        fresh: list[_Row] = []  # not stored yet
        changed: list[_Row] = []  # stored with another hash, or deleted
        tombs: list[_Row] = []
        for record in batch:
            previous = stored.get(record.id)
            if record.deleted and previous is not None and previous[1]:
                continue  # already a tombstone
            canonical = _ENCODER.encode(record.payload)
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            row = (record.id, canonical, digest, record.cursor_value)
            if record.deleted:
                tombs.append(row)
            elif previous is None:
                fresh.append(row)
            elif previous != (digest, False):
                changed.append(row)
        if self.dialect == "sqlite":
            # The IMMEDIATE transaction holds the write lock: the pre-read counts are exact.
            now_db = self._timestamp_to_db(now)
            for rows, stmt, deleted_db in (
                (fresh + changed, self._live_stmt, None),
                (tombs, self._tomb_stmt, now_db),
            ):
                if rows:
                    conn.execute(
                        stmt,
                        [_sqlite_row(system, object_name, row, now_db, deleted_db) for row in rows],
                    )
            written = len(fresh) + len(changed) + len(tombs)
            return LandResult(len(fresh), len(changed), len(batch) - written, len(tombs))
        # PostgreSQL: new records are COPied straight into the table (the fastest path); if
        # another writer stored one of them since the pre-read, the savepoint is rolled back
        # and they go through the upsert, which counts what it really did.
        inserted = updated = deleted = 0
        if fresh:
            try:
                with conn.begin_nested():
                    self._copy_fresh(
                        conn, system=system, object_name=object_name, rows=fresh, now=now
                    )
                inserted = len(fresh)
            except (IntegrityError, psycopg.errors.UniqueViolation):
                changed = fresh + changed
        if changed:
            flags = self._execute_pg(
                conn, self._live_stmt, system=system, object_name=object_name, rows=changed, now=now
            )
            inserted += sum(1 for flag in flags if flag)
            updated = sum(1 for flag in flags if not flag)
        if tombs:
            deleted = len(
                self._execute_pg(
                    conn,
                    self._tomb_stmt,
                    system=system,
                    object_name=object_name,
                    rows=tombs,
                    now=now,
                )
            )
        return LandResult(inserted, updated, len(batch) - inserted - updated - deleted, deleted)

    @staticmethod
    def _copy_fresh(
        conn: Connection, *, system: str, object_name: str, rows: list[_Row], now: datetime
    ) -> None:
        driver_connection: Any = conn.connection.driver_connection
        with (
            driver_connection.cursor() as cursor,
            cursor.copy(
                f"COPY {_SOURCE.name} (system, object, external_id, payload, content_hash, "
                "first_seen_at, last_seen_at, changed_at, cursor_value) FROM STDIN"
            ) as copy,
        ):
            for external_id, canonical, digest, cursor_value in rows:
                copy.write_row(
                    (
                        system,
                        object_name,
                        external_id,
                        canonical,
                        digest,
                        now,
                        now,
                        now,
                        cursor_value,
                    )
                )

    @staticmethod
    def _execute_pg(
        conn: Connection,
        stmt: Executable,
        *,
        system: str,
        object_name: str,
        rows: list[_Row],
        now: datetime,
    ) -> list[bool]:
        conn.exec_driver_sql(_LANDING_DDL)
        driver_connection: Any = conn.connection.driver_connection
        with (
            driver_connection.cursor() as cursor,
            cursor.copy(
                f"COPY {_LANDING.name} (external_id, payload, content_hash, cursor_value) "
                "FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        flags = list(
            conn.execute(stmt, {"system": system, "object": object_name, "now": now}).scalars()
        )
        conn.exec_driver_sql(f"TRUNCATE {_LANDING.name}")
        return flags

    def _stored_state(
        self, conn: Connection, system: str, object_name: str, ids: list[str]
    ) -> dict[str, tuple[str, bool]]:
        """Return (content hash, deleted) of the stored records among ``ids``."""
        if self.dialect == "postgresql":
            # = ANY(array) probes the unique key once per id (given statistics: see
            # _refresh_statistics).
            query = select(
                _SOURCE.c.external_id,
                _SOURCE.c.content_hash,
                _SOURCE.c.deleted_at.is_not(None),
            ).where(
                _SOURCE.c.system == system,
                _SOURCE.c.object == object_name,
                _SOURCE.c.external_id == any_(bindparam("ids", type_=ARRAY(Text()))),
            )
            params: dict[str, Any] = {"ids": ids}
        else:
            # One JSON parameter instead of thousands of bound values.
            wanted = _SOURCE.c.external_id.in_(
                select(column("value", Text())).select_from(
                    func.json_each(bindparam("ids", type_=Text()))
                )
            )
            query = select(
                _SOURCE.c.external_id,
                _SOURCE.c.content_hash,
                _SOURCE.c.deleted_at.is_not(None),
            ).where(_SOURCE.c.system == system, _SOURCE.c.object == object_name, wanted)
            params = {"ids": json.dumps(ids)}
        return {
            ext_id: (digest, bool(gone)) for ext_id, digest, gone in conn.execute(query, params)
        }

    # -- cursors ----------------------------------------------------------------------------

    def load_cursor(self, connector: str, stream: str) -> Cursor:
        """Return the saved cursor of (``connector``, ``stream``), or the initial cursor."""
        with self.engine.connect() as conn:
            data = conn.execute(
                select(_STATE.c.cursor).where(
                    _STATE.c.connector == connector, _STATE.c.stream == stream
                )
            ).scalar_one_or_none()
        return Cursor.from_json(data)

    def save_cursor(self, connector: str, stream: str, cursor: Cursor, *, now: datetime) -> None:
        """Save ``cursor`` for (``connector``, ``stream``), mark the stream successful now.

        Raises:
            TypeError, ValueError: the cursor state is not JSON, or ``now`` is naive.
        """
        _require_aware(now)
        with self.engine.begin() as conn:
            self._save_cursor(conn, connector, stream, cursor, now)

    def _save_cursor(
        self, conn: Connection, connector: str, stream: str, cursor: Cursor, now: datetime
    ) -> None:
        data = cursor.to_json()
        canonical_json(data)  # fail before writing when the state is not JSON
        values = {
            "connector": connector,
            "stream": stream,
            "cursor": data,
            "updated_at": now,
            "last_success_at": now,
            "last_error": None,
        }
        conn.execute(
            self._upsert_state(values, ["cursor", "updated_at", "last_success_at", "last_error"])
        )

    def save_error(self, connector: str, stream: str, error: str, *, now: datetime) -> None:
        """Record that the last run of (``connector``, ``stream``) failed; the cursor stays."""
        _require_aware(now)
        values = {
            "connector": connector,
            "stream": stream,
            "cursor": Cursor().to_json(),
            "updated_at": now,
            "last_error": error,
        }
        with self.engine.begin() as conn:
            conn.execute(self._upsert_state(values, ["updated_at", "last_error"]))

    def sync_states(self) -> list[SyncState]:
        """Return the state of every stream ever synced, ordered by connector and stream."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_STATE).order_by(_STATE.c.connector, _STATE.c.stream)
            ).mappings()
            return [SyncState(**row) for row in rows]

    def _upsert_state(self, values: dict[str, Any], update: list[str]) -> Executable:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(_STATE).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=[_STATE.c.connector, _STATE.c.stream],
            set_={name: stmt.excluded[name] for name in update},
        )

    # -- reading ----------------------------------------------------------------------------

    def get_source_record(
        self, system: str, object_name: str, external_id: str
    ) -> SourceRecord | None:
        """Return the landed record (live or tombstone) with this key, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(_SOURCE).where(
                        _SOURCE.c.system == system,
                        _SOURCE.c.object == object_name,
                        _SOURCE.c.external_id == external_id,
                    )
                )
                .mappings()
                .one_or_none()
            )
        return None if row is None else SourceRecord(**row)
