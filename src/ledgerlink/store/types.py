"""Column types shared by the store's tables: UTC timestamps, portable JSON and big ids.

* :class:`UTCDateTime` stores timezone-aware UTC and gives back timezone-aware UTC on every
  database. PostgreSQL keeps ``timestamptz``; SQLite has no timezone support, so the value is
  converted to UTC and stored without offset, and the offset is put back when read.
  Naive datetimes are refused: a timestamp without a zone is a bug on a money path.
* :data:`JSON_TYPE` is SQLAlchemy's ``JSON`` everywhere and ``JSONB`` on PostgreSQL.
* :data:`BIG_ID` is ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite, where only an
  ``INTEGER PRIMARY KEY`` is the auto-incrementing rowid (SQLite integers are 64-bit anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["BIG_ID", "JSON_TYPE", "UTCDateTime", "utcnow"]

JSON_TYPE: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
BIG_ID: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that only accepts and only returns aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (naive on SQLite, which stores no offset).

        Raises:
            ValueError: ``value`` is a naive datetime.
        """
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; use a timezone-aware UTC value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a textual query
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"unexpected timestamp value of type {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
