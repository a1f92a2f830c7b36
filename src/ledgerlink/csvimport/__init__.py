"""Importing vendor CSV exports (Salesforce, Stripe, QuickBooks) as source records.

A CSV import lands rows exactly as the system's connector would (same object names, ids,
payload keys and nesting), so mapping, matching and the reports work on them unchanged:
:mod:`~ledgerlink.csvimport.headers` resolves export headers to API fields,
:mod:`~ledgerlink.csvimport.reader` streams a file into records, and
:mod:`~ledgerlink.csvimport.land` lands a file all or nothing.
"""

from __future__ import annotations

from ledgerlink.csvimport.headers import (
    SYSTEMS,
    UnknownObjectError,
    UnknownSystemError,
    object_spec,
    resolve_columns,
)
from ledgerlink.csvimport.land import ImportSummary, import_file
from ledgerlink.csvimport.reader import CsvSource, FileRefusedError, Problem, detect_encoding

__all__ = [
    "SYSTEMS",
    "CsvSource",
    "FileRefusedError",
    "ImportSummary",
    "Problem",
    "UnknownObjectError",
    "UnknownSystemError",
    "detect_encoding",
    "import_file",
    "object_spec",
    "resolve_columns",
]
