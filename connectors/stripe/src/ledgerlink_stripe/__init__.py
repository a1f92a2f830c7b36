"""ledgerlink connector for stripe."""

from __future__ import annotations

plugin = None
__all__ = ["plugin"]
