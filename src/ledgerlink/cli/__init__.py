"""The ``ledgerlink`` command line: thin commands over the core modules."""

from __future__ import annotations

from ledgerlink.cli.app import app, main

__all__ = ["app", "main"]
