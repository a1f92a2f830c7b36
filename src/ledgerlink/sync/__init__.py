"""The sync engine: pull streams into the store, page by page, cursor with the data."""

from __future__ import annotations

from ledgerlink.sync.engine import StreamResult, pull, pull_stream

__all__ = ["StreamResult", "pull", "pull_stream"]
