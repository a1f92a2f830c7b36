"""Each plan reads every create the hub queued and the updates a target refused. The updates
it ever sent grow with each cycle (every Salesforce Account write of every day), so those
reads must go through the index that holds creates and refused updates apart from them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.store import Store
from ledgerlink.store.models import Outbox
from ledgerlink.sync import plan as plan_module
from ledgerlink.sync.outbox import PlannedWrite, enqueue

OUTBOX = Outbox.__table__  # type: ignore[attr-defined]


def _write(n: int, action: WriteAction) -> PlannedWrite:
    remote = None if action is WriteAction.CREATE else f"001{n:012d}"
    op = WriteOp(f"k-{action.value}-{n}", "Account", action, {"Name": f"Co {n}"}, remote)
    return PlannedWrite("salesforce", op, "customer", f"cust-{n}")


def _plan_of(conn: Connection, statement: Any) -> str:
    sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    return " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def test_a_plan_reads_creates_and_refused_updates_without_walking_every_update(
    store: Store,
) -> None:
    with store.engine.begin() as conn:
        enqueue(conn, [_write(n, WriteAction.UPDATE) for n in range(3000)])
        enqueue(conn, [_write(n, WriteAction.CREATE) for n in range(20)])
        conn.execute(
            update(OUTBOX).where(OUTBOX.c.idempotency_key == "k-update-7").values(status="failed")
        )
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE outbox")
    with store.engine.connect() as conn:
        for statement in (plan_module._CREATES, plan_module._REFUSED):
            assert "ix_outbox_kind_action" in _plan_of(conn, statement)
        world = plan_module._World()
        plan_module._load_outbox(conn, world)
        assert world.open_creates == {(f"cust-{n}", "salesforce", "Account") for n in range(20)}
        assert list(world.refused) == ["salesforce:Account:001000000000007"]
