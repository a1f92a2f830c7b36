"""Landing raw records and keeping stream cursors: the store's hot path.

:meth:`Store.land` upserts records into ``source_record`` with the dialect's native
``INSERT .. ON CONFLICT (system, object, external_id) DO UPDATE .. WHERE`` the content hash
differs (or the record comes back from the dead), so an unchanged record writes nothing.
Before writing, each batch reads the stored hashes of its keys (one query, the ids sent as
one JSON array) and drops the records whose hash is unchanged, so re-reading a stream costs
one indexed read per batch and no writes.

Each payload is serialized once, with orjson (sorted keys, compact, UTF-8): those bytes are
hashed and are also the text stored, byte for byte (``json``, not ``jsonb``, on PostgreSQL).
NaN and infinities are refused before anything of the call is written.

On PostgreSQL, new records are COPied straight into ``source_record`` in COPY text format
built from those bytes, streamed a chunk at a time while the rest of the batch is being
prepared, so the server stores one chunk while the client prepares the next; likewise the
batch is hashed while the server runs its pre-read (psycopg pipeline mode). Changed records
and tombstones are COPied into a session-local temporary table and moved with one
``INSERT .. SELECT .. ON CONFLICT``. On SQLite one ``executemany``. No ORM objects are built
on this path.

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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
import psycopg
from sqlalchemy import (
    JSON,
    Column,
    MetaData,
    Table,
    Text,
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
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql import Executable, literal_column

from ledgerlink.connector.protocol import Cursor, Page, Record
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.store.db import SQLITE_IMMEDIATE, for_writing
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
    """Return the hex sha256 of the canonical UTF-8 JSON of ``payload`` (what landing stores).

    Two payloads that differ only in key order or whitespace have the same hash. The hashed
    form is :func:`canonical_json` with non-ASCII characters written as UTF-8 rather than
    ``\\u`` escapes.

    Raises:
        TypeError: a value is not JSON (datetime, Decimal, set, ...).
        ValueError: a float is NaN or infinite.
    """
    return hashlib.sha256(_canonical_bytes(payload)).hexdigest()


# orjson with sorted keys writes the same compact JSON as the standard library with
# ``sort_keys=True, ensure_ascii=False`` about six times faster. Datetimes and dataclasses are
# passed through to the (absent) default so they are refused like the standard library does.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
_UTF8_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_NOT_FINITE = "Out of range float values are not JSON compliant"


def _all_finite(payload: Mapping[str, Any]) -> bool:
    """Whether no float in ``payload`` (at any depth) is NaN or infinite.

    orjson writes such floats as ``null``; the store refuses them instead.
    """
    stack: list[Any] = [payload]
    while stack:
        node = stack.pop()
        for value in node.values() if type(node) is dict else node:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN - NaN and inf - inf are NaN
                    return False
            elif kind is dict or kind is list or kind is tuple:
                stack.append(value)
    return True


def _canonical_bytes(payload: Mapping[str, Any], *, check_finite: bool = True) -> bytes:
    """Return the canonical JSON of ``payload`` as UTF-8 bytes: sorted keys, no whitespace.

    Args:
        payload: the record's content.
        check_finite: refuse NaN and infinities (orjson would write them as ``null``); the
            landing path checks only the payloads it writes, with :func:`_require_finite`.

    Raises:
        TypeError: a value is not JSON.
        ValueError: a float is NaN or infinite, or a string holds a lone surrogate.
    """
    try:
        data = orjson.dumps(payload, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        # What orjson refuses but JSON allows (integers beyond 64 bits, non-string keys) or
        # what neither allows, for the standard library's own error.
        return _UTF8_ENCODER.encode(payload).encode("utf-8")
    if check_finite:
        _require_finite(payload)
    return data


def _require_finite(payload: Mapping[str, Any]) -> None:
    """Raise ValueError when a float of ``payload`` is NaN or infinite."""
    if not _all_finite(payload):
        raise ValueError(_NOT_FINITE)


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_text(value: str | None) -> bytes:
    """Return ``value`` as a field of PostgreSQL's COPY text format (``\\N`` for None)."""
    if value is None:
        return b"\\N"
    if _COPY_SPECIAL.search(value) is not None:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value.encode("utf-8")


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


_Row = tuple[str, bytes, str, str | None]  # external_id, canonical payload, hash, cursor value
_Encoded = tuple[bytes, str]  # canonical payload, hash


def _encode_live(batch: Sequence[Record]) -> list[_Encoded | None]:
    """Return the canonical bytes and hex hash of each live record (None for tombstones).

    Tombstones are encoded later, only if written (an already deleted record is skipped).

    Raises:
        TypeError, ValueError: a payload is not JSON (NaN is checked later, before writing).
    """
    encoded: list[_Encoded | None] = []
    for record in batch:
        if record.deleted:
            encoded.append(None)
        else:
            canonical = _canonical_bytes(record.payload, check_finite=False)
            encoded.append((canonical, hashlib.sha256(canonical).hexdigest()))
    return encoded


def _sqlite_row(
    system: str, object_name: str, row: _Row, now_db: Any, deleted_db: Any
) -> dict[str, Any]:
    external_id, canonical, digest, cursor_value = row
    return {
        "system": system,
        "object": object_name,
        "external_id": external_id,
        "payload_json": canonical.decode("utf-8"),
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


_COPY_SOURCE = (
    "COPY source_record (system, object, external_id, payload, content_hash, "
    "first_seen_at, last_seen_at, changed_at, cursor_value) FROM STDIN"
)
# Records encoded between two writes to the COPY stream (about 300 KB of JSON).
_COPY_CHUNK = 250
_PRE_READ_PG = (
    "SELECT external_id, content_hash, deleted_at IS NOT NULL FROM source_record "
    "WHERE system = %s AND object = %s "
    "AND external_id = ANY(ARRAY(SELECT json_array_elements_text(CAST(%s AS json))))"
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
        # The dialect's own processor: on SQLite the exact text SQLAlchemy stores and compares
        # against (with microseconds), not the sqlite3 module's default rendering of a datetime.
        self._timestamp_to_db: Any = (
            UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        )
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
                cast(_LANDING.c.payload, JSON),
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
            crash_point("land.before_cursor")
            self._save_cursor(conn, connector, page.stream, page.cursor, now)
            if self.dialect == "postgresql" and result.written == 0:
                # Only the cursor moved: no need to wait for the WAL flush (a few ms a page,
                # a quarter of a re-list of unchanged records). If the server crashes before
                # the flush, the cursor comes back one page earlier and those unchanged
                # records are read again, nothing more: a later page that writes records
                # commits synchronously, and its flush covers this one's WAL first.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
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
                # Only the key and change-time columns the store's queries filter on: sampling
                # the payloads as well would cost most of the analysis.
                conn.exec_driver_sql(
                    f"ANALYZE {_SOURCE.name} (system, object, external_id, changed_at)"
                )
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

    @staticmethod
    def _classify(
        batch: list[Record],
        stored: dict[str, tuple[str, bool]],
        encoded: Sequence[_Encoded | None],
    ) -> tuple[list[_Row], list[_Row], list[_Row]]:
        """Split ``batch`` into new, changed and tombstone rows; drop what is unchanged.

        ``encoded`` holds the canonical bytes and hash of each record of ``batch`` when known
        (see :func:`_encode_live`); the others are encoded here if they are written.

        Returns:
            (external_id, canonical payload, hash, cursor value) rows: records not stored yet,
            records stored with another hash or deleted, and tombstones of live or unknown ones.
        """
        fresh: list[_Row] = []  # not stored yet
        changed: list[_Row] = []  # stored with another hash, or deleted
        tombs: list[_Row] = []
        for record, known in zip(batch, encoded, strict=True):
            previous = stored.get(record.id)
            if record.deleted and previous is not None and previous[1]:
                continue  # already a tombstone
            if known is None:
                canonical = _canonical_bytes(record.payload, check_finite=False)
                digest = hashlib.sha256(canonical).hexdigest()
            else:
                canonical, digest = known
            if not record.deleted and previous == (digest, False):
                # Unchanged: the stored payload (checked when written) hashes the same.
                continue
            _require_finite(record.payload)  # before any write of the call
            row = (record.id, canonical, digest, record.cursor_value)
            if record.deleted:
                tombs.append(row)
            elif previous is None:
                fresh.append(row)
            else:
                changed.append(row)
        return fresh, changed, tombs

    def _land_batch(
        self,
        conn: Connection,
        system: str,
        object_name: str,
        batch: list[Record],
        now: datetime,
    ) -> LandResult:
        encoded: list[_Encoded | None] = []
        stored = self._stored_state(
            conn,
            system,
            object_name,
            [r.id for r in batch],
            lambda: encoded.extend(_encode_live(batch)),
        )
        if self.dialect == "postgresql":
            return self._land_batch_pg(
                conn,
                system=system,
                object_name=object_name,
                batch=batch,
                stored=stored,
                encoded=encoded,
                now=now,
            )
        fresh, changed, tombs = self._classify(batch, stored, encoded)
        # SQLite: the IMMEDIATE transaction holds the write lock: the pre-read counts are exact.
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

    def _land_batch_pg(
        self,
        conn: Connection,
        *,
        system: str,
        object_name: str,
        batch: list[Record],
        stored: dict[str, tuple[str, bool]],
        encoded: list[_Encoded | None],
        now: datetime,
    ) -> LandResult:
        """Land one batch on PostgreSQL (see :meth:`_land_batch`).

        New records are COPied straight into the table (the fastest path), streamed a chunk at
        a time while the rest of the batch is still being prepared (checked for NaN, put in
        COPY format), so the server stores one chunk while the client prepares the next (one
        core each). If another writer stored one
        of them since the pre-read, the savepoint is rolled back and they go through the
        upsert, which counts what it really did.
        """
        inserted = updated = deleted = 0
        if all(record.deleted or record.id in stored for record in batch):
            fresh, changed, tombs = self._classify(batch, stored, encoded)
        else:
            try:
                with conn.begin_nested():
                    fresh, changed, tombs = self._classify_and_copy(
                        conn,
                        system=system,
                        object_name=object_name,
                        batch=batch,
                        stored=stored,
                        encoded=encoded,
                        now=now,
                    )
                inserted = len(fresh)
            except (IntegrityError, psycopg.errors.UniqueViolation):
                fresh, changed, tombs = self._classify(batch, stored, encoded)
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
    def _copy_lines(rows: list[_Row], prefix: bytes, middle: bytes) -> bytes:
        """Return ``rows`` in COPY text format: prefix, id, payload, hash, middle, cursor."""
        plain = _COPY_SPECIAL.search("".join([row[0] + (row[3] or "") for row in rows])) is None
        if plain:  # the usual case: no id nor cursor value needs escaping
            return b"".join(
                [
                    b"%s%s\t%s\t%s%s%s\n"
                    % (
                        prefix,
                        external_id.encode("utf-8"),
                        canonical.replace(b"\\", b"\\\\"),  # compact JSON: no tab nor newline
                        digest.encode("ascii"),
                        middle,
                        b"\\N" if cursor_value is None else cursor_value.encode("utf-8"),
                    )
                    for external_id, canonical, digest, cursor_value in rows
                ]
            )
        return b"".join(
            [
                b"%s%s\t%s\t%s%s%s\n"
                % (
                    prefix,
                    _copy_text(external_id),
                    canonical.replace(b"\\", b"\\\\"),
                    digest.encode("ascii"),
                    middle,
                    _copy_text(cursor_value),
                )
                for external_id, canonical, digest, cursor_value in rows
            ]
        )

    @staticmethod
    def _copy(conn: Connection, statement: str, data: bytes) -> None:
        driver_connection: Any = conn.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(data)

    def _classify_and_copy(
        self,
        conn: Connection,
        *,
        system: str,
        object_name: str,
        batch: list[Record],
        stored: dict[str, tuple[str, bool]],
        encoded: list[_Encoded | None],
        now: datetime,
    ) -> tuple[list[_Row], list[_Row], list[_Row]]:
        """Classify ``batch`` as :meth:`_classify` does, COPying new records as they come."""
        stamp = _copy_text(now.isoformat())
        prefix = _copy_text(system) + b"\t" + _copy_text(object_name) + b"\t"
        middle = b"\t" + stamp + b"\t" + stamp + b"\t" + stamp + b"\t"
        fresh: list[_Row] = []
        changed: list[_Row] = []
        tombs: list[_Row] = []
        driver_connection: Any = conn.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(_COPY_SOURCE) as copy:
            for start in range(0, len(batch), _COPY_CHUNK):
                end = start + _COPY_CHUNK
                new, other, gone = self._classify(batch[start:end], stored, encoded[start:end])
                if new:
                    copy.write(self._copy_lines(new, prefix, middle))
                fresh += new
                changed += other
                tombs += gone
        return fresh, changed, tombs

    def _execute_pg(
        self,
        conn: Connection,
        stmt: Executable,
        *,
        system: str,
        object_name: str,
        rows: list[_Row],
        now: datetime,
    ) -> list[bool]:
        conn.exec_driver_sql(_LANDING_DDL)
        self._copy(
            conn,
            f"COPY {_LANDING.name} (external_id, payload, content_hash, cursor_value) FROM STDIN",
            self._copy_lines(rows, b"", b"\t"),
        )
        flags = list(
            conn.execute(stmt, {"system": system, "object": object_name, "now": now}).scalars()
        )
        conn.exec_driver_sql(f"TRUNCATE {_LANDING.name}")
        return flags

    def _stored_state(
        self,
        conn: Connection,
        system: str,
        object_name: str,
        ids: list[str],
        meanwhile: Callable[[], object],
    ) -> dict[str, tuple[str, bool]]:
        """Return (content hash, deleted) of the stored records among ``ids``.

        ``meanwhile`` is called once, on PostgreSQL while the server runs the query (the
        client encodes the batch on one core while the server reads on the other).
        """
        if self.dialect == "postgresql":
            # = ANY(array) probes the unique key once per id (given statistics: see
            # _refresh_statistics). Straight on the driver's cursor: plain tuples, and psycopg
            # prepares the statement after a few batches. In pipeline mode the query is sent
            # at once and its rows are read only when fetched.
            driver_connection: Any = conn.connection.driver_connection
            with driver_connection.pipeline(), driver_connection.cursor() as cursor:
                cursor.execute(_PRE_READ_PG, (system, object_name, orjson.dumps(ids).decode()))
                meanwhile()
                return {ext_id: (digest, gone) for ext_id, digest, gone in cursor.fetchall()}
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
            params: dict[str, Any] = {"ids": orjson.dumps(ids).decode()}
        meanwhile()
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
        with for_writing(self.engine).begin() as conn:
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
        with for_writing(self.engine).begin() as conn:
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
