"""Timestamps round-trip as timezone-aware UTC on both databases; naive ones are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError
from sqlmodel import Session, select

from ledgerlink.store import AuditLog


def test_aware_datetime_comes_back_as_the_same_instant_in_utc(engine: Engine) -> None:
    """A timestamp in any zone is read back as the same instant, timezone-aware, in UTC."""
    paris_summer = timezone(timedelta(hours=2))
    at = datetime(2026, 6, 30, 23, 30, 15, 123456, tzinfo=paris_summer)
    with Session(engine) as session:
        session.add(AuditLog(at=at, actor="ops", action="test", subject="tz", details={}))
        session.commit()
    with Session(engine) as session:
        stored = session.exec(select(AuditLog)).one()
    assert stored.at == at
    assert stored.at.tzinfo is not None
    assert stored.at.utcoffset() == timedelta(0)
    assert stored.at.replace(tzinfo=None) == datetime(2026, 6, 30, 21, 30, 15, 123456)


def test_naive_datetime_is_refused(engine: Engine) -> None:
    """Storing a naive datetime raises instead of guessing its zone."""
    with Session(engine) as session:
        session.add(
            AuditLog(at=datetime(2026, 1, 1), actor="ops", action="t", subject="s", details={})
        )
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_timestamps_order_by_instant(engine: Engine) -> None:
    """Timestamps written in different zones sort by the instant they denote."""
    early = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=9)))  # 03:00 UTC
    late = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    with Session(engine) as session:
        session.add(AuditLog(at=late, actor="a", action="x", subject="late", details={}))
        session.add(AuditLog(at=early, actor="a", action="x", subject="early", details={}))
        session.commit()
    with Session(engine) as session:
        subjects = session.exec(select(AuditLog.subject).order_by(AuditLog.at)).all()  # type: ignore[arg-type]
    assert subjects == ["early", "late"]
