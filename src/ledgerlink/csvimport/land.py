"""Landing a CSV file in the store: all of a file's valid rows in one transaction, or nothing.

This module owns the store side of an import. Records are read from a
:class:`~ledgerlink.csvimport.reader.CsvSource` one batch at a time and upserted with the store's
landing path (the same content hashing and ON CONFLICT upsert a connector's pull uses), all
inside one database transaction per file: an error anywhere (a refused encoding is found before
anything is written; a database failure or an interrupt mid-file) rolls the whole file back.
Memory stays bounded by the batch size, whatever the file's length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path

from ledgerlink.connector.protocol import Record
from ledgerlink.csvimport.reader import CsvSource, Problem
from ledgerlink.log import get_logger
from ledgerlink.store import Store
from ledgerlink.store.models import SourceRecord
from ledgerlink.store.repository import LandResult

__all__ = ["ImportSummary", "import_file"]

_log = get_logger(component="csvimport")

_ANALYZE_MIN_ROWS = 5000

Progress = Callable[[int, int], None]
"""Called with (bytes read, file size) as the file is read."""


@dataclass
class ImportSummary:
    """What importing one file did.

    Attributes:
        path: the file.
        system, object: where its rows landed.
        encoding: the encoding it was read with.
        rows: data rows read (blank lines aside).
        result: inserted, updated and unchanged records.
        problems: rejected rows with their line.
    """

    path: Path
    system: str
    object: str
    encoding: str = ""
    rows: int = 0
    result: LandResult = field(default_factory=LandResult)
    problems: list[Problem] = field(default_factory=list)

    @property
    def landed(self) -> int:
        """Records landed (inserted, updated or unchanged)."""
        return self.result.inserted + self.result.updated + self.result.unchanged


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while batch := list(islice(records, size)):
        yield batch


def import_file(
    store: Store,
    path: Path,
    *,
    system: str,
    object_name: str,
    overrides: Mapping[str, str] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Land the rows of one CSV export as source records of ``system``, all or nothing.

    Args:
        store: the store to land into.
        path: the CSV file.
        system: ``salesforce``, ``stripe`` or ``quickbooks``.
        object_name: the object the rows are (``customers``, ``Account``, ``Customer``).
        overrides: ``{header: api_field}`` for headers ledgerlink does not recognise.
        now: the landing time (timezone-aware); by default the time the file's transaction
            took the store's landing lock (see :meth:`Store.landing_time`).
        progress: called with (bytes read, file size) after each batch.

    Returns:
        The summary: rows read, inserted, updated, unchanged, rejected rows.

    Raises:
        UnknownSystemError, UnknownObjectError: the system or object is not known.
        FileRefusedError: the file is refused as a whole (encoding, empty, no id column, broken
            CSV); nothing of it is landed.
        OSError: the file cannot be read.
        sqlalchemy.exc.SQLAlchemyError: the database refused the write; nothing is landed.
    """
    source = CsvSource(path, system, object_name, dict(overrides or {}))
    summary = ImportSummary(path=path, system=source.system, object=source.spec.name)
    result = LandResult()
    # One transaction for the whole file: the store's own landing step, batch after batch.
    # (Store.land opens a transaction per call; a file must commit once.)
    analyzed_at = _ANALYZE_MIN_ROWS
    with store._write_engine.begin() as conn:
        moment = store.landing_time(conn, now)
        for batch in _batches(source.records(), store.batch_size):
            result += store._land(conn, source.system, batch, moment)
            if store.dialect == "postgresql" and result.inserted >= analyzed_at:
                # The store's pre-read of stored hashes needs statistics that know how many
                # rows the object has, or each batch scans them all (quadratic over a big
                # file). ANALYZE in the file's own transaction counts its uncommitted rows.
                conn.exec_driver_sql(f"ANALYZE {SourceRecord.__tablename__}")
                analyzed_at = result.inserted * 2
            if progress is not None:
                progress(source.bytes_read, source.size)
    store._refresh_statistics(result.inserted)
    if progress is not None:
        progress(source.size, source.size)
    summary.encoding = source.encoding
    summary.rows = source.rows
    summary.result = result
    summary.problems = source.problems
    _log.info(
        "csvimport.file_landed",
        file=path.name,
        system=summary.system,
        object=summary.object,
        rows=summary.rows,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        problems=len(summary.problems),
    )
    return summary
