"""Normalisation of landed records, and the quarantine of those that do not map.

The sync cycle calls :func:`normalize_changed` after landing: it maps every record of a system
that changed since a point in time (plus every record still waiting in quarantine, and those
released from it by ``ledgerlink quarantine retry`` since then) and returns the entities for
matching. A record that fails to map is written to the ``quarantine`` table with stage ``map``
and its reason, and the run goes on.

Quarantine rows are idempotent: a record that fails again updates its row (reason, payload,
reopened if it had been resolved) instead of adding one per run; a record that maps again
resolves its open row. ``ledgerlink quarantine list|show|retry`` reads and retries them
through :func:`list_quarantine`, :func:`get_quarantine` and :func:`retry_quarantined`.

Reads page through ``source_record`` by primary key (keyset pagination, ``batch_size`` rows
per query), so memory stays flat whatever the size of the system; quarantine writes of a page
happen in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ledgerlink.domain.entities import Entity, SourceRef
from ledgerlink.log import get_logger
from ledgerlink.mapping.apply import Normalizer, RecordMappingError
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.store.db import for_writing
from ledgerlink.store.models import Quarantine, QuarantineStage, SourceRecord
from ledgerlink.store.repository import canonical_json

__all__ = [
    "NormalizeReport",
    "NormalizedRecord",
    "RetryOutcome",
    "get_quarantine",
    "iter_normalized",
    "list_quarantine",
    "normalize_changed",
    "quarantine_record",
    "retry_quarantined",
]

_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_MAP = QuarantineStage.MAP.value
DEFAULT_BATCH_SIZE = 1000
_KEYS_PER_QUERY = 500
"""External ids per ``IN`` list when records are read by key."""
_log = get_logger(component="mapping")


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be a timezone-aware datetime"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class NormalizedRecord:
    """One record's outcome: its entity, or that it was deleted, or why it was quarantined.

    Attributes:
        ref: the source record.
        entity: the canonical entity, when it mapped.
        deleted: the record is a tombstone (deleted in its system).
        error: the quarantine reason, when it did not map.
        content_hash: the landed content's hash, when it mapped (what it was mapped from).
    """

    ref: SourceRef
    entity: Entity | None = None
    deleted: bool = False
    error: str | None = None
    content_hash: str | None = None


@dataclass
class NormalizeReport:
    """What a normalisation run did.

    Attributes:
        mapped: records turned into entities.
        quarantined: records that failed and are (still) in quarantine.
        deleted: tombstones seen.
        unmapped: records of objects no mapping covers (left alone).
        entities: the entities, in source-record order.
        deleted_refs: the deleted records.
    """

    mapped: int = 0
    quarantined: int = 0
    deleted: int = 0
    unmapped: int = 0
    entities: list[Entity] = field(default_factory=list)
    deleted_refs: list[SourceRef] = field(default_factory=list)


def quarantine_record(
    conn: Connection,
    *,
    system: str,
    object_name: str,
    external_id: str,
    stage: str,
    reason: str,
    payload: Mapping[str, Any],
    now: datetime,
) -> int:
    """Put a record in quarantine, or update (and reopen) its existing row for this stage.

    Args:
        conn: a connection inside the caller's transaction.
        system: the record's system.
        object_name: its object type.
        external_id: its id.
        stage: the pipeline stage that failed (``map``, ``match``, ``plan``, ``push``).
        reason: why, for people.
        payload: the record's content when it failed.
        now: the time of the failure (a new row's ``created_at``; ``updated_at`` always).

    Returns:
        The quarantine row's id.

    Raises:
        ValueError: ``now`` is naive or ``stage`` is unknown.
    """
    _require_aware(now)
    QuarantineStage(stage)
    canonical_json(payload)  # refuse what the JSON column cannot hold, before writing
    # One statement on the unique (system, object, external_id, stage) index: two replicas
    # quarantining the same record at once update one row rather than racing a duplicate.
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(_QUARANTINE).values(
        system=system,
        object=object_name,
        external_id=external_id,
        stage=stage,
        reason=reason,
        payload=dict(payload),
        created_at=now,
        updated_at=now,
        resolved_at=None,
    )
    excluded = stmt.excluded
    upsert = stmt.on_conflict_do_update(
        index_elements=[
            _QUARANTINE.c.system,
            _QUARANTINE.c.object,
            _QUARANTINE.c.external_id,
            _QUARANTINE.c.stage,
        ],
        set_={
            "reason": excluded.reason,
            "payload": excluded.payload,
            "updated_at": excluded.updated_at,
            "resolved_at": None,
        },
    ).returning(_QUARANTINE.c.id)
    return int(conn.execute(upsert).scalar_one())


def _resolve(conn: Connection, system: str, keys: Sequence[tuple[str, str]], now: datetime) -> None:
    if not keys:
        return
    conn.execute(
        _QUARANTINE.update()
        .where(
            _QUARANTINE.c.system == system,
            _QUARANTINE.c.stage == _MAP,
            _QUARANTINE.c.resolved_at.is_(None),
            tuple_(_QUARANTINE.c.object, _QUARANTINE.c.external_id).in_(list(keys)),
        )
        .values(resolved_at=now)
    )


def _open_keys(conn: Connection, system: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        select(_QUARANTINE.c.object, _QUARANTINE.c.external_id).where(
            _QUARANTINE.c.system == system,
            _QUARANTINE.c.stage == _MAP,
            _QUARANTINE.c.resolved_at.is_(None),
        )
    )
    return {(obj, ext) for obj, ext in rows}


def _requeued(
    conn: Connection,
    system: str,
    since: datetime,
    objects: Sequence[str] | None,
    *,
    waiting: bool = True,
) -> list[int]:
    """Ids of the records not changed since ``since`` whose quarantine row at stage map was
    resolved (retried) since then, or is still open when ``waiting``, in id order.

    Read from the quarantine side (its rows of ``system``, then those records by key), so a
    run costs the quarantine's rows, not a probe per record of the system.
    """
    released = _QUARANTINE.c.resolved_at >= since
    conditions = [
        _QUARANTINE.c.system == system,
        _QUARANTINE.c.stage == _MAP,
        (_QUARANTINE.c.resolved_at.is_(None)) | released if waiting else released,
    ]
    if objects:
        conditions.append(_QUARANTINE.c.object.in_(list(objects)))
    keys: dict[str, list[str]] = {}
    for obj, external_id in conn.execute(
        select(_QUARANTINE.c.object, _QUARANTINE.c.external_id).where(*conditions)
    ):
        keys.setdefault(obj, []).append(external_id)
    ids: list[int] = []
    for obj, external_ids in keys.items():
        for start in range(0, len(external_ids), _KEYS_PER_QUERY):
            # changed_at is compared here: in the query, SQLite would walk the records of the
            # object by their change time instead of looking each key up.
            rows = conn.execute(
                select(_SOURCE.c.id, _SOURCE.c.changed_at).where(
                    _SOURCE.c.system == system,
                    _SOURCE.c.object == obj,
                    _SOURCE.c.external_id.in_(external_ids[start : start + _KEYS_PER_QUERY]),
                )
            )
            ids.extend(row_id for row_id, changed_at in rows if changed_at < since)
    return sorted(ids)


def _pages(
    engine: Engine,
    system: str,
    since: datetime | None,
    objects: Sequence[str] | None,
    batch_size: int,
    *,
    waiting: bool = True,
) -> Iterator[list[Any]]:
    columns = (
        _SOURCE.c.id,
        _SOURCE.c.object,
        _SOURCE.c.external_id,
        _SOURCE.c.payload,
        _SOURCE.c.deleted_at,
        _SOURCE.c.content_hash,
    )
    conditions = [_SOURCE.c.system == system]
    if objects:
        conditions.append(_SOURCE.c.object.in_(list(objects)))
    condition = (
        and_(*conditions) if since is None else and_(*conditions, _SOURCE.c.changed_at >= since)
    )
    last_id = 0
    while True:
        with engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(*columns)
                    .where(condition, _SOURCE.c.id > last_id)
                    .order_by(_SOURCE.c.id)
                    .limit(batch_size)
                )
            )
        if rows:
            yield rows
            last_id = rows[-1].id
        if len(rows) < batch_size:
            break
    if since is None:
        return
    # Not changed since, but waiting in (or just released from) quarantine.
    with engine.connect() as conn:
        ids = _requeued(conn, system, since, objects, waiting=waiting)
    for start in range(0, len(ids), batch_size):
        with engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(*columns)
                    .where(_SOURCE.c.id.in_(ids[start : start + batch_size]))
                    .order_by(_SOURCE.c.id)
                )
            )
        if rows:
            yield rows


def iter_normalized(
    engine: Engine,
    mappings: MappingSet | Normalizer,
    system: str,
    *,
    since: datetime | None,
    now: datetime,
    objects: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    waiting: bool = True,
) -> Iterator[NormalizedRecord]:
    """Map the records of ``system`` changed since ``since``, page by page.

    Records of objects without a mapping are skipped silently (see :func:`normalize_changed`
    for counts). Failures are quarantined, successes resolve any open quarantine row, in one
    transaction per page, before the page's outcomes are yielded.

    Args:
        engine: the store's engine.
        mappings: the loaded mappings (or a :class:`Normalizer` built on them).
        system: the system whose records to map.
        since: the lower bound (inclusive) on ``changed_at``; None maps every record.
        now: the time of this run, timezone-aware.
        objects: only these objects; None for all.
        batch_size: records per query.
        waiting: with ``since``, also map again the records still waiting in quarantine
            though unchanged. A caller mapping with the very mappings that quarantined them
            (a kept matcher) passes False: they fail the same way until they change or are
            retried, and mapping (and quarantining) them again every run only costs time.

    Yields:
        One outcome per mapped, deleted or quarantined record.

    Raises:
        ValueError: ``now`` is naive or ``batch_size`` is not positive.
    """
    _require_aware(now)
    if batch_size < 1:
        msg = "batch_size must be positive"
        raise ValueError(msg)
    normalizer = mappings if isinstance(mappings, Normalizer) else Normalizer(mappings)
    with engine.connect() as conn:
        open_keys = _open_keys(conn, system)
    for rows in _pages(engine, system, since, objects, batch_size, waiting=waiting):
        outcomes: list[NormalizedRecord] = []
        failures: list[tuple[Any, str]] = []
        resolved: list[tuple[str, str]] = []
        for row in rows:
            mapper = normalizer.mapper(system, row.object)
            if mapper is None:
                continue
            ref = SourceRef(system=system, object=row.object, id=row.external_id)
            if row.deleted_at is not None:
                outcomes.append(NormalizedRecord(ref, deleted=True))
                resolved.append((row.object, row.external_id))
                continue
            try:
                entity = mapper.map(row.external_id, row.payload)
            except RecordMappingError as exc:
                failures.append((row, exc.reason))
                outcomes.append(NormalizedRecord(ref, error=exc.reason))
                continue
            except Exception as exc:  # noqa: BLE001 - one odd record must not stop the cycle
                reason = f"unexpected {type(exc).__name__} while mapping: {exc}"
                _log.error("mapping.unexpected_error", record=str(ref), error=reason)
                failures.append((row, reason))
                outcomes.append(NormalizedRecord(ref, error=reason))
                continue
            outcomes.append(NormalizedRecord(ref, entity=entity, content_hash=row.content_hash))
            resolved.append((row.object, row.external_id))
        to_resolve = [key for key in resolved if key in open_keys]
        if failures or to_resolve:
            with for_writing(engine).begin() as conn:
                for row, reason in failures:
                    quarantine_record(
                        conn,
                        system=system,
                        object_name=row.object,
                        external_id=row.external_id,
                        stage=_MAP,
                        reason=reason,
                        payload=row.payload,
                        now=now,
                    )
                _resolve(conn, system, to_resolve, now)
        yield from outcomes


def normalize_changed(
    engine: Engine,
    mappings: MappingSet | Normalizer,
    system: str,
    *,
    since: datetime | None,
    now: datetime,
    objects: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> NormalizeReport:
    """Map every changed record of ``system`` and report; what the sync cycle calls.

    Same arguments as :func:`iter_normalized`; the entities are collected in the report.

    Returns:
        Counts, the entities and the deleted records.

    Raises:
        ValueError: ``now`` is naive or ``batch_size`` is not positive.
    """
    report = NormalizeReport()
    normalizer = mappings if isinstance(mappings, Normalizer) else Normalizer(mappings)
    for outcome in iter_normalized(
        engine, normalizer, system, since=since, now=now, objects=objects, batch_size=batch_size
    ):
        if outcome.entity is not None:
            report.mapped += 1
            report.entities.append(outcome.entity)
        elif outcome.deleted:
            report.deleted += 1
            report.deleted_refs.append(outcome.ref)
        else:
            report.quarantined += 1
    system_file = normalizer.mappings.systems.get(system)
    mapped_objects = list(system_file.objects) if system_file is not None else []
    query = select(func.count()).select_from(_SOURCE).where(_SOURCE.c.system == system)
    if since is not None:
        query = query.where(_SOURCE.c.changed_at >= since)
    if objects:
        query = query.where(_SOURCE.c.object.in_(list(objects)))
    if mapped_objects:
        query = query.where(_SOURCE.c.object.not_in(mapped_objects))
    with engine.connect() as conn:
        report.unmapped = int(conn.execute(query).scalar_one())
    _log.info(
        "mapping.normalized",
        system=system,
        mapped=report.mapped,
        quarantined=report.quarantined,
        deleted=report.deleted,
        unmapped=report.unmapped,
    )
    return report


# -- quarantine for people ----------------------------------------------------------------


def list_quarantine(
    engine: Engine,
    *,
    include_resolved: bool = False,
    system: str | None = None,
    stage: str | None = None,
    limit: int = 100,
) -> list[Quarantine]:
    """Return quarantine rows, newest first.

    Args:
        engine: the store's engine.
        include_resolved: also rows that were resolved.
        system: only this system.
        stage: only this stage.
        limit: at most this many rows.

    Returns:
        The rows.
    """
    query = select(_QUARANTINE).order_by(_QUARANTINE.c.id.desc()).limit(limit)
    if not include_resolved:
        query = query.where(_QUARANTINE.c.resolved_at.is_(None))
    if system is not None:
        query = query.where(_QUARANTINE.c.system == system)
    if stage is not None:
        query = query.where(_QUARANTINE.c.stage == stage)
    with engine.connect() as conn:
        return [Quarantine(**row) for row in conn.execute(query).mappings()]


def get_quarantine(engine: Engine, quarantine_id: int) -> Quarantine | None:
    """Return the quarantine row with this id, or None."""
    with engine.connect() as conn:
        row = (
            conn.execute(select(_QUARANTINE).where(_QUARANTINE.c.id == quarantine_id))
            .mappings()
            .one_or_none()
        )
    return None if row is None else Quarantine(**row)


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """The result of retrying one quarantined record.

    Attributes:
        id: the quarantine row.
        ref: the record.
        ok: it maps now; the row is resolved and the next cycle passes the record on.
        reason: why it still fails, or why it was not retried.
    """

    id: int
    ref: SourceRef
    ok: bool
    reason: str | None = None


def retry_quarantined(
    engine: Engine,
    mappings: MappingSet | Normalizer,
    *,
    ids: Sequence[int] | None,
    now: datetime,
) -> list[RetryOutcome]:
    """Map quarantined records again with the current mappings and the latest landed payload.

    A record that maps is resolved (and :func:`normalize_changed` passes it on in the next
    cycle); one that still fails keeps its row with the new reason. Rows of other stages than
    ``map`` are left to their own stage and reported as not retried.

    Args:
        engine: the store's engine.
        mappings: the current mappings.
        ids: the quarantine rows to retry; None retries every open row of stage ``map``.
        now: the time of the retry, timezone-aware.

    Returns:
        One outcome per row asked for (a missing id is reported as not found).

    Raises:
        ValueError: ``now`` is naive.
    """
    _require_aware(now)
    normalizer = mappings if isinstance(mappings, Normalizer) else Normalizer(mappings)
    query = select(_QUARANTINE).order_by(_QUARANTINE.c.id)
    if ids is None:
        query = query.where(_QUARANTINE.c.stage == _MAP, _QUARANTINE.c.resolved_at.is_(None))
    else:
        query = query.where(_QUARANTINE.c.id.in_(list(ids)))
    outcomes: list[RetryOutcome] = []
    with for_writing(engine).begin() as conn:
        rows = list(conn.execute(query).mappings())
        found = {row["id"] for row in rows}
        unknown = SourceRef(system="-", object="-", id="-")
        outcomes.extend(
            RetryOutcome(missing, unknown, False, "not found")
            for missing in sorted(set(ids or ()) - found)
        )
        outcomes.extend(_retry_row(conn, normalizer, dict(row), now) for row in rows)
    return sorted(outcomes, key=lambda outcome: outcome.id)


def _retry_row(
    conn: Connection, normalizer: Normalizer, row: Mapping[str, Any], now: datetime
) -> RetryOutcome:
    ref = SourceRef(system=row["system"], object=row["object"], id=row["external_id"])
    if row["stage"] != _MAP:
        return RetryOutcome(
            row["id"], ref, False, f"stage {row['stage']} is retried by its own step"
        )
    if row["resolved_at"] is not None:
        return RetryOutcome(row["id"], ref, True, "already resolved")
    source = conn.execute(
        select(_SOURCE.c.payload, _SOURCE.c.deleted_at).where(
            _SOURCE.c.system == ref.system,
            _SOURCE.c.object == ref.object,
            _SOURCE.c.external_id == ref.id,
        )
    ).one_or_none()
    payload = row["payload"] if source is None else source.payload
    if source is not None and source.deleted_at is not None:
        outcome = RetryOutcome(row["id"], ref, True, "deleted in its system since")
    else:
        try:
            normalizer.map_record(ref.system, ref.object, ref.id, payload)
        except RecordMappingError as exc:
            conn.execute(
                _QUARANTINE.update()
                .where(_QUARANTINE.c.id == row["id"])
                .values(reason=exc.reason, payload=payload)
            )
            return RetryOutcome(row["id"], ref, False, exc.reason)
        except LookupError as exc:
            return RetryOutcome(row["id"], ref, False, str(exc))
        outcome = RetryOutcome(row["id"], ref, True)
    conn.execute(_QUARANTINE.update().where(_QUARANTINE.c.id == row["id"]).values(resolved_at=now))
    return outcome
