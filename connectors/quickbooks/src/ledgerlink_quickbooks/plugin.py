"""The ``quickbooks`` entry point: catalog, connect and sandbox for the core."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledgerlink.connector.protocol import ConnectorContext, SandboxOptions, Stream
from ledgerlink_quickbooks.connector import QuickBooksConnector, connect
from ledgerlink_quickbooks.settings import QuickBooksSettings
from ledgerlink_quickbooks.streams import STREAMS

__all__ = ["QuickBooksPlugin"]


class QuickBooksPlugin:
    """QuickBooks Online as a ledgerlink connector plugin."""

    name = "quickbooks"
    version = "0.1.0"
    description = (
        "QuickBooks Online: query and CDC pull, SyncToken sparse updates, requestid "
        "idempotency, batch writes, OAuth refresh rotation"
    )
    settings_model = QuickBooksSettings

    def stream_catalog(self) -> Sequence[Stream]:
        """Every stream the connector reads."""
        return STREAMS

    def connect(
        self, settings: Mapping[str, Any], context: ConnectorContext
    ) -> QuickBooksConnector:
        """Validate ``settings`` and return a connection.

        Raises:
            ConfigurationError: invalid settings.
        """
        return connect(settings, context)

    def start_sandbox(self, options: SandboxOptions) -> Any:
        """Start the QuickBooks sandbox on loopback and return it (a ``Sandbox``)."""
        from ledgerlink_quickbooks.sandbox import QuickBooksSandbox

        return QuickBooksSandbox(options)
