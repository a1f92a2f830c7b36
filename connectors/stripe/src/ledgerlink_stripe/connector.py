"""The Stripe connection the core drives: read streams, write, check, close."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from ledgerlink.connector.errors import ConfigurationError, ConnectorError
from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import (
    CheckItem,
    CheckReport,
    Cursor,
    Page,
    Stream,
    WriteOp,
    WriteResult,
    WriterSpec,
)
from ledgerlink_stripe.client import StripeApi
from ledgerlink_stripe.settings import StripeSettings
from ledgerlink_stripe.streams import STREAMS, StripeStreamReader
from ledgerlink_stripe.writes import WRITERS, StripeWriter

__all__ = ["StripeConnector"]


class StripeConnector:
    """A connected, stateless Stripe client.

    Args:
        settings: validated settings.
        retry: retry policy (tests pass one that does not sleep).
        clock: unix time source for the event-retention check.
    """

    name = "stripe"

    def __init__(
        self,
        settings: StripeSettings,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.api = StripeApi(settings, retry)
        self._reader = StripeStreamReader(
            self.api,
            page_size=settings.page_size,
            retention_days=settings.event_retention_days,
            clock=clock,
        )
        self._writer = StripeWriter(self.api)

    def __repr__(self) -> str:
        return f"StripeConnector(api_base={self.settings.api_base!r})"

    def streams(self) -> Sequence[Stream]:
        """Return the streams this connection can read."""
        return [spec.stream for spec in STREAMS]

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield pages of ``stream`` from ``cursor``.

        Raises:
            ConfigurationError: unknown stream.
            ConnectorError: a mapped Stripe error.
        """
        try:
            StripeStreamReader.spec(stream)
        except KeyError:
            msg = f"unknown Stripe stream {stream!r}"
            raise ConfigurationError(msg) from None
        return self._reader.read(stream, cursor)

    def writers(self) -> Sequence[WriterSpec]:
        """Return what this connection can write."""
        return list(WRITERS)

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Apply ``ops`` with their idempotency keys, one result per operation."""
        return self._writer.write(ops)

    def check(self) -> CheckReport:
        """Check the key can read customers and events (restricted keys may lack one)."""
        items = []
        for name, path in (("read customers", "/v1/customers"), ("read events", "/v1/events")):
            try:
                self.api.get(path, {"limit": 1})
            except ConnectorError as error:
                items.append(CheckItem(name, ok=False, detail=str(error)))
            else:
                items.append(CheckItem(name, ok=True))
        return CheckReport(items)

    def close(self) -> None:
        """Release the HTTP client."""
        self.api.close()
