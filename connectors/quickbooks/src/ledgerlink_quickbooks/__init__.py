"""ledgerlink connector for quickbooks."""

from __future__ import annotations

plugin = None
__all__ = ["plugin"]
