"""ledgerlink connector for QuickBooks Online.

``plugin`` is what the ``ledgerlink.connectors`` entry point ``quickbooks`` names. The
connection reads through query paging and Change Data Capture, writes with SyncToken sparse
updates, ``requestid`` idempotency and ``/batch``; :mod:`ledgerlink_quickbooks.posting` builds
quote-to-cash documents; :mod:`ledgerlink_quickbooks.sandbox` is a loopback fake of the API.
"""

from __future__ import annotations

from ledgerlink_quickbooks.connector import QuickBooksConnector
from ledgerlink_quickbooks.plugin import QuickBooksPlugin
from ledgerlink_quickbooks.settings import QuickBooksSettings

plugin = QuickBooksPlugin()

__all__ = ["QuickBooksConnector", "QuickBooksPlugin", "QuickBooksSettings", "plugin"]
