"""The pull loop: read each stream from its stored cursor and land it, one page per transaction.

A connector is stateless; this module owns the cursor. For every page a connector yields, the
store lands its records and saves the page's cursor in one transaction, so a crash between two
pages resumes after the last stored page, and a crash inside a page repeats that page (landing
is idempotent: unchanged content costs nothing). A stream that fails is recorded in
``sync_state`` and the other streams go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ledgerlink.connector.errors import ConnectorError
from ledgerlink.connector.protocol import Connector, Prefetching
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.store import Store

__all__ = ["ProgressCallback", "StreamResult", "pull", "pull_stream"]

ProgressCallback = Callable[[str, int], None]
"""Called as ``progress(stream, records_in_page)`` after each stored page."""


@dataclass(frozen=True)
class StreamResult:
    """What one pull of one stream did."""

    connector: str
    stream: str
    pages: int = 0
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the stream was read to its end."""
        return self.error is None


def _now() -> datetime:
    return datetime.now(UTC)


def pull_stream(
    store: Store,
    connector: Connector,
    stream: str,
    *,
    progress: ProgressCallback | None = None,
) -> StreamResult:
    """Read ``stream`` from its stored cursor to the end, landing page by page.

    Returns:
        Counts of what was read and landed; ``error`` is set when the stream stopped early
        (the pages before the failure stay landed, with their cursor).
    """
    log = get_logger(connector=connector.name, stream=stream)
    started = time.perf_counter()
    cursor = store.load_cursor(connector.name, stream)
    pages = read = inserted = updated = unchanged = deleted = 0
    error: str | None = None
    try:
        for page in connector.read(stream, cursor):
            crash_point("pull.page_read")
            try:
                # Stamped by the store once it holds the landing lock (see Store.landing_time).
                landed = store.land_page(connector.name, page, connector=connector.name)
            except ValueError as exc:
                # A payload the store cannot hold (a NaN the vendor's JSON smuggled in): the
                # page stays unlanded with its cursor, this stream reports it, the others go on.
                error = f"unstorable page: {exc}"
                store.save_error(connector.name, stream, error, now=_now())
                log.error("stream.unstorable_page", error=error, pages=pages)
                break
            pages += 1
            read += len(page.records)
            inserted += landed.inserted
            updated += landed.updated
            unchanged += landed.unchanged
            deleted += landed.deleted
            if progress is not None:
                progress(stream, len(page.records))
            crash_point("pull.page_landed")
    except ConnectorError as exc:
        error = f"{exc.kind}: {exc}"
        store.save_error(connector.name, stream, error, now=_now())
        log.warning("stream.failed", error=error, pages=pages)
    else:
        if pages == 0 and error is None:
            # Nothing to read is a success too: record it, so readiness does not go stale.
            store.save_cursor(connector.name, stream, cursor, now=_now())
    result = StreamResult(
        connector=connector.name,
        stream=stream,
        pages=pages,
        read=read,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        deleted=deleted,
        seconds=time.perf_counter() - started,
        error=error,
    )
    log.info(
        "stream.pulled",
        pages=pages,
        read=read,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        deleted=deleted,
        seconds=round(result.seconds, 3),
        ok=result.ok,
    )
    return result


def pull(
    store: Store,
    connector: Connector,
    streams: Iterable[str] | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> list[StreamResult]:
    """Pull ``streams`` (default: every stream of the connector) one after the other.

    A connector that can (:class:`~ledgerlink.connector.protocol.Prefetching`) first gets
    every stream's stored cursor, to start their reads in fewer calls.
    """
    names = list(streams) if streams is not None else [s.name for s in connector.streams()]
    if len(names) > 1 and isinstance(connector, Prefetching):
        connector.prefetch({name: store.load_cursor(connector.name, name) for name in names})
    return [pull_stream(store, connector, name, progress=progress) for name in names]
