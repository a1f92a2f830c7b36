"""ledgerlink connector for salesforce."""

from __future__ import annotations

plugin = None
__all__ = ["plugin"]
