"""The QuickBooks Online connection: reads through query paging and Change Data Capture.

Reading a stream (see :meth:`QuickBooksConnector.read`):

* **First load** (empty cursor) and **fallback**: ``SELECT * FROM X WHERE
  MetaData.LastUpdatedTime >= 'last' ORDERBY MetaData.LastUpdatedTime MAXRESULTS 1000``,
  re-reading from the boundary value and dropping the ids already landed there. The server
  time of the first answer becomes the CDC start, so changes made during the load are not
  lost.
* **Incremental**: one ``/cdc?entities=...&changedSince=...`` call serves every CDC stream of
  a cycle (the answer is reused for ``cdc_reuse_seconds``, until the connection writes);
  records become pages, deleted
  objects tombstones. The cursor keeps ``since`` (server time of the CDC answer, minus one
  second since QuickBooks stamps whole seconds) plus the usual boundary value and ids.
* When the connection's own writes since ``since`` alone would fill one answer (the echoes
  of a push of 1,000 documents or more), the CDC entities are asked in groups, each under the
  cap by those writes, so that every group's answer is whole (its deletions included) instead
  of one capped answer and a query per stream.
* When ``since`` is older than the 30-day CDC window, or an answer hits the 1,000-object cap,
  the stream falls back to LastUpdatedTime queries from its cursor (tombstones in a capped
  answer are still emitted), then returns to CDC.
* TaxCode has no CDC support and always uses the query path; nothing new costs one call.

Writes live in :mod:`ledgerlink_quickbooks.writes`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ledgerlink.connector.errors import (
    ConfigurationError,
    ConnectorError,
    RecordError,
    StaleVersionError,
)
from ledgerlink.connector.http import HttpClient, RateLimiter, RetryPolicy
from ledgerlink.connector.protocol import (
    CheckItem,
    CheckReport,
    ConnectorContext,
    Cursor,
    Page,
    Record,
    Stream,
    WriteOp,
    WriteResult,
    WriterSpec,
)
from ledgerlink.log import get_logger
from ledgerlink_quickbooks import qbql
from ledgerlink_quickbooks._json import dumps
from ledgerlink_quickbooks.auth import BearerAuth, TokenManager
from ledgerlink_quickbooks.errors import error_from_response
from ledgerlink_quickbooks.settings import QuickBooksSettings
from ledgerlink_quickbooks.streams import CDC_ENTITIES, STREAMS, WRITERS, stream_named
from ledgerlink_quickbooks.writes import write_ops

__all__ = ["CDC_MAX_OBJECTS", "CDC_WINDOW", "QuickBooksConnector", "to_cursor_value"]

JSON = dict[str, Any]
CDC_WINDOW = dt.timedelta(days=30)
CDC_MAX_OBJECTS = 1000
_CDC_NAMES = {entity.lower(): entity for entity in CDC_ENTITIES}
_OWN_WRITES_KEPT = dt.timedelta(hours=1)
"""How long the connection remembers its own writes, to foresee a CDC answer they fill."""
_CDC_SAFETY = dt.timedelta(hours=1)
_LOOKBACK = dt.timedelta(seconds=1)
_NAME_LISTS = frozenset({"Customer", "Item", "Account"})
_LOAD_START_REUSE = 3600.0
"""Seconds during which query loads of one connection share their CDC start."""


def _parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def to_cursor_value(qbo_time: str) -> str:
    """Normalise a QuickBooks time (any offset) to fixed-width UTC ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _parse_time(qbo_time).strftime("%Y-%m-%dT%H:%M:%SZ")


class _NoStaleRetry(RetryPolicy):
    """The core policy, except a stale SyncToken is never resent as is (it would fail again)."""

    def should_retry(self, error: BaseException) -> bool:
        """True for transient errors other than a lost optimistic lock."""
        return super().should_retry(error) and not isinstance(error, StaleVersionError)


@dataclass(frozen=True)
class _CdcAnswer:
    since: dt.datetime
    server_time: dt.datetime
    fetched: float
    rows: Mapping[str, Sequence[JSON]]
    capped: frozenset[str]
    """The entities whose answer hit the 1,000-object cap (their streams fall back to
    queries)."""


class QuickBooksConnector:
    """A connection to one QuickBooks Online company.

    Args:
        settings: validated settings.
        context: the core's context (secret store for the rotating refresh token).
        transport: httpx transport for both API and token calls (tests).
        retry: retry policy (tests inject one with a fake sleep).
        clock: current UTC time, for token expiry and the CDC window.
        monotonic: monotonic seconds, for reusing one CDC answer within a cycle.
    """

    name = "quickbooks"

    def __init__(
        self,
        settings: QuickBooksSettings,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._log = get_logger(connector="quickbooks", realm=settings.realm_id)
        self._token_http = httpx.Client(
            timeout=settings.timeout, verify=settings.verify, transport=transport
        )
        self.tokens = TokenManager(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            token_url=settings.token_url,
            realm_id=settings.realm_id,
            secrets=context.secrets,
            initial_refresh_token=settings.refresh_token,
            http=self._token_http,
            clock=clock,
        )
        policy = retry or _NoStaleRetry()
        if not isinstance(policy, _NoStaleRetry):
            policy = _NoStaleRetry(
                max_attempts=policy.max_attempts,
                base_delay=policy.base_delay,
                max_delay=policy.max_delay,
                jitter=policy.jitter,
                sleep=policy.sleep,
            )
        self.http = HttpClient(
            connector="quickbooks",
            base_url=f"{settings.base_url.rstrip('/')}/v3/company/{settings.realm_id}",
            headers={"Accept": "application/json"},
            auth=BearerAuth(self.tokens),
            timeout=settings.timeout,
            retry=policy,
            rate_limiter=RateLimiter(settings.requests_per_minute / 60.0, burst=1),
            error_mapper=error_from_response,
            verify=settings.verify,
            transport=transport,
        )
        self.batch_limiter = RateLimiter(settings.batch_requests_per_minute / 60.0, burst=1)
        self._cdc_cache: _CdcAnswer | None = None
        self._load_start: tuple[str, float] | None = None
        self._cdc_lock = threading.Lock()
        self._written: dict[str, dict[int, int]] = {}
        """CDC entity -> second of QuickBooks' ``LastUpdatedTime`` -> this connection's writes
        stamped then, for :data:`_OWN_WRITES_KEPT`: how many changes a CDC answer will hold (an
        object written twice counts twice: more groups than needed, never a capped answer)."""

    # -- plumbing --------------------------------------------------------------------------

    def _params(self, **extra: str) -> dict[str, str]:
        return {"minorversion": str(self.settings.minorversion), **extra}

    def get_json(self, path: str, **params: str) -> JSON:
        """GET ``path`` under the company and return the JSON body.

        Raises:
            ConnectorError: the mapped QuickBooks fault.
        """
        response = self.http.request("GET", path, params=self._params(**params))
        body: JSON = response.json()
        return body

    def post_json(
        self,
        path: str,
        payload: Any,
        *,
        requestid: str,
        batch: bool = False,
        operation: str | None = None,
    ) -> JSON:
        """POST ``payload`` with ``requestid`` (so a resend never duplicates) and return JSON.

        Raises:
            ConnectorError: the mapped QuickBooks fault.
        """
        if batch:
            self.batch_limiter.acquire()
        response = self.http.request(
            "POST",
            path,
            idempotent=True,
            params=self._params(
                requestid=requestid, **({"operation": operation} if operation else {})
            ),
            content=dumps(payload),
            headers={"Content-Type": "application/json"},
        )
        body: JSON = response.json()
        return body

    def query(self, statement: str) -> JSON:
        """Run one query statement; returns the whole answer (``QueryResponse``, ``time``).

        Raises:
            ConnectorError: the mapped QuickBooks fault.
        """
        return self.get_json("query", query=statement)

    # -- Connector protocol ----------------------------------------------------------------

    def streams(self) -> Sequence[Stream]:
        """Every readable QuickBooks stream."""
        return STREAMS

    def writers(self) -> Sequence[WriterSpec]:
        """What this connection writes (create, sparse update, delete of transactions)."""
        return WRITERS

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield pages of ``stream`` from ``cursor``.

        Raises:
            ConfigurationError: unknown stream.
            ConnectorError: the mapped QuickBooks fault.
        """
        spec = stream_named(stream)
        if spec is None:
            msg = f"unknown QuickBooks stream {stream!r}"
            raise ConfigurationError(msg)
        restart: str | None = None
        if (
            spec.name in CDC_ENTITIES
            and cursor.state.get("mode") == "cdc"
            and cursor.state.get("since")
        ):
            since = _parse_time(str(cursor.state["since"]))
            if self._clock() - since < CDC_WINDOW - _CDC_SAFETY:
                answer = self._cdc(since)
                if answer is not None and spec.name not in answer.capped:
                    yield self._cdc_page(spec.name, cursor, answer)
                    return
                if answer is not None:
                    # The queries below read everything after the cursor, so CDC can start
                    # again from this answer's time: a start kept from an older load would
                    # ask for (and be capped on) the same changes every cycle.
                    restart = _cdc_since(answer.server_time)
                    tombstones = [
                        self._record(spec.name, row)
                        for row in answer.rows.get(spec.name, ())
                        if row.get("status") == "Deleted"
                    ]
                    if tombstones:
                        yield Page(
                            spec.name,
                            [Record(r.object, r.id, r.payload, deleted=True) for r in tombstones],
                            cursor,
                        )
                self._log.info(
                    "quickbooks.cdc_fallback",
                    stream=spec.name,
                    reason="capped" if answer is not None else "refused",
                )
            else:
                self._log.info("quickbooks.cdc_fallback", stream=spec.name, reason="window")
        if spec.name not in CDC_ENTITIES:
            yield from self._query_refresh(spec.name, cursor)
            return
        yield from self._query_pages(spec.name, cursor, restart)

    def _query_refresh(self, entity: str, cursor: Cursor) -> Iterator[Page]:
        """Read an entity without CDC support by query, at most once per refresh interval.

        Such entities (TaxCode) change rarely; re-querying them every cycle would make a
        cycle with nothing new cost one call more than the shared CDC call.
        """
        now = self._clock()
        refreshed = cursor.state.get("refreshed_at")
        interval = dt.timedelta(seconds=self.settings.query_refresh_seconds)
        if refreshed and now - dt.datetime.fromisoformat(str(refreshed)) < interval:
            yield Page(entity, [], cursor)
            return
        last: Page | None = None
        for page in self._query_pages(entity, cursor):
            if last is not None:
                yield last
            last = page
        if last is not None:
            yield Page(
                last.stream, last.records, last.cursor.with_state(refreshed_at=now.isoformat())
            )

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Apply ``ops`` (batched by 30), yielding one result per op in order.

        A write changes what QuickBooks holds (the payment, and the balance of the invoice it
        pays), so the cached CDC answer is dropped once the writes are done: the next read asks
        QuickBooks again instead of serving the state from before the write for up to
        ``cdc_reuse_seconds``.
        """
        try:
            for op, result in zip(ops, write_ops(self, ops), strict=False):
                self._note_written(op, result)
                yield result
        finally:
            with self._cdc_lock:
                self._cdc_cache = None

    def _note_written(self, op: WriteOp, result: WriteResult) -> None:
        """Remember when QuickBooks stamped an object this connection wrote (see
        :meth:`_cdc_groups`); forget what is older than :data:`_OWN_WRITES_KEPT`."""
        meta = (result.response or {}).get("MetaData") if result.ok else None
        stamped = meta.get("LastUpdatedTime") if isinstance(meta, Mapping) else None
        entity = _CDC_NAMES.get(op.object.lower())
        if entity is None or not result.remote_id or not stamped:
            return
        second = int(_parse_time(str(stamped)).timestamp())
        with self._cdc_lock:
            mine = self._written.setdefault(entity, {})  # seconds in the order they came
            mine[second] = mine.get(second, 0) + 1
            horizon = second - int(_OWN_WRITES_KEPT.total_seconds())
            while mine:
                oldest = next(iter(mine))
                if oldest >= horizon:
                    break
                del mine[oldest]

    def _cdc_groups(self, since: dt.datetime) -> list[list[str]]:
        """The CDC entities, in groups to ask one ``/cdc`` call each: one group, unless this
        connection's own writes since ``since`` would fill an answer by themselves; then groups
        each holding fewer of them than the cap (an entity with that many alone)."""
        start = int(since.timestamp())
        own = {
            entity: sum(n for second, n in self._written.get(entity, {}).items() if second >= start)
            for entity in CDC_ENTITIES
        }
        if sum(own.values()) < CDC_MAX_OBJECTS:
            return [list(CDC_ENTITIES)]
        groups: list[list[str]] = [[]]
        held = 0
        for entity in CDC_ENTITIES:
            if groups[-1] and held + own[entity] >= CDC_MAX_OBJECTS:
                groups.append([])
                held = 0
            groups[-1].append(entity)
            held += own[entity]
        return groups

    def check(self) -> CheckReport:
        """Check the refresh token and access to the company."""
        items: list[CheckItem] = []
        try:
            self.tokens.access_token()
            items.append(CheckItem("oauth", True, "access token obtained"))
        except ConnectorError as exc:
            return CheckReport([CheckItem("oauth", False, str(exc))])
        try:
            info = self.get_json(f"companyinfo/{self.settings.realm_id}")
            name = (info.get("CompanyInfo") or {}).get("CompanyName", "")
            items.append(CheckItem("company", True, f"realm {self.settings.realm_id}: {name}"))
        except ConnectorError as exc:
            items.append(CheckItem("company", False, str(exc)))
        return CheckReport(items)

    def close(self) -> None:
        """Close the HTTP clients."""
        self.http.close()
        self._token_http.close()

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _record(entity: str, row: Mapping[str, Any]) -> Record:
        updated = (row.get("MetaData") or {}).get("LastUpdatedTime")
        return Record(
            object=entity,
            id=str(row["Id"]),
            payload=row,
            deleted=row.get("status") == "Deleted",
            cursor_value=to_cursor_value(updated) if updated else None,
        )

    @staticmethod
    def _is_new(record: Record, cursor: Cursor) -> bool:
        """Whether ``record`` is not landed yet: newer than the cursor, or at its boundary
        second in a version (``SyncToken``) other than the one landed there. QuickBooks stamps
        ``LastUpdatedTime`` in whole seconds, so a record changed twice within one second (an
        invoice posted, then a payment applied to it) keeps its stamp."""
        if cursor.value is None or record.cursor_value is None:
            return True
        if record.cursor_value < cursor.value:
            return False
        if record.cursor_value != cursor.value or record.id not in cursor.boundary_ids:
            return True
        landed = (cursor.state.get(_BOUNDARY_TOKENS) or {}).get(record.id)
        return landed is not None and landed != _sync_token(record)

    @staticmethod
    def _observe(cursor: Cursor, records: Sequence[Record]) -> Cursor:
        """:meth:`Cursor.observe`, remembering the ``SyncToken`` landed for each boundary id."""
        following = cursor.observe(records)
        tokens: dict[str, str] = (
            dict(cursor.state.get(_BOUNDARY_TOKENS) or {})
            if following.value == cursor.value
            else {}
        )
        for record in records:
            if record.cursor_value == following.value:
                tokens[record.id] = _sync_token(record)
        kept = {i: t for i, t in tokens.items() if i in following.boundary_ids}
        return following.with_state(**{_BOUNDARY_TOKENS: kept or None})

    def _query_pages(
        self, entity: str, cursor: Cursor, restart: str | None = None
    ) -> Iterator[Page]:
        """Pages of LastUpdatedTime queries from ``cursor``; then CDC from ``restart`` (a
        capped CDC answer's time) or from the server time of the load's first query."""
        page_size = self.settings.page_size
        start_position = 1
        # A load resumed after a crash keeps the start of the interrupted one.
        started = cursor.state.get("load_started") or restart
        cdc_start: str | None = str(started) if started else None
        current = cursor
        while True:
            where = []
            if entity in _NAME_LISTS:
                # Without this QuickBooks leaves inactive (deactivated) names out.
                where.append("Active IN (true, false)")
            if current.value is not None:
                where.append(f"MetaData.LastUpdatedTime >= {qbql.quote(current.value)}")
            statement = qbql.select(
                entity,
                where,
                order_by="MetaData.LastUpdatedTime",
                start_position=start_position,
                max_results=page_size,
            )
            answer = self.query(statement)
            if cdc_start is None:
                # Streams loaded by one connection within an hour share the earliest start, so
                # the next cycle serves them all with a single CDC call.
                shared = self._load_start
                if shared is None or self._monotonic() - shared[1] > _LOAD_START_REUSE:
                    shared = (_cdc_since(_parse_time(str(answer["time"]))), self._monotonic())
                    self._load_start = shared
                cdc_start = shared[0]
            rows = (answer.get("QueryResponse") or {}).get(entity) or []
            records = [self._record(entity, row) for row in rows]
            fresh = [r for r in records if self._is_new(r, current)]
            following = self._observe(current, fresh)
            full = len(rows) >= page_size
            if full and records and all(r.cursor_value == current.value for r in records):
                # A whole page shares the boundary second: step over it by position.
                start_position += page_size
            else:
                start_position = 1
            if full:
                following = following.with_state(load_started=cdc_start)
            else:
                mode = "cdc" if entity in CDC_ENTITIES else "query"
                following = following.with_state(mode=mode, since=cdc_start, load_started=None)
            yield Page(entity, fresh, following)
            current = following
            if not full:
                return

    def _cdc(self, since: dt.datetime) -> _CdcAnswer | None:
        """The CDC answer covering ``since`` (cached for the cycle), None if out of window."""
        with self._cdc_lock:
            cached = self._cdc_cache
            if (
                cached is not None
                and cached.since <= since
                and self._monotonic() - cached.fetched <= self.settings.cdc_reuse_seconds
            ):
                return cached
            rows: dict[str, list[JSON]] = {}
            capped: set[str] = set()
            times: list[dt.datetime] = []
            groups = self._cdc_groups(since)
            if len(groups) > 1:
                self._log.info("quickbooks.cdc_grouped", groups=len(groups))
            for group in groups:
                try:
                    body = self.get_json(
                        "cdc",
                        entities=",".join(group),
                        changedSince=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )
                except RecordError:
                    # changedSince refused (outside the window by the server's clock): fall back.
                    return None
                total = 0
                for block in body.get("CDCResponse") or []:
                    for response in block.get("QueryResponse") or []:
                        for key, value in response.items():
                            if isinstance(value, list):
                                rows.setdefault(key, []).extend(value)
                                total += len(value)
                if total >= CDC_MAX_OBJECTS:
                    capped.update(group)
                times.append(_parse_time(str(body["time"])))
            answer = _CdcAnswer(
                since=since,
                # The earliest answer's: every group's answer covers the changes until then.
                server_time=min(times),
                fetched=self._monotonic(),
                rows=rows,
                capped=frozenset(capped),
            )
            self._cdc_cache = answer
            return answer

    def _cdc_page(self, entity: str, cursor: Cursor, answer: _CdcAnswer) -> Page:
        since = _parse_time(str(cursor.state["since"]))
        records = []
        for row in answer.rows.get(entity, ()):
            record = self._record(entity, row)
            if record.cursor_value is not None and _parse_time(record.cursor_value) < since:
                continue
            if self._is_new(record, cursor):
                records.append(record)
        records.sort(key=lambda r: r.cursor_value or "")
        next_since = _cdc_since(answer.server_time)
        following = self._observe(cursor, records).with_state(mode="cdc", since=next_since)
        return Page(entity, records, following)


def _cdc_since(server_time: dt.datetime) -> str:
    """The ``changedSince`` that follows an answer given at ``server_time`` (QuickBooks
    stamps whole seconds, so one second before it)."""
    return (server_time - _LOOKBACK).strftime("%Y-%m-%dT%H:%M:%SZ")


_BOUNDARY_TOKENS = "boundary_tokens"
"""Cursor state: boundary id -> the ``SyncToken`` landed for it at the boundary second."""


def _sync_token(record: Record) -> str:
    return str(record.payload.get("SyncToken", ""))


def connect(settings: Mapping[str, Any], context: ConnectorContext) -> QuickBooksConnector:
    """Validate ``settings`` and return a connection.

    Raises:
        ConfigurationError: invalid settings.
    """
    from pydantic import ValidationError

    try:
        parsed = QuickBooksSettings.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        msg = f"invalid QuickBooks settings: {problems}"
        raise ConfigurationError(msg) from None
    return QuickBooksConnector(parsed, context)
