"""The Salesforce connection: streams, reads, writes and checks over one client."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

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
from ledgerlink_salesforce import soql
from ledgerlink_salesforce.client import SalesforceClient
from ledgerlink_salesforce.settings import SalesforceSettings
from ledgerlink_salesforce.streams import STREAM_ENTITIES, StreamReader, stream_catalog
from ledgerlink_salesforce.writes import COLLECTION_LIMIT, Writer

__all__ = ["SalesforceConnector"]


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
        return StreamReader(self.client, self.settings, stream).read(cursor)

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
        """Apply ``ops`` in sObject Collections batches, one result per op."""
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
