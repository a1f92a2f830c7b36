"""The Salesforce connection: streams, reads, writes and checks over one client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from ledgerlink.connector.errors import ConfigurationError, ConnectorError
from ledgerlink.connector.protocol import (
    CheckItem,
    CheckReport,
    ConnectorContext,
    Cursor,
    Page,
    Stream,
    WriteAction,
    WriteOp,
    WriteResult,
    WriterSpec,
)
from ledgerlink.log import get_logger
from ledgerlink_salesforce import soql
from ledgerlink_salesforce.client import SalesforceClient
from ledgerlink_salesforce.settings import SalesforceSettings
from ledgerlink_salesforce.streams import STREAM_ENTITIES, StreamReader, stream_catalog
from ledgerlink_salesforce.writes import COLLECTION_LIMIT, Writer

__all__ = ["PREFETCH_REUSE_SECONDS", "SalesforceConnector"]

COMPOSITE_QUERIES = 5
"""Query subrequests one ``/composite`` call may carry (Salesforce's limit)."""
PREFETCH_REUSE_SECONDS = 300.0
"""How long a prefetched first page stays servable: the pull that asked for it reads it well
within this; an older one is dropped and the stream asks Salesforce itself."""
_log = get_logger(connector="salesforce")


class SalesforceConnector:
    """A connected, stateless Salesforce client (one org)."""

    name = "salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        client: SalesforceClient,
        context: ConnectorContext | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.context = context
        enabled = settings.streams or list(STREAM_ENTITIES)
        unknown = sorted(set(enabled) - set(STREAM_ENTITIES))
        if unknown:
            msg = f"unknown Salesforce streams: {', '.join(unknown)}"
            raise ConfigurationError(msg)
        self._streams = [
            s
            for s in stream_catalog(timedelta(seconds=settings.overlap_seconds))
            if s.name in enabled
        ]
        self._writer = Writer(client, settings)
        self._prefetched: dict[str, tuple[dict[str, Any], float]] = {}
        self._monotonic: Callable[[], float] = time.monotonic

    def streams(self) -> Sequence[Stream]:
        """Return the enabled streams."""
        return list(self._streams)

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield pages of ``stream`` after ``cursor``.

        Raises:
            ConfigurationError: the stream is unknown or not enabled.
            ConnectorError: as mapped from Salesforce's answer.
        """
        if stream not in {s.name for s in self._streams}:
            msg = f"stream {stream!r} is not enabled for this Salesforce connection"
            raise ConfigurationError(msg)
        reader = StreamReader(self.client, self.settings, stream)
        first = None
        statement = reader.incremental_statement(cursor)
        if statement is not None:
            kept = self._prefetched.pop(statement, None)
            if kept is not None and self._monotonic() - kept[1] <= PREFETCH_REUSE_SECONDS:
                first = kept[0]
        return reader.read(cursor, first)

    def prefetch(self, cursors: Mapping[str, Cursor]) -> None:
        """Fetch the first page of every incremental read in ``/composite`` calls.

        A pull of all streams would otherwise make one ``queryAll`` call per stream, even
        when nothing changed; ``/composite`` carries up to five queries and counts as one API
        call, so eight streams cost two. Each answer is kept for the :meth:`read` of its
        stream from the same cursor (the same statement), once, for at most
        :data:`PREFETCH_REUSE_SECONDS`; a subrequest that failed is not kept, so that
        stream's read asks again and reports the error as it would have. A failed composite
        call leaves every stream to read on its own.
        """
        self._prefetched.clear()
        wanted: list[tuple[str, str]] = []
        try:
            for stream in self._streams:
                cursor = cursors.get(stream.name)
                if cursor is None:
                    continue
                reader = StreamReader(self.client, self.settings, stream.name)
                statement = reader.incremental_statement(cursor)
                if statement is not None:
                    wanted.append((stream.name, statement))
        except ConnectorError as exc:  # no session: each read asks, and reports, on its own
            _log.info("salesforce.prefetch_failed", error=str(exc)[:200])
            return
        if len(wanted) < 2:  # one query costs one call either way
            return
        path = f"/services/data/v{self.settings.api_version}/queryAll/?"
        options = {"Sforce-Query-Options": f"batchSize={self.settings.query_batch_size}"}
        for start in range(0, len(wanted), COMPOSITE_QUERIES):
            chunk = wanted[start : start + COMPOSITE_QUERIES]
            subrequests = [
                {
                    "method": "GET",
                    "url": path + urlencode({"q": statement}),
                    "referenceId": name,
                    "httpHeaders": options,
                }
                for name, statement in chunk
            ]
            try:
                answers = self.client.composite(subrequests)
            except ConnectorError as exc:
                _log.info("salesforce.prefetch_failed", error=str(exc)[:200])
                return
            fetched = self._monotonic()
            statements = dict(chunk)
            for answer in answers:
                statement = statements.get(str(answer.get("referenceId")))
                body = answer.get("body")
                if (
                    statement is not None
                    and answer.get("httpStatusCode") == 200
                    and isinstance(body, dict)
                    and "records" in body
                ):
                    self._prefetched[statement] = (body, fetched)

    def writers(self) -> Sequence[WriterSpec]:
        """Every stream's object is writable: create, update, upsert and delete."""
        actions = frozenset(WriteAction) - {WriteAction.VOID}
        return [
            WriterSpec(
                object=s.name,
                actions=actions,
                batch_size=COLLECTION_LIMIT,
                external_id_field=self.settings.external_id_for(s.name),
            )
            for s in self._streams
        ]

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Apply ``ops`` in sObject Collections batches, one result per op.

        Prefetched first pages are dropped: they hold the state from before these writes.
        """
        self._prefetched.clear()
        return self._writer.write(ops)

    def find(
        self, object_name: str, field: str, value: str, fields: Sequence[str] = ("Id",)
    ) -> list[dict[str, Any]]:
        """Return the live records whose ``field`` equals ``value`` (the value is escaped).

        Raises:
            ConnectorError: as mapped from Salesforce's answer.
        """
        statement = soql.select(object_name, fields, where=f"{field} = {soql.quote(value)}")
        result = self.client.query(statement)
        records: list[dict[str, Any]] = list(result.get("records", []))
        while not result.get("done", True):
            result = self.client.query_more(str(result["nextRecordsUrl"]))
            records.extend(result.get("records", []))
        return records

    def check(self) -> CheckReport:
        """Check login, API limits and read access to each enabled stream (one call each)."""
        items: list[CheckItem] = []
        try:
            self.client.auth.session()
            items.append(CheckItem("login", True, f"flow={self.settings.auth}"))
        except ConnectorError as exc:
            return CheckReport([CheckItem("login", False, str(exc))])
        try:
            limits = self.client.limits()
            daily = limits.get("DailyApiRequests", {})
            items.append(
                CheckItem(
                    "limits",
                    True,
                    f"daily API requests remaining {daily.get('Remaining')}/{daily.get('Max')}",
                )
            )
        except ConnectorError as exc:
            items.append(CheckItem("limits", False, str(exc)))
        for stream in self._streams:
            reader = StreamReader(self.client, self.settings, stream.name)
            try:
                self.client.query(soql.select(stream.name, reader.fields, limit=1))
                items.append(CheckItem(f"read {stream.name}", True))
            except ConnectorError as exc:
                items.append(CheckItem(f"read {stream.name}", False, str(exc)))
        return CheckReport(items)

    def close(self) -> None:
        """Close the client."""
        self.client.close()
