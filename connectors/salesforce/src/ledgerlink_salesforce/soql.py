"""Building SOQL safely: escaping of string literals, date-time literals, field lists.

Every value the hub puts into a SOQL statement goes through this module. Salesforce's SOQL
reference lists the escape sequences a quoted string accepts (``\\n``, ``\\r``, ``\\t``,
``\\b``, ``\\f``, ``\\"``, ``\\'``, ``\\\\``); a value that is user input (an account name,
an external id) is escaped so it can never end the literal and change the statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = [
    "escape_like",
    "escape_string",
    "format_datetime",
    "in_list",
    "parse_datetime",
    "quote",
    "select",
]

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def escape_string(value: str) -> str:
    """Return ``value`` escaped for use between single quotes in SOQL.

    Args:
        value: any text, including quotes, backslashes and line breaks.

    Returns:
        The escaped text (without the surrounding quotes).
    """
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def escape_like(value: str) -> str:
    """Return ``value`` escaped for a LIKE pattern: also ``%`` and ``_`` lose their meaning."""
    return escape_string(value).replace("%", "\\%").replace("_", "\\_")


def quote(value: str) -> str:
    """Return ``value`` as a quoted, escaped SOQL string literal."""
    return f"'{escape_string(value)}'"


def in_list(values: Iterable[str]) -> str:
    """Return ``('a', 'b')`` for an ``IN`` clause, every value escaped.

    Raises:
        ValueError: ``values`` is empty (``IN ()`` is not valid SOQL).
    """
    quoted = [quote(v) for v in values]
    if not quoted:
        msg = "an IN list needs at least one value"
        raise ValueError(msg)
    return "(" + ", ".join(quoted) + ")"


def format_datetime(moment: datetime) -> str:
    """Return a SOQL date-time literal (``2025-01-31T08:00:00Z``, whole seconds, UTC).

    Raises:
        ValueError: ``moment`` is naive (times are always timezone-aware UTC in ledgerlink).
    """
    if moment.tzinfo is None:
        msg = "SOQL date-times must be timezone-aware"
        raise ValueError(msg)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str) -> datetime:
    """Parse a Salesforce date-time (``2025-01-31T08:00:00.000+0000`` or ``...Z``) to UTC.

    Raises:
        ValueError: ``text`` is not a date-time.
    """
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", cleaned):
        cleaned = cleaned[:-2] + ":" + cleaned[-2:]
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        msg = f"not a SOQL identifier: {name!r}"
        raise ValueError(msg)
    return name


def select(
    object_name: str,
    fields: Iterable[str],
    where: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> str:
    """Build ``SELECT fields FROM object [WHERE ...] [ORDER BY ...] [LIMIT n]``.

    Field and object names are checked to be plain identifiers (they come from configuration);
    ``where`` must already be built with :func:`quote` / :func:`format_datetime`.

    Raises:
        ValueError: a name is not an identifier or no field is given.
    """
    names = [_identifier(f) for f in fields]
    if not names:
        msg = "SELECT needs at least one field"
        raise ValueError(msg)
    parts = [f"SELECT {', '.join(names)} FROM {_identifier(object_name)}"]  # noqa: S608 - names are checked identifiers, values escaped here
    if where:
        parts.append(f"WHERE {where}")
    if order_by:
        parts.append(f"ORDER BY {order_by}")
    if limit is not None:
        parts.append(f"LIMIT {int(limit)}")
    return " ".join(parts)
