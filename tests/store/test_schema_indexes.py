"""Schema guarantees other parts rely on: one quarantine row per record and stage, and the
partial index of open outbox rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ledgerlink.mapping import quarantine_record
from ledgerlink.store import Quarantine

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]


def _quarantine(engine: Engine, reason: str, now: datetime, stage: str = "map") -> int:
    with engine.begin() as conn:
        return quarantine_record(
            conn,
            system="stripe",
            object_name="customers",
            external_id="cus_1",
            stage=stage,
            reason=reason,
            payload={"id": "cus_1", "reason": reason},
            now=now,
        )


def test_quarantining_again_updates_the_one_row_and_reopens_it(engine: Engine) -> None:
    """A record quarantined twice at one stage keeps one row, with the latest reason and time."""
    first = _quarantine(engine, "bad currency", T0)
    with engine.begin() as conn:
        conn.execute(_QUARANTINE.update().values(resolved_at=T0))
    second = _quarantine(engine, "bad email", T1)
    assert first == second
    with engine.connect() as conn:
        rows = conn.execute(select(_QUARANTINE)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["reason"], row["payload"]["reason"]) == ("bad email", "bad email")
    assert row["resolved_at"] is None
    assert Quarantine.model_validate(dict(row)).created_at == T0
    assert Quarantine.model_validate(dict(row)).updated_at == T1


def test_each_stage_has_its_own_quarantine_row(engine: Engine) -> None:
    """The same record failing at two stages gives two rows."""
    assert _quarantine(engine, "map failed", T0, "map") != _quarantine(
        engine, "push failed", T0, "push"
    )


def test_a_duplicate_quarantine_row_is_refused(engine: Engine) -> None:
    """The database itself refuses a second row for the same record and stage."""
    _quarantine(engine, "first", T0)
    values = {
        "system": "stripe",
        "object": "customers",
        "external_id": "cus_1",
        "stage": "map",
        "reason": "racing replica",
        "payload": {},
        "created_at": T1,
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(_QUARANTINE.insert().values(**values))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(_QUARANTINE)).scalar_one() == 1


def test_open_outbox_rows_have_a_partial_index_by_target(engine: Engine) -> None:
    """The outbox has an index on (target, id) limited to pending and in-flight rows."""
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("outbox")}
    open_index = indexes["ix_outbox_open"]
    assert open_index["column_names"] == ["target", "id"]
    where = str(open_index.get("dialect_options", {}).get(f"{engine.dialect.name}_where", ""))
    assert "pending" in where
    assert "in_flight" in where
