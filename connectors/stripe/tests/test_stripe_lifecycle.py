"""Subscription life cycle on the sandbox with test clocks, and the events it emits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ledgerlink_stripe.sandbox import StripeSandbox
from ledgerlink_stripe.webhooks import WebhookIntake
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledgerlink.connector.protocol import Cursor, SandboxOptions
from ledgerlink.connector.sandbox import LoopbackServer

DAY = 86_400
START = 1_798_761_600  # 2027-01-01T00:00:00Z


class Stripe:
    """A tiny scenario driver speaking the Stripe API to the sandbox."""

    def __init__(self, sandbox: StripeSandbox) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(
            base_url=sandbox.base_url, headers={"authorization": f"Bearer {sandbox.api_key}"}
        )

    def post(self, path: str, **data: Any) -> dict[str, Any]:
        response = self.http.post(path, data=data)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return dict(self.http.get(path, params=params).json())

    def price(self, currency: str, lookup: str) -> dict[str, Any]:
        prices = self.get("/v1/prices", currency=currency, limit=100)["data"]
        return next(p for p in prices if p["lookup_key"] == f"{lookup}_{currency}")

    def customer_on_clock(self, clock: str, method: str = "pm_card_visa") -> dict[str, Any]:
        return self.post(
            "/v1/customers",
            name="Clockwork GmbH",
            test_clock=clock,
            **{"invoice_settings[default_payment_method]": method},
        )

    def subscribe(self, customer: str, *prices: str, quantity: int = 1) -> dict[str, Any]:
        data: dict[str, Any] = {"customer": customer}
        for n, price in enumerate(prices):
            data[f"items[{n}][price]"] = price
            if quantity != 1:
                data[f"items[{n}][quantity]"] = quantity
        return self.post("/v1/subscriptions", **data)

    def advance(self, clock: str, to: int) -> None:
        self.post(f"/v1/test_helpers/test_clocks/{clock}/advance", frozen_time=to)

    def invoices(self, customer: str) -> list[dict[str, Any]]:
        return list(self.get("/v1/invoices", customer=customer, limit=100)["data"])

    def event_types(self) -> list[str]:
        return [e["type"] for e in reversed(self.get("/v1/events", limit=100)["data"])]


@pytest.fixture
def api(sandbox: StripeSandbox) -> Iterator[Stripe]:
    """A scenario driver on a fresh sandbox."""
    driver = Stripe(sandbox)
    yield driver
    driver.http.close()


@pytest.fixture
def clock(api: Stripe) -> str:
    """A test clock frozen at 2027-01-01."""
    return str(api.post("/v1/test_helpers/test_clocks", frozen_time=START, name="t")["id"])


def test_new_subscription_invoices_and_renews(api: Stripe, clock: str) -> None:
    """A subscription bills its first month at once and again when the clock passes renewal."""
    customer = api.customer_on_clock(clock)
    price = api.price("eur", "pro")
    sub = api.subscribe(customer["id"], price["id"], quantity=3)
    assert sub["status"] == "active"
    assert sub["current_period_start"] == START
    api.advance(clock, START + 31 * DAY)
    invoices = api.invoices(customer["id"])
    assert [(i["billing_reason"], i["status"], i["total"]) for i in invoices] == [
        ("subscription_cycle", "paid", 3 * price["unit_amount"]),
        ("subscription_create", "paid", 3 * price["unit_amount"]),
    ]
    renewed = api.get(f"/v1/subscriptions/{sub['id']}")
    assert renewed["current_period_start"] == START + 30 * DAY
    types = api.event_types()
    assert types.count("invoice.paid") == 2
    assert "customer.subscription.created" in types


def test_upgrade_mid_period_prorates_onto_next_invoice(api: Stripe, clock: str) -> None:
    """Moving to a dearer price halfway through bills the prorated difference at renewal."""
    customer = api.customer_on_clock(clock)
    starter, pro = api.price("usd", "starter"), api.price("usd", "pro")
    sub = api.subscribe(customer["id"], starter["id"])
    api.advance(clock, START + 15 * DAY)
    item = sub["items"]["data"][0]["id"]
    api.post(
        f"/v1/subscriptions/{sub['id']}", **{"items[0][id]": item, "items[0][price]": pro["id"]}
    )
    api.advance(clock, START + 30 * DAY)
    renewal = api.invoices(customer["id"])[0]
    proration = [line for line in renewal["lines"]["data"] if line["proration"]]
    expected = round((pro["unit_amount"] - starter["unit_amount"]) * 15 / 30)
    assert sum(line["amount"] for line in proration) == expected
    assert renewal["total"] == pro["unit_amount"] + expected


def test_downgrade_with_always_invoice_credits_at_once(api: Stripe, clock: str) -> None:
    """A downgrade with proration_behavior=always_invoice issues a negative invoice now."""
    customer = api.customer_on_clock(clock)
    business, starter = api.price("gbp", "business"), api.price("gbp", "starter")
    sub = api.subscribe(customer["id"], business["id"])
    api.advance(clock, START + 10 * DAY)
    api.post(
        f"/v1/subscriptions/{sub['id']}",
        proration_behavior="always_invoice",
        **{"items[0][id]": sub["items"]["data"][0]["id"], "items[0][price]": starter["id"]},
    )
    credit = api.invoices(customer["id"])[0]
    assert credit["billing_reason"] == "subscription_update"
    assert credit["total"] == round((starter["unit_amount"] - business["unit_amount"]) * 20 / 30)


def test_add_on_item_is_prorated(api: Stripe, clock: str) -> None:
    """Adding an extra-seat item mid-period creates a positive proration."""
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("usd", "pro")["id"])
    seat = api.price("usd", "extra_seat")
    api.advance(clock, START + 20 * DAY)
    api.post(
        f"/v1/subscriptions/{sub['id']}", **{"items[1][price]": seat["id"], "items[1][quantity]": 2}
    )
    items = api.get(f"/v1/subscriptions/{sub['id']}")["items"]["data"]
    assert len(items) == 2
    pending = api.get("/v1/invoiceitems", customer=customer["id"])["data"]
    assert [i["amount"] for i in pending] == [round(2 * seat["unit_amount"] * 10 / 30)]


def test_metered_overage_is_billed_at_renewal(api: Stripe, clock: str) -> None:
    """Usage reported on a metered item is billed on the next invoice."""
    customer = api.customer_on_clock(clock)
    overage = api.price("usd", "api_overage")
    sub = api.subscribe(customer["id"], api.price("usd", "starter")["id"], overage["id"])
    metered = next(i for i in sub["items"]["data"] if i["price"]["id"] == overage["id"])
    api.post(f"/v1/subscription_items/{metered['id']}/usage_records", quantity=1200)
    api.advance(clock, START + 30 * DAY)
    renewal = api.invoices(customer["id"])[0]
    line = next(li for li in renewal["lines"]["data"] if li["price"]["id"] == overage["id"])
    assert line["quantity"] == 1200
    assert line["amount"] == 1200 * overage["unit_amount"]


def test_cancel_at_period_end_then_reactivate(api: Stripe, clock: str) -> None:
    """Cancelling at period end and undoing it before then keeps the subscription renewing."""
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("cad", "pro")["id"])
    api.post(f"/v1/subscriptions/{sub['id']}", cancel_at_period_end="true")
    api.post(f"/v1/subscriptions/{sub['id']}", cancel_at_period_end="false")
    api.advance(clock, START + 31 * DAY)
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_cancel_at_period_end_ends_at_renewal(api: Stripe, clock: str) -> None:
    """A subscription set to cancel at period end is canceled when the period ends."""
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("usd", "pro")["id"])
    api.post(f"/v1/subscriptions/{sub['id']}", cancel_at_period_end="true")
    api.advance(clock, START + 31 * DAY)
    ended = api.get(f"/v1/subscriptions/{sub['id']}")
    assert ended["status"] == "canceled"
    assert ended["ended_at"] == START + 30 * DAY
    assert "customer.subscription.deleted" in api.event_types()
    assert len(api.invoices(customer["id"])) == 1


def test_immediate_cancellation(api: Stripe, clock: str) -> None:
    """DELETE on a subscription cancels it at once."""
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("usd", "pro")["id"])
    response = api.http.delete(f"/v1/subscriptions/{sub['id']}")
    assert response.json()["status"] == "canceled"


def test_failed_renewal_then_successful_retry(api: Stripe, clock: str) -> None:
    """A declined renewal makes the subscription past_due; the dunning retry pays it."""
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("jpy", "pro")["id"])
    api.post(
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": "pm_card_chargeCustomerFail"},
    )
    api.advance(clock, START + 31 * DAY)
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "past_due"
    failed = api.invoices(customer["id"])[0]
    assert failed["status"] == "open"
    assert failed["attempt_count"] == 1
    api.post(
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": "pm_card_visa"},
    )
    api.advance(clock, START + 34 * DAY)
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"
    paid = api.get(f"/v1/invoices/{failed['id']}")
    assert paid["status"] == "paid"
    assert paid["attempt_count"] == 2
    types = api.event_types()
    assert types.index("invoice.payment_failed") < len(types) - 1 - types[::-1].index(
        "invoice.paid"
    )


def test_refund_dispute_and_payout_move_the_balance(
    api: Stripe, clock: str, sandbox: StripeSandbox
) -> None:
    """Refunds, disputes and payouts each create balance transactions with fees where due."""
    customer = api.customer_on_clock(clock, method="pm_card_createDispute")
    api.subscribe(customer["id"], api.price("usd", "business")["id"])
    charge = api.get("/v1/charges", customer=customer["id"])["data"][0]
    disputes = api.get("/v1/disputes", charge=charge["id"])["data"]
    assert len(disputes) == 1
    assert disputes[0]["balance_transactions"][0]["fee"] == 1_500
    refund = api.post("/v1/refunds", charge=charge["id"], amount=1_000)
    assert api.get(f"/v1/charges/{charge['id']}")["amount_refunded"] == 1_000
    payout = api.post("/v1/payouts", amount=10_000, currency="usd")
    sandbox.billing.settle_charges()
    txns = {t["source"]: t for t in api.get("/v1/balance_transactions", limit=10)["data"]}
    assert txns[refund["id"]]["amount"] == -1_000
    assert txns[payout["id"]]["type"] == "payout"
    assert txns[charge["id"]]["fee"] == round(charge["amount"] * 0.029) + 30
    assert {"charge.refunded", "charge.dispute.created", "payout.created"} <= set(api.event_types())


def test_connector_follows_the_life_cycle_through_events(
    api: Stripe, clock: str, connector: Any, st: Any
) -> None:
    """After first load, one incremental read lands the renewal's invoice and subscription."""
    subs_cursor = st.drain(connector, "subscriptions", Cursor())[1]
    inv_cursor = st.drain(connector, "invoices", Cursor())[1]
    customer = api.customer_on_clock(clock)
    sub = api.subscribe(customer["id"], api.price("usd", "pro")["id"])
    api.advance(clock, START + 31 * DAY)
    subs = [r for p in connector.read("subscriptions", subs_cursor) for r in p.records]
    invoices = [r for p in connector.read("invoices", inv_cursor) for r in p.records]
    assert [r.id for r in subs] == [sub["id"]]
    assert subs[0].payload["current_period_start"] == START + 30 * DAY
    assert {r.payload["status"] for r in invoices} == {"paid"}
    assert len(invoices) == 2


def test_sdk_drives_test_clocks(sandbox: StripeSandbox) -> None:
    """stripe-python's own test-clock service works against the sandbox unchanged."""
    import stripe
    from ledgerlink_stripe.client import FormHTTPXClient

    http = FormHTTPXClient(allow_sync_methods=True)
    client = stripe.StripeClient(
        sandbox.api_key,
        base_addresses={"api": sandbox.base_url},
        http_client=http,
        max_network_retries=0,
    )
    made = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    moved = client.v1.test_helpers.test_clocks.advance(made.id, params={"frozen_time": START + DAY})
    assert moved.frozen_time == START + DAY
    http.close()


@pytest.fixture
def receiver(st: Any) -> Iterator[tuple[str, WebhookIntake, Any]]:
    """A loopback webhook receiver backed by a WebhookIntake; its secret is set later."""
    sink = st.ListSink()
    holder: dict[str, WebhookIntake] = {}

    async def endpoint(request: Request) -> Response:
        result = holder["intake"].handle(await request.body(), request.headers)
        return Response(result.outcome, status_code=result.status)

    server = LoopbackServer(
        Starlette(routes=[Route("/webhooks/stripe", endpoint, methods=["POST"])])
    ).start()
    holder["intake"] = WebhookIntake(["whsec_placeholder"], sink)
    yield f"{server.base_url}/webhooks/stripe", holder["intake"], sink
    server.stop()


def test_signed_webhooks_reach_the_intake_with_retries(
    api: Stripe, clock: str, sandbox: StripeSandbox, receiver: Any
) -> None:
    """Every lifecycle event is delivered signed; a failed delivery is retried and lands once."""
    url, intake, sink = receiver
    endpoint = api.post("/v1/webhook_endpoints", url=url, **{"enabled_events[0]": "*"})
    intake.rotate([endpoint["secret"]])
    sink.fail_times = 1  # the first delivery meets a store outage and answers 500
    customer = api.customer_on_clock(clock)
    api.subscribe(customer["id"], api.price("usd", "pro")["id"])
    assert sandbox.webhooks.wait_idle(10)
    delivered = [e.id for e in sink.events]
    sent = {e["id"] for e in api.get("/v1/events", limit=100)["data"]}
    assert sorted(delivered) == sorted(sent)
    first = sandbox.webhooks.deliveries[0]
    assert (first.attempts, first.delivered, first.errors) == (2, True, ["HTTP 500"])


def test_sandbox_stays_deterministic_under_a_seed() -> None:
    """The plugin's sandbox seeded twice serves the same customers."""
    from ledgerlink_stripe import plugin

    ids = []
    for _ in range(2):
        box = plugin.start_sandbox(SandboxOptions(seed=9, size=10))
        with httpx.Client(
            base_url=box.base_url, headers={"authorization": f"Bearer {box.api_key}"}
        ) as http:
            ids.append([c["id"] for c in http.get("/v1/customers").json()["data"]])
        box.stop()
    assert ids[0] == ids[1]


def test_invoice_item_names_its_price_under_pricing(api: Stripe, clock: str) -> None:
    """The pinned API version takes pricing[price] on an invoice item and refuses a top-level price."""
    customer = api.customer_on_clock(clock)
    seat = api.price("usd", "extra_seat")
    refused = api.http.post(
        "/v1/invoiceitems", data={"customer": customer["id"], "price": seat["id"]}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "parameter_unknown"
    item = api.post(
        "/v1/invoiceitems",
        customer=customer["id"],
        quantity=3,
        **{"pricing[price]": seat["id"]},
    )
    assert (item["amount"], item["currency"]) == (3 * seat["unit_amount"], "usd")
