"""Landing raw records and keeping stream cursors: the store's hot path.

:meth:`Store.land` upserts records into ``source_record`` with the dialect's native
``INSERT .. ON CONFLICT (system, object, external_id) DO UPDATE .. WHERE`` the content hash
differs (or the record comes back from the dead), so an unchanged record writes nothing.
Before writing, each batch reads what the store holds for its keys (one query, the ids sent
as one JSON array; on PostgreSQL the answer is one text: the stored hashes in the batch's
order) and drops the records whose hash is unchanged. A batch whose hashes all match, the
usual case when a stream is read again, costs that one indexed read, one comparison of two
lists of strings and no writes.

Each payload is serialized with orjson (sorted keys, compact, UTF-8) and hashed (sha256);
the text stored is those bytes, byte for byte (``json``, not ``jsonb``, on PostgreSQL). When
the previous batch of the same object wrote few of its records (a re-read), the bytes are
dropped as soon as they are hashed and the records found changed are serialized again:
keeping them cost more than the serialization saved. NaN and infinities are refused before
anything of the call is written.

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
Landing transactions run one at a time (on SQLite the database's write lock, which
``BEGIN IMMEDIATE`` takes; on PostgreSQL a transaction-level advisory lock), and unless the
caller gives a time, their records are stamped once the transaction holds that lock: a
landing that commits later never carries an earlier ``changed_at`` than one already visible.
A reader that keeps what it read and asks for what changed since the newest change it saw
(:class:`ledgerlink.sync._landed.ChangedRecords`) then needs to look back only a few
seconds, for the clock's own adjustments (and, with processes on several hosts landing into
one PostgreSQL store, the difference between their clocks), not the length of the longest
landing. The stamp is the process's own clock, as the cycle's ``now`` that matching compares
it with.

:meth:`Store.land_page` lands a page and saves its cursor in one transaction: a crash or an
error leaves both as they were, so a page is never skipped nor half applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
_DUMPS = orjson.dumps
_SHA256 = hashlib.sha256


def _encode_live(
    batch: Sequence[Record], *, keep: bool
) -> tuple[Sequence[bytes | None], Sequence[str | None]]:
    """Return the canonical bytes (when ``keep``) and the hex hash of each live record.

    Tombstones get None for both: they are encoded later, only if written (an already deleted
    record is skipped), and so are live records whose bytes were not kept.

    Encoding and hashing is most of the client's work when a stream is read again unchanged.
    Keeping a batch's bytes until it is classified costs about a third as much again (a few
    MB of objects above the small-object allocator's limit, taken from and given back to the
    C allocator each batch), so it pays only when most of the batch is written: see
    :meth:`Store._land_batch`.

    Raises:
        TypeError, ValueError: a payload is not JSON (NaN is checked later, before writing).
    """
    if any(record.deleted for record in batch):
        some = [
            None if record.deleted else _canonical_bytes(record.payload, check_finite=False)
            for record in batch
        ]
        return some, [None if data is None else _SHA256(data).hexdigest() for data in some]
    if not keep:
        try:
            digests = [
                _SHA256(_DUMPS(record.payload, option=_ORJSON_OPTIONS)).hexdigest()
                for record in batch
            ]
        except orjson.JSONEncodeError:
            digests = [
                _SHA256(_canonical_bytes(record.payload, check_finite=False)).hexdigest()
                for record in batch
            ]
        return [None] * len(batch), digests
    try:
        canonical = [_DUMPS(record.payload, option=_ORJSON_OPTIONS) for record in batch]
    except orjson.JSONEncodeError:
        canonical = [_canonical_bytes(record.payload, check_finite=False) for record in batch]
    return canonical, [_SHA256(data).hexdigest() for data in canonical]


def _latest_by_object(records: Sequence[Record]) -> list[tuple[str, list[Record]]]:
    """Group ``records`` by object, keeping the last record of each id at its first position.

    A page usually holds one object and no repeated id: then the records are taken as they are.
    """
    if not records:
        return []
    first = records[0].object
    if all(record.object == first for record in records):
        latest = {record.id: record for record in records}
        unique = list(records) if len(latest) == len(records) else list(latest.values())
        return [(first, unique)]
    grouped: dict[str, dict[str, Record]] = {}
    for record in records:
        grouped.setdefault(record.object, {})[record.id] = record
    return [(object_name, list(by_id.values())) for object_name, by_id in grouped.items()]


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


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch of one object (distinct ids), item by item with what is known of each record.

    ``stored`` says what the store holds for each record (see :meth:`Store._stored_state`);
    ``canonical`` and ``digests`` hold its canonical bytes and hash as far as known (see
    :func:`_encode_live`): the others are encoded by :meth:`classify` if they are written.
    """

    system: str
    object_name: str
    records: list[Record]
    stored: Sequence[str]
    canonical: Sequence[bytes | None]
    digests: Sequence[str | None]
    now: datetime

    def part(self, start: int, stop: int) -> _Batch:
        """The records ``start`` to ``stop`` (excluded), with what is known of them."""
        return _Batch(
            self.system,
            self.object_name,
            self.records[start:stop],
            self.stored[start:stop],
            self.canonical[start:stop],
            self.digests[start:stop],
            self.now,
        )

    def classify(self) -> tuple[list[_Row], list[_Row], list[_Row]]:
        """Split the batch into new, changed and tombstone rows; drop what is unchanged.

        Returns:
            (external_id, canonical payload, hash, cursor value) rows: records not stored yet,
            records stored with another hash or deleted, and tombstones of live or unknown ones.
        """
        fresh: list[_Row] = []  # not stored yet
        changed: list[_Row] = []  # stored with another hash, or deleted
        tombs: list[_Row] = []
        for record, previous, known, known_digest in zip(
            self.records, self.stored, self.canonical, self.digests, strict=True
        ):
            if record.deleted:
                if previous.endswith(_GONE):
                    continue  # already a tombstone
            elif previous == known_digest:
                continue  # unchanged: the stored payload (checked when written) hashes the same
            _require_finite(record.payload)  # before any write of the call
            if known is None or known_digest is None:
                data = _canonical_bytes(record.payload, check_finite=False)
                row = (record.id, data, _SHA256(data).hexdigest(), record.cursor_value)
            else:
                row = (record.id, known, known_digest, record.cursor_value)
            if record.deleted:
                tombs.append(row)
            elif previous:
                changed.append(row)
            else:
                fresh.append(row)
        return fresh, changed, tombs


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


_LANDING_LOCK = 0x6C656467_65726C6B
"""The PostgreSQL advisory lock key that landing transactions take, one at a time."""


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
# What the store holds for each id of a batch, in the batch's order, as one text (see
# Store._stored_state): a nested loop probing the unique key once per id.
_GONE = "*"
_SEPARATOR = "\n"
_PRE_READ_PG = (
    "SELECT string_agg(CASE WHEN s.id IS NULL THEN '' WHEN s.deleted_at IS NULL "
    "THEN s.content_hash ELSE s.content_hash || '*' END, chr(10) ORDER BY t.ord) "
    "FROM json_array_elements_text(CAST(%s AS json)) WITH ORDINALITY AS t(external_id, ord) "
    "LEFT JOIN source_record AS s ON s.system = %s AND s.object = %s "
    "AND s.external_id = t.external_id"
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
        self._pre_read_sqlite = self._build_pre_read_sqlite()
        # Built once: building an upsert costs more than running it on a page of unchanged
        # records (it is in every land_page).
        self._save_cursor_stmt = self._upsert_state(
            ["cursor", "updated_at", "last_success_at", "last_error"]
        )
        self._save_error_stmt = self._upsert_state(["updated_at", "last_error"])
        # Per (system, object): whether the last batch wrote most of its records (see
        # _land_batch). Only a guess that speeds up the next batch: races are harmless.
        self._keep_encoded: dict[tuple[str, str], bool] = {}
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

    @staticmethod
    def _build_pre_read_sqlite() -> Executable:
        """The stored (id, hash, deleted) of the ids given as one JSON array (``ids``)."""
        wanted = _SOURCE.c.external_id.in_(
            select(column("value", Text())).select_from(
                func.json_each(bindparam("ids", type_=Text()))
            )
        )
        return select(
            _SOURCE.c.external_id, _SOURCE.c.content_hash, _SOURCE.c.deleted_at.is_not(None)
        ).where(
            _SOURCE.c.system == bindparam("system"),
            _SOURCE.c.object == bindparam("object"),
            wanted,
        )

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

    def land(
        self, system: str, records: Sequence[Record], *, now: datetime | None = None
    ) -> LandResult:
        """Upsert ``records`` of ``system`` into ``source_record`` in one transaction.

        Args:
            system: the system the records come from (``salesforce``, ``stripe``, ...).
            records: records and tombstones, any objects, in source order.
            now: the landing time, timezone-aware; None (what the sync paths pass): the time
                the transaction took the landing lock (see :meth:`landing_time`).

        Returns:
            How many records were inserted, updated, unchanged and newly deleted.

        Raises:
            TypeError, ValueError: a payload is not JSON, or ``now`` is naive.
            sqlalchemy.exc.SQLAlchemyError: the database refused the write (nothing is kept).
        """
        if now is not None:
            _require_aware(now)
        with self._write_engine.begin() as conn:
            result = self._land(conn, system, records, self.landing_time(conn, now))
        self._refresh_statistics(result.inserted)
        return result

    def land_page(
        self, system: str, page: Page, *, connector: str, now: datetime | None = None
    ) -> LandResult:
        """Land a page's records and save its cursor for (``connector``, ``page.stream``) together.

        Args:
            system: the system the records come from.
            page: the records and the cursor valid once they are stored.
            connector: the connector whose cursor is saved (usually the system's name).
            now: the landing time, timezone-aware; None (what the sync engine passes): the time
                the transaction took the landing lock (see :meth:`landing_time`).

        Returns:
            The landing counts.

        Raises:
            TypeError, ValueError: a payload or the cursor is not JSON, or ``now`` is naive;
                neither records nor cursor are kept.
            sqlalchemy.exc.SQLAlchemyError: the database refused a write; nothing is kept.
        """
        if now is not None:
            _require_aware(now)
        with self._write_engine.begin() as conn:
            stamp = self.landing_time(conn, now)
            result = self._land(conn, system, page.records, stamp)
            crash_point("land.before_cursor")
            self._save_cursor(conn, connector, page.stream, page.cursor, stamp)
            if self.dialect == "postgresql" and result.written == 0:
                # Only the cursor moved: no need to wait for the WAL flush (a few ms a page,
                # a quarter of a re-list of unchanged records). If the server crashes before
                # the flush, the cursor comes back one page earlier and those unchanged
                # records are read again, nothing more: a later page that writes records
                # commits synchronously, and its flush covers this one's WAL first.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        self._refresh_statistics(result.inserted)
        return result

    def landing_time(self, conn: Connection, now: datetime | None = None) -> datetime:
        """Take the landing lock for ``conn``'s transaction; the time its records carry.

        Landing transactions hold the lock until they commit, so they commit in the order
        they took it. SQLite's ``BEGIN IMMEDIATE`` (how :attr:`_write_engine` begins) took the
        database's write lock already; PostgreSQL takes a transaction-level advisory lock. Must
        be the first thing a landing transaction does, before it writes.

        Args:
            conn: a connection of :attr:`_write_engine`, in the landing transaction.
            now: a time given by the caller (tests, replays) is returned as it is, after the
                lock is taken.

        Returns:
            ``now``, or the time the lock was taken (timezone-aware UTC).
        """
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LANDING_LOCK})
        return now if now is not None else datetime.now(UTC)

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
        result = LandResult()
        size = self.batch_size
        for object_name, unique in _latest_by_object(records):
            for start in range(0, len(unique), size):
                batch = unique[start : start + size]
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
        """Land one batch of one object (distinct ids) in the caller's transaction.

        The batch is encoded while its stored hashes are read. Its canonical bytes are kept
        for the records to write only when the previous batch of the same object wrote most
        of its records (a first load, where every record is written); on a re-read they are
        dropped once hashed and the few changed records are encoded again. A wrong guess costs
        some time, never a wrong result.
        """
        key = (system, object_name)
        keep = self._keep_encoded.get(key, True)
        encoded: list[tuple[Sequence[bytes | None], Sequence[str | None]]] = []
        stored = self._stored_state(
            conn,
            system,
            object_name,
            [record.id for record in batch],
            lambda: encoded.append(_encode_live(batch, keep=keep)),
        )
        canonical, digests = encoded[0]
        if stored == digests:
            # Every record is live and stored with the same hash (a re-read of an unchanged
            # stream): one comparison of two lists of strings, nothing to write.
            result = LandResult(unchanged=len(batch))
        else:
            result = self._write_batch(
                conn, _Batch(system, object_name, batch, stored, canonical, digests, now)
            )
        self._keep_encoded[key] = 2 * result.written > len(batch)
        return result

    def _write_batch(self, conn: Connection, batch: _Batch) -> LandResult:
        """Write what changed in ``batch`` (see :meth:`_land_batch`) and count it."""
        if self.dialect == "postgresql":
            return self._land_batch_pg(conn, batch)
        fresh, changed, tombs = batch.classify()
        # SQLite: the IMMEDIATE transaction holds the write lock: the pre-read counts are exact.
        now_db = self._timestamp_to_db(batch.now)
        system, object_name = batch.system, batch.object_name
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
        return LandResult(len(fresh), len(changed), len(batch.records) - written, len(tombs))

    def _land_batch_pg(self, conn: Connection, batch: _Batch) -> LandResult:
        """Land one batch on PostgreSQL (see :meth:`_land_batch`).

        New records are COPied straight into the table (the fastest path), streamed a chunk at
        a time while the rest of the batch is still being prepared (checked for NaN, put in
        COPY format), so the server stores one chunk while the client prepares the next (one
        core each). If another writer stored one of them since the pre-read, the savepoint is
        rolled back and they go through the upsert, which counts what it really did.
        """
        inserted = updated = deleted = 0
        records = batch.records
        if all(
            previous or record.deleted
            for record, previous in zip(records, batch.stored, strict=True)
        ):
            fresh, changed, tombs = batch.classify()
        else:
            try:
                with conn.begin_nested():
                    fresh, changed, tombs = self._classify_and_copy(conn, batch)
                inserted = len(fresh)
            except (IntegrityError, psycopg.errors.UniqueViolation):
                fresh, changed, tombs = batch.classify()
                changed = fresh + changed
        if changed:
            flags = self._execute_pg(conn, self._live_stmt, batch, changed)
            inserted += sum(1 for flag in flags if flag)
            updated = sum(1 for flag in flags if not flag)
        if tombs:
            deleted = len(self._execute_pg(conn, self._tomb_stmt, batch, tombs))
        return LandResult(inserted, updated, len(records) - inserted - updated - deleted, deleted)

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
        self, conn: Connection, batch: _Batch
    ) -> tuple[list[_Row], list[_Row], list[_Row]]:
        """Classify ``batch`` as :meth:`_Batch.classify` does, COPying new records as they come."""
        stamp = _copy_text(batch.now.isoformat())
        prefix = _copy_text(batch.system) + b"\t" + _copy_text(batch.object_name) + b"\t"
        middle = b"\t" + stamp + b"\t" + stamp + b"\t" + stamp + b"\t"
        fresh: list[_Row] = []
        changed: list[_Row] = []
        tombs: list[_Row] = []
        driver_connection: Any = conn.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(_COPY_SOURCE) as copy:
            for start in range(0, len(batch.records), _COPY_CHUNK):
                new, other, gone = batch.part(start, start + _COPY_CHUNK).classify()
                if new:
                    copy.write(self._copy_lines(new, prefix, middle))
                fresh += new
                changed += other
                tombs += gone
        return fresh, changed, tombs

    def _execute_pg(
        self, conn: Connection, stmt: Executable, batch: _Batch, rows: list[_Row]
    ) -> list[bool]:
        conn.exec_driver_sql(_LANDING_DDL)
        self._copy(
            conn,
            f"COPY {_LANDING.name} (external_id, payload, content_hash, cursor_value) FROM STDIN",
            self._copy_lines(rows, b"", b"\t"),
        )
        flags = list(
            conn.execute(
                stmt, {"system": batch.system, "object": batch.object_name, "now": batch.now}
            ).scalars()
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
    ) -> list[str]:
        """Return what the store holds for each of ``ids``, in the same order.

        Each item is ``""`` for a record not stored, its content hash for a live record, and
        the hash followed by ``*`` for a tombstone. A re-read of unchanged live records thus
        gives exactly the list of their hashes.

        ``meanwhile`` is called once, on PostgreSQL while the server runs the query (the
        client encodes the batch on one core while the server reads on the other).
        """
        if self.dialect == "postgresql":
            # One row holding one text: no per-record row to decode on the client. Straight on
            # the driver's cursor; psycopg prepares the statement after a few batches. In
            # pipeline mode the query is sent at once and its row is read only when fetched.
            driver_connection: Any = conn.connection.driver_connection
            with driver_connection.pipeline(), driver_connection.cursor() as cursor:
                cursor.execute(_PRE_READ_PG, (orjson.dumps(ids).decode(), system, object_name))
                meanwhile()
                found = cursor.fetchone()
            stored: list[str] = found[0].split(_SEPARATOR)
            if len(stored) != len(ids):  # a hash holding the separator: never written by us
                return [""] * len(ids)  # safe: the upserts re-check every record themselves
            return stored
        # One JSON parameter instead of thousands of bound values.
        rows = conn.execute(
            self._pre_read_sqlite,
            {"system": system, "object": object_name, "ids": orjson.dumps(ids).decode()},
        )
        meanwhile()
        known = {ext_id: digest + _GONE if gone else digest for ext_id, digest, gone in rows}
        return [known.get(ext_id, "") for ext_id in ids]

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
        conn.execute(self._save_cursor_stmt, values)

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
            conn.execute(self._save_error_stmt, values)

    def sync_states(self) -> list[SyncState]:
        """Return the state of every stream ever synced, ordered by connector and stream."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_STATE).order_by(_STATE.c.connector, _STATE.c.stream)
            ).mappings()
            return [SyncState(**row) for row in rows]

    def _upsert_state(self, update: list[str]) -> Executable:
        """An upsert of a ``sync_state`` row (values given as parameters) that sets ``update``."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(_STATE)
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
