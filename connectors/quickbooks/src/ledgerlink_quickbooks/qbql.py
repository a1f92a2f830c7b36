"""Building QuickBooks query-language statements with safely quoted values.

Values in ``WHERE`` are user data (a customer called ``Bob's "Best" \\ Co``): :func:`quote`
escapes backslashes and single quotes with a backslash, the escaping QuickBooks documents.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_RESULTS", "quote", "select"]

MAX_RESULTS = 1000


def quote(value: str) -> str:
    """Return ``value`` as a single-quoted query literal (``\\`` and ``'`` escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def select(
    entity: str,
    where: Sequence[str] = (),
    *,
    order_by: str | None = None,
    start_position: int = 1,
    max_results: int = MAX_RESULTS,
) -> str:
    """Return ``SELECT * FROM entity [WHERE ...] [ORDERBY ...] STARTPOSITION n MAXRESULTS m``.

    Args:
        entity: the entity name (trusted: from the stream catalog).
        where: conditions already built with :func:`quote` for their values.
        order_by: field to order by.
        start_position: 1-based offset.
        max_results: page size, at most 1000.

    Raises:
        ValueError: page size or offset out of range.
    """
    if not 1 <= max_results <= MAX_RESULTS or start_position < 1:
        msg = "max_results must be 1..1000 and start_position >= 1"
        raise ValueError(msg)
    text = f"SELECT * FROM {entity}"  # noqa: S608 - QuickBooks query, values quoted by quote()
    if where:
        text += " WHERE " + " AND ".join(where)
    if order_by:
        text += f" ORDERBY {order_by}"
    return f"{text} STARTPOSITION {start_position} MAXRESULTS {max_results}"
