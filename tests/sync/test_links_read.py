"""Plans read every link a few times a pass, through the database driver's own cursor: the
rows must be the ones SQLAlchemy would give, in the transaction of the caller."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from ledgerlink.store import Store
from ledgerlink.store.models import CustomerLink
from ledgerlink.sync._landed import PassLinks, read_links

LINK = CustomerLink.__table__  # type: ignore[attr-defined]


def test_every_linked_record_in_the_order_links_were_made(store: Store, link_customer: Any) -> None:
    link_customer(("salesforce", "Account", "001A"), ("stripe", "customers", "cus_'quoted"))
    link_customer(("quickbooks", "Customer", "58"), customer="cust-2", name="Globex")
    link_customer(("stripe", "customers", "cus_2"), customer="cust-2", name="Globex")
    with store.engine.begin() as conn:  # a pair waiting for review is not a link yet
        conn.execute(update(LINK).where(LINK.c.external_id == "cus_2").values(status="review"))
    with store.engine.connect() as conn:
        rows = read_links(conn)
        expected = conn.execute(
            select(LINK.c.system, LINK.c.object, LINK.c.external_id, LINK.c.customer_id)
            .where(LINK.c.status == "linked")
            .order_by(LINK.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
    assert [tuple(r) for r in rows] == [
        ("salesforce", "Account", "001A", "cust-1"),
        ("stripe", "customers", "cus_'quoted", "cust-1"),
        ("quickbooks", "Customer", "58", "cust-2"),
    ]


def test_links_are_read_in_the_callers_transaction(store: Store, link_customer: Any) -> None:
    link_customer(("salesforce", "Account", "001A"))
    with store.engine.connect() as conn:
        assert len(read_links(conn)) == 1
        assert conn.in_transaction()  # begun as a statement would begin it
        conn.execute(
            insert(LINK).values(
                system="stripe",
                object="customers",
                external_id="cus_1",
                customer_id="cust-1",
                score=1.0,
                method="xref",
                status="linked",
                reasons=[],
                created_at=conn.execute(select(LINK.c.created_at)).scalar_one(),
                updated_at=conn.execute(select(LINK.c.updated_at)).scalar_one(),
            )
        )
        assert [r[2] for r in read_links(conn)] == ["001A", "cus_1"]  # its own write, unsaved
        conn.rollback()
        assert [r[2] for r in read_links(conn)] == ["001A"]


def test_the_plans_after_a_push_read_the_links_it_made(store: Store, link_customer: Any) -> None:
    link_customer(("salesforce", "Account", "001A"))
    link_customer(("quickbooks", "Customer", "58"), customer="cust-2", name="Globex")
    with store.engine.connect() as conn:
        before = PassLinks.read(conn)
    with store.engine.connect() as conn:
        assert before.since(conn) == before  # nothing linked since: the same rows
    # The push links the records it created (method ``created``), one of them pending review.
    link_customer(("stripe", "customers", "cus_new"), customer="cust-2", name="Globex")
    link_customer(("quickbooks", "Customer", "59"), customer="cust-1", name="Acme")
    with store.engine.begin() as conn:
        conn.execute(update(LINK).where(LINK.c.external_id == "59").values(status="review"))
    with store.engine.connect() as conn:
        after = before.since(conn)
        fresh = PassLinks.read(conn)
        assert after.rows == fresh.rows  # as a read of every link would give
        assert after.highest == fresh.highest
        assert [r[2] for r in after.rows] == ["001A", "58", "cus_new"]
        assert after.since(conn) == after
