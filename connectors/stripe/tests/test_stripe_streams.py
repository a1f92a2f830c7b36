"""Reading Stripe: first load by lists, then the Events API, retention fallback, fees."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from ledgerlink_stripe.sandbox import StripeSandbox

from ledgerlink.connector.protocol import Cursor


def _http(sandbox: StripeSandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.base_url, headers={"authorization": f"Bearer {sandbox.api_key}"}
    )


def test_first_load_lands_every_object_once(shared_sandbox: StripeSandbox, st: Any) -> None:
    """A first load yields every seeded invoice exactly once, 100 per list call."""
    conn = st.connect(shared_sandbox)
    shared_sandbox.faults.reset_counts()
    pages, cursor = st.drain(conn, "invoices", Cursor())
    ids = [r.id for p in pages for r in p.records]
    assert len(ids) == len(set(ids)) == 120
    assert shared_sandbox.faults.request_count == 2
    assert cursor.state["mode"] == "events"


def test_no_change_cycle_costs_one_call_per_stream(shared_sandbox: StripeSandbox, st: Any) -> None:
    """Reading every stream again from its final cursor yields nothing and costs one call each."""
    conn = st.connect(shared_sandbox)
    cursors = st.load_all(conn)
    shared_sandbox.faults.reset_counts()
    for name, cursor in cursors.items():
        pages, after = st.drain(conn, name, cursor)
        assert [r for p in pages for r in p.records] == []
        assert after.state["since"] == cursor.state["since"]
    assert shared_sandbox.faults.request_count == len(cursors)


def test_crash_mid_list_resumes_from_the_stored_page(
    shared_sandbox: StripeSandbox, st: Any
) -> None:
    """Reading again from a mid-list page cursor continues after that page, losing nothing."""
    conn = st.connect(shared_sandbox)
    first_page = next(iter(conn.read("charges", Cursor())))
    rest, _ = st.drain(conn, "charges", first_page.cursor)
    ids = [r.id for r in first_page.records] + [r.id for p in rest for r in p.records]
    assert len(ids) == len(set(ids)) == 120


def test_changes_arrive_through_events_with_tombstones(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """Created, updated and deleted customers come from /v1/events; deletions as tombstones."""
    _, cursor = st.drain(connector, "customers", Cursor())
    with _http(sandbox) as http:
        created = http.post("/v1/customers", data={"name": "Acme"}).json()
        http.post(f"/v1/customers/{created['id']}", data={"email": "ap@acme.example"})
        gone = http.get("/v1/customers", params={"limit": 1}).json()["data"][0]
        seeded = http.get("/v1/customers", params={"limit": 2}).json()["data"][1]
        http.delete(f"/v1/customers/{seeded['id']}")
    sandbox.faults.reset_counts()
    pages, after = st.drain(connector, "customers", cursor)
    records = [r for p in pages for r in p.records]
    by_id = {r.id: r for r in records}
    assert by_id[created["id"]].payload["email"] == "ap@acme.example"
    assert by_id[seeded["id"]].deleted is True
    assert gone["id"] == created["id"]
    assert sandbox.faults.request_count == 1
    again, _ = st.drain(connector, "customers", after)
    assert [r for p in again for r in p.records] == []


def test_boundary_second_events_are_not_landed_twice(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """Events at the cursor's own second are skipped by id, new ones at that second are not."""
    _, cursor = st.drain(connector, "products", Cursor())
    with _http(sandbox) as http:
        http.post("/v1/products", data={"name": "Gold"})
        _, mid = st.drain(connector, "products", cursor)
        http.post("/v1/products", data={"name": "Platinum"})
    pages, _ = st.drain(connector, "products", mid)
    names = [r.payload["name"] for p in pages for r in p.records]
    assert names == ["Platinum"]


def test_cursor_older_than_retention_relists_and_logs(
    shared_sandbox: StripeSandbox, st: Any
) -> None:
    """A cursor older than the event retention falls back to a full re-list."""
    conn = st.connect(shared_sandbox)
    old = int(time.time()) - 31 * 86_400
    stale = Cursor(value="2000-01-01T00:00:00Z", state={"mode": "events", "since": old, "seen": []})
    pages, after = st.drain(conn, "subscriptions", stale)
    assert len([r for p in pages for r in p.records]) == 60
    assert after.state["since"] > old + 30 * 86_400


def test_charge_without_balance_transaction_waits_for_its_fee(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """A succeeded charge with no balance transaction is held back, then landed with its fee."""
    cursor = st.drain(connector, "charges", Cursor())[1]
    with _http(sandbox) as http:
        customer = http.post(
            "/v1/customers",
            data={"name": "Fee Co", "invoice_settings[default_payment_method]": "pm_card_visa"},
        ).json()
        price = http.get("/v1/prices", params={"currency": "usd", "limit": 100}).json()["data"]
        licensed = next(p for p in price if p["recurring"]["usage_type"] == "licensed")
        http.post(
            "/v1/subscriptions",
            data={"customer": customer["id"], "items[0][price]": licensed["id"]},
        )
    pages, cursor = st.drain(connector, "charges", cursor)
    assert [r for p in pages for r in p.records] == []
    assert len(cursor.state["pending_charges"]) == 1
    sandbox.billing.settle_charges()
    pages, cursor = st.drain(connector, "charges", cursor)
    landed = [r for p in pages for r in p.records]
    assert len(landed) == 1
    assert landed[0].payload["balance_transaction"].startswith("txn_")
    assert "pending_charges" not in cursor.state


def test_balance_transactions_follow_created(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """New balance transactions (a payout) arrive through the created filter of their list."""
    _, cursor = st.drain(connector, "balance_transactions", Cursor())
    with _http(sandbox) as http:
        payout = http.post("/v1/payouts", data={"amount": 5000, "currency": "usd"}).json()
    pages, _ = st.drain(connector, "balance_transactions", cursor)
    sources = [r.payload["source"] for p in pages for r in p.records]
    assert payout["id"] in sources


def test_unknown_stream_is_a_configuration_error(connector: Any) -> None:
    """Asking for a stream that does not exist raises ConfigurationError."""
    from ledgerlink.connector.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        connector.read("leads", Cursor())


def _pay_new_invoices(sandbox: StripeSandbox, count: int) -> set[str]:
    """Invoice a customer ``count`` times and pay each invoice, as Stripe's billing would;
    the invoices' ids."""
    customer = sandbox.state.catalog.id("customer", 1)
    paid = set()
    for n in range(count):
        sandbox.billing.create_invoice_item(
            {"customer": customer, "currency": "usd", "unit_amount": 1_000 + n, "quantity": 1}
        )
        invoice = sandbox.billing.create_invoice(
            {"customer": customer, "currency": "usd", "pending_invoice_items_behavior": "include"}
        )
        sandbox.billing.pay_invoice(invoice["id"], {"payment_method": "pm_card_visa"})
        paid.add(invoice["id"])
    return paid


def test_a_paid_invoice_is_read_from_three_events(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """Paid invoices land paid from their created, finalized and paid events: the payment
    succeeded event that comes with each paid one (the same invoice) is not listed."""
    _, cursor = st.drain(connector, "invoices", Cursor())
    paid = _pay_new_invoices(sandbox, 30)
    with _http(sandbox) as http:
        listed = http.get("/v1/events", params={"type": "invoice.*", "limit": 100}).json()
    assert {e["type"] for e in listed["data"]} >= {"invoice.paid", "invoice.payment_succeeded"}
    sandbox.faults.reset_counts()
    pages, _ = st.drain(connector, "invoices", cursor)
    landed = {r.id: r.payload for p in pages for r in p.records}
    assert set(landed) == set(paid)
    assert {payload["status"] for payload in landed.values()} == {"paid"}
    # 90 events in one page; with the payment succeeded ones, 120 in two.
    assert sandbox.faults.request_count == 1


def test_an_object_with_several_events_in_a_read_lands_once(
    sandbox: StripeSandbox, connector: Any, st: Any
) -> None:
    """120 invoices paid since the last read (360 events): each lands once, paid, in two pages
    of 100 and 20; a read resumed from the first page's cursor (a crash after it) lands the
    other 20, nothing lost."""
    _, cursor = st.drain(connector, "invoices", Cursor())
    paid = _pay_new_invoices(sandbox, 120)
    pages, _ = st.drain(connector, "invoices", cursor)
    assert [len(p.records) for p in pages] == [100, 20]
    landed = [r for p in pages for r in p.records]
    assert {r.id for r in landed} == paid
    assert {r.payload["status"] for r in landed} == {"paid"}

    resumed, _ = st.drain(connector, "invoices", pages[0].cursor)
    rest = [r for p in resumed for r in p.records]
    assert {r.id for r in rest} | {r.id for r in pages[0].records} == paid
    assert {r.payload["status"] for r in rest} == {"paid"}
