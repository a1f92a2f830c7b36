"""Revenue lifecycle scenarios played on the Stripe sandbox, checked through `ledgerlink report`.

Each test plays one lifecycle change on its own Stripe test clock (a few customers per clock,
and no advance beyond two billing intervals, the limit Stripe sets), exactly as the calls would
go to a Stripe test-mode account: add-on with proration, metered overage billed through a
billing meter, renewal of an annual plan, a failed renewal recovered by dunning after the card
is updated, refunds, and disputes lost and won. The Stripe connector pulls the account into the
store and the figures are read from the reports a finance user runs: `report mrr` (and
`--explain`), `report movements` and `report revenue` (bookings, billings, cash, recognised).

Expected figures are worked out by hand in the comments, with every clock time at noon UTC.
One sandbox fact shapes them: a month of billing is 30 days (Stripe renews on the same day of
the next month; an annual plan renews on the same date a year later, as Stripe does). Recognised
revenue spreads each invoice line over the calendar days of its service period, the last day
excluded, and splits it with largest-remainder allocation (ties go to the earlier month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ledgerlink.store import Store

from .conftest import Stripe, StripeSandbox, report_rows

STREAMS = ("prices", "subscriptions", "invoices", "charges", "refunds", "disputes")
MOVEMENTS = ("opening", "new", "expansion", "contraction", "churn", "reactivation", "closing")
REVENUE = ("bookings", "billings", "cash", "recognised")


def at(month: int, day: int, year: int = 2026) -> int:
    """Unix seconds of a day at noon UTC."""
    return int(datetime(year, month, day, 12, tzinfo=UTC).timestamp())


def usd(*amounts: str) -> tuple[Decimal, ...]:
    """Amounts as the reports print them."""
    return tuple(Decimal(a) for a in amounts)


@dataclass
class World:
    """The sandbox, the store the connector pulls into, and the CLI on that store."""

    sandbox: StripeSandbox
    store: Store
    config: Path

    @property
    def stripe(self) -> Stripe:
        """The client on the sandbox's Stripe API."""
        return self.sandbox.stripe

    def pull(self) -> None:
        """Pull the billing streams into the store, as a sync cycle does."""
        self.sandbox.pull(self.store, STREAMS)

    def rows(self, *args: str) -> list[dict[str, str]]:
        """Run a report as CSV and parse its rows."""
        return report_rows(self.config, *args)

    def mrr(self, customer: str, first: str, last: str, *args: str) -> dict[str, tuple[str, ...]]:
        """`report mrr`: the customer's (mrr, arr, metered, one_off) per month with a row."""
        rows = self.rows("mrr", "--from", first, "--to", last, *args)
        return {
            r["month"]: (r["mrr"], r["arr"], r["metered"], r["one_off"])
            for r in rows
            if r["customer"] == customer
        }

    def movements(
        self, customer: str, first: str, last: str, *args: str
    ) -> dict[str, dict[str, Decimal]]:
        """`report movements --by-customer`: the customer's non-zero amounts per month of change."""
        rows = self.rows("movements", "--from", first, "--to", last, "--by-customer", *args)
        return {
            r["month"]: {k: Decimal(r[k]) for k in MOVEMENTS if Decimal(r[k])}
            for r in rows
            if r["customer"] == customer
        }

    def revenue(self, customer: str, first: str, last: str) -> dict[str, tuple[Decimal, ...]]:
        """`report revenue --customer`: (bookings, billings, cash, recognised) per month."""
        rows = self.rows("revenue", "--from", first, "--to", last, "--customer", customer)
        assert {r["currency"] for r in rows} == {"USD"}
        return {r["month"]: tuple(Decimal(r[k]) for k in REVENUE) for r in rows}

    def explain(self, customer: str, month: str) -> list[tuple[str, ...]]:
        """`report mrr --explain`: (quantity, unit price, normalisation, mrr, excluded) per item."""
        rows = self.rows("mrr", "--explain", customer, "--to", month)
        return sorted(
            (r["quantity"], r["unit_price"], r["normalisation"], r["mrr"], r["excluded"])
            for r in rows
        )


@pytest.fixture
def world(store: Store, report_config: Path, stripe_sandbox: StripeSandbox) -> World:
    """A fresh Stripe sandbox, a migrated store and a config pointing the CLI at it."""
    return World(stripe_sandbox, store, report_config)


def key_of(customer: str) -> str:
    """The report key of a Stripe customer not linked to a golden customer yet."""
    return f"stripe/customers/{customer}"


def test_add_on_is_expansion_and_its_proration_is_billed_not_mrr(world: World) -> None:
    """Five seats added mid-period expand MRR in their month; the proration is billed, not MRR."""
    stripe = world.stripe
    product = stripe.post("/v1/products", "prod", name="Platform")["id"]
    platform = stripe.monthly("platform", product, 20_000)  # 200.00 a month
    seat = stripe.monthly("seat", product, 2_000)  # 20.00 a seat a month
    clock = stripe.clock("clock", at(1, 10))
    customer = stripe.customer("a", clock)
    sub = stripe.subscribe("sub", customer, platform)  # period Jan 10 -> Feb 9
    stripe.advance(clock, at(2, 20))  # renews Feb 9 -> Mar 11
    stripe.post(
        f"/v1/subscriptions/{sub['id']}",
        "add-on",
        proration_behavior="create_prorations",
        **{"items[0][price]": seat, "items[0][quantity]": 5},
    )
    stripe.advance(clock, at(3, 20))  # renews Mar 11 with the seats and the proration
    stripe.advance(clock, at(4, 15))  # renews Apr 10
    world.pull()
    who = key_of(customer)

    # MRR: 200.00 from January; from Feb 20 the 5 seats add 5 x 20.00 = 100.00 (expansion).
    # The proration (below) is never MRR nor a one-off charge.
    assert world.mrr(who, "2026-01", "2026-04") == {
        "2026-01": ("200.00", "2400.00", "0.00", "0.00"),
        "2026-02": ("300.00", "3600.00", "0.00", "0.00"),
        "2026-03": ("300.00", "3600.00", "0.00", "0.00"),
        "2026-04": ("300.00", "3600.00", "0.00", "0.00"),
    }
    assert world.movements(who, "2026-01", "2026-04") == {
        "2026-01": {"new": Decimal("200.00"), "closing": Decimal("200.00")},
        "2026-02": {
            "opening": Decimal("200.00"),
            "expansion": Decimal("100.00"),
            "closing": Decimal("300.00"),
        },
    }
    # Proration on Feb 20 for the 19 days left of the 30-day period to Mar 11:
    # 5 x 20.00 x 19/30 = 63.333... -> 63.33, billed on the Mar 11 invoice: 200 + 100 + 63.33.
    # Recognised, by day (period [start, end), split by days in each month):
    #   Jan 10 invoice 200.00 over Jan 10..Feb 8 (22 + 8 days): Jan 146.67, Feb 53.33
    #   Feb 9 invoice 200.00 over Feb 9..Mar 10 (20 + 10 days): Feb 133.33, Mar 66.67
    #   proration 63.33 over Feb 20..Mar 10 (9 + 10 days): Feb 30.00, Mar 33.33
    #   Mar 11 invoice 200 + 100 over Mar 11..Apr 9 (21 + 9 days): Mar 210.00, Apr 90.00
    #   Apr 10 invoice 300.00 over Apr 10..May 9 (21 + 9 days): Apr 210.00
    # Feb 53.33 + 133.33 + 30.00 = 216.66; Mar 66.67 + 33.33 + 210.00 = 310.00; Apr 300.00.
    # Every invoice is paid when issued, so cash equals billings month by month.
    assert world.revenue(who, "2026-01", "2026-04") == {
        "2026-01": usd("0.00", "200.00", "200.00", "146.67"),
        "2026-02": usd("0.00", "200.00", "200.00", "216.66"),
        "2026-03": usd("0.00", "363.33", "363.33", "310.00"),
        "2026-04": usd("0.00", "300.00", "300.00", "300.00"),
    }
    assert world.explain(who, "2026-02") == [
        ("1", "200.00", "200.00 USD per month / 1 months, part 1 of 1", "200.00", ""),
        ("5", "20.00", "100.00 USD per month / 1 months, part 1 of 1", "100.00", ""),
    ]


def test_metered_overage_is_billed_in_arrears_and_reported_apart_from_mrr(world: World) -> None:
    """Usage sent to a billing meter is billed on the next invoice, in revenue, never in MRR."""
    stripe = world.stripe
    meter = stripe.post(
        "/v1/billing/meters",
        "meter",
        display_name="API calls",
        event_name="api_call",
        **{"default_aggregation[formula]": "sum"},
    )["id"]
    product = stripe.post("/v1/products", "prod", name="API")["id"]
    platform = stripe.monthly("platform", product, 10_000)  # 100.00 a month
    calls = stripe.monthly("calls", product, 5, usage_type="metered", meter=meter)  # 0.05 a call
    clock = stripe.clock("clock", at(1, 10))
    customer = stripe.customer("m", clock)
    stripe.subscribe("sub", customer, platform, calls)  # period Jan 10 -> Feb 9

    def usage(identifier: str, calls: int, attempt: int = 1) -> None:
        payload = {"payload[stripe_customer_id]": customer, "payload[value]": calls}
        stripe.post(
            "/v1/billing/meter_events",
            f"{identifier}-{attempt}",
            event_name="api_call",
            identifier=identifier,
            **payload,
        )

    stripe.advance(clock, at(1, 20))
    usage("jan-20", 1_000)
    stripe.advance(clock, at(2, 1))
    usage("feb-1", 500)
    stripe.advance(clock, at(2, 15))  # Feb 9 invoice: 1,500 calls of Jan 10 -> Feb 9
    usage("feb-15", 2_000)
    usage("feb-15", 2_000, attempt=2)  # sent again by a retrying job: counted once
    stripe.advance(clock, at(3, 20))  # Mar 11 invoice: 2,000 calls of Feb 9 -> Mar 11
    world.pull()
    who = key_of(customer)

    invoices = stripe.get("/v1/invoices", customer=customer)["data"]
    billed = {
        (line["quantity"], line["amount"], line["period"]["start"])
        for invoice in invoices
        for line in invoice["lines"]["data"]
        if line["price"]["id"] == calls
    }
    assert billed == {(0, 0, at(1, 10)), (1_500, 7_500, at(1, 10)), (2_000, 10_000, at(2, 9))}
    # MRR is the platform's 100.00 only; usage is billed in arrears and reported apart in the
    # month of its invoice: 1,500 x 0.05 = 75.00 in February, 2,000 x 0.05 = 100.00 in March.
    assert world.mrr(who, "2026-01", "2026-03") == {
        "2026-01": ("100.00", "1200.00", "0.00", "0.00"),
        "2026-02": ("100.00", "1200.00", "75.00", "0.00"),
        "2026-03": ("100.00", "1200.00", "100.00", "0.00"),
    }
    # No movement after the start: usage never moves MRR.
    assert world.movements(who, "2026-01", "2026-03") == {
        "2026-01": {"new": Decimal("100.00"), "closing": Decimal("100.00")},
    }
    # Billings: Jan 100.00; Feb 100.00 + 75.00; Mar 100.00 + 100.00 (cash the same).
    # Recognised: the platform as in a 100.00 plan from Jan 10 (Jan 73.33, Feb 26.67 + 66.67,
    # Mar 33.33 + 70.00, Apr 30.00); usage over the period it was used in:
    #   75.00 over Jan 10..Feb 8 (22 + 8 days): Jan 55.00, Feb 20.00
    #   100.00 over Feb 9..Mar 10 (20 + 10 days): Feb 66.67, Mar 33.33
    # Jan 73.33 + 55.00 = 128.33; Feb 26.67 + 66.67 + 20.00 + 66.67 = 180.01;
    # Mar 33.33 + 70.00 + 33.33 = 136.66.
    assert world.revenue(who, "2026-01", "2026-03") == {
        "2026-01": usd("0.00", "100.00", "100.00", "128.33"),
        "2026-02": usd("0.00", "175.00", "175.00", "180.01"),
        "2026-03": usd("0.00", "200.00", "200.00", "136.66"),
    }
    assert world.explain(who, "2026-02") == [
        (
            "1",
            "0.05",
            "0.05 USD per month / 1 months, part 1 of 1",
            "0.00",
            "metered usage (reported apart)",
        ),
        ("1", "100.00", "100.00 USD per month / 1 months, part 1 of 1", "100.00", ""),
    ]


def test_annual_plan_is_a_twelfth_every_month_and_renews_without_a_movement(
    world: World,
) -> None:
    """An annual plan is price/12 MRR each month, billed at renewal and recognised by day."""
    stripe = world.stripe
    product = stripe.post("/v1/products", "prod", name="Platform")["id"]
    yearly = stripe.post(
        "/v1/prices",
        "yearly",
        product=product,
        currency="usd",
        unit_amount=120_000,  # 1,200.00 a year
        **{"recurring[interval]": "year"},
    )["id"]
    clock = stripe.clock("clock", at(1, 10))
    customer = stripe.customer("y", clock)
    stripe.subscribe("sub", customer, yearly)  # Jan 10, 2026 -> Jan 10, 2027
    stripe.advance(clock, at(2, 15, 2027))  # renews on Jan 10, 2027
    world.pull()
    who = key_of(customer)

    months = [f"2026-{m:02d}" for m in range(1, 13)] + ["2027-01", "2027-02"]
    # 1,200.00 / 12 = 100.00 every month, before and after the renewal.
    twelfth = ("100.00", "1200.00", "0.00", "0.00")
    assert world.mrr(who, "2026-01", "2027-02") == dict.fromkeys(months, twelfth)
    # The only movement is the start: no change in any month, the renewal included.
    assert world.movements(who, "2026-01", "2027-02") == {
        "2026-01": {"new": Decimal("100.00"), "closing": Decimal("100.00")},
    }
    # Recognised: 1,200.00 over the 365 days Jan 10, 2026 .. Jan 9, 2027, by days in each month
    # (22, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 9): 120000 x days / 365 gives 7232.88,
    # 9205.48, 10191.78 (31 days), 9863.01 (30 days) and 2958.90; the floors add up to 119993
    # and the 7 cents left go to the largest remainders: Jan 2027 (.90), Jan 2026 (.88) and
    # five of the six 31-day months (.78; the tie goes to the earlier ones, so December keeps
    # 101.91). The renewal's first 22 days add 72.33 to January 2027: 29.59 + 72.33 = 101.92.
    recognised = {
        "2026-01": "72.33",
        "2026-02": "92.05",
        "2026-03": "101.92",
        "2026-04": "98.63",
        "2026-05": "101.92",
        "2026-06": "98.63",
        "2026-07": "101.92",
        "2026-08": "101.92",
        "2026-09": "98.63",
        "2026-10": "101.92",
        "2026-11": "98.63",
        "2026-12": "101.91",
        "2027-01": "101.92",
        "2027-02": "92.05",
    }
    billed = {"2026-01": "1200.00", "2027-01": "1200.00"}
    assert world.revenue(who, "2026-01", "2027-02") == {
        month: usd("0.00", billed.get(month, "0.00"), billed.get(month, "0.00"), part)
        for month, part in recognised.items()
    }
    assert sum(Decimal(recognised[m]) for m in months[:12]) + Decimal("29.59") == Decimal("1200.00")
    assert world.explain(who, "2026-12") == [
        ("1", "1200.00", "1200.00 USD per year / 12 months, part 12 of 12", "100.00", "")
    ]
    assert world.explain(who, "2027-01") == [
        ("1", "1200.00", "1200.00 USD per year / 12 months, part 1 of 12", "100.00", "")
    ]


def test_failed_renewal_recovered_after_a_card_update(world: World) -> None:
    """A declined renewal keeps MRR by default, churns under --past-due exclude, and is cash only when recovered."""
    stripe = world.stripe
    product = stripe.post("/v1/products", "prod", name="Platform")["id"]
    plan = stripe.monthly("plan", product, 15_000)  # 150.00 a month
    clock = stripe.clock("clock", at(1, 28))
    customer = stripe.customer("d", clock)
    sub = stripe.subscribe("sub", customer, plan)  # Jan 28 -> Feb 27
    stripe.advance(clock, at(2, 28))  # Feb 27 renewal paid
    stripe.set_card("card-fails", customer, "pm_card_chargeCustomerFail")
    stripe.advance(clock, at(3, 30))  # Mar 29 renewal declined; retry planned for Apr 1
    assert stripe.get(f"/v1/subscriptions/{sub['id']}")["status"] == "past_due"
    stripe.set_card("card-fixed", customer, "pm_card_visa")
    stripe.advance(clock, at(5, 5))  # Apr 1 retry pays; Apr 28 renewal paid
    assert stripe.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"
    world.pull()
    who = key_of(customer)

    # Default policy (past_due = include): the subscription counts while Stripe retries, so
    # MRR stays 150.00 and the recovery changes nothing.
    plan_row = ("150.00", "1800.00", "0.00", "0.00")
    assert world.mrr(who, "2026-01", "2026-05") == {f"2026-0{m}": plan_row for m in range(1, 6)}
    assert world.movements(who, "2026-01", "2026-05") == {
        "2026-01": {"new": Decimal("150.00"), "closing": Decimal("150.00")},
    }
    # past_due = exclude: past due from the declined charge on Mar 29 to the payment on Apr 1,
    # so March closes at 0 (churn) and April brings the customer back (reactivation).
    assert "2026-03" not in world.mrr(who, "2026-01", "2026-05", "--past-due", "exclude")
    assert world.movements(who, "2026-01", "2026-05", "--past-due", "exclude") == {
        "2026-01": {"new": Decimal("150.00"), "closing": Decimal("150.00")},
        "2026-03": {"opening": Decimal("150.00"), "churn": Decimal("150.00")},
        "2026-04": {"reactivation": Decimal("150.00"), "closing": Decimal("150.00")},
    }
    # Billings follow the invoices (Jan 28, Feb 27, Mar 29, Apr 28); cash follows the money:
    # nothing in March (the charge was declined), 150.00 recovered on Apr 1 plus the Apr 28
    # renewal in April. Recognised, by day over 30-day periods:
    #   Jan 28..Feb 26 (4 + 26 days): Jan 20.00, Feb 130.00
    #   Feb 27..Mar 28 (2 + 28 days): Feb 10.00, Mar 140.00
    #   Mar 29..Apr 27 (3 + 27 days): Mar 15.00, Apr 135.00
    #   Apr 28..May 27 (3 + 27 days): Apr 15.00, May 135.00
    assert world.revenue(who, "2026-01", "2026-05") == {
        "2026-01": usd("0.00", "150.00", "150.00", "20.00"),
        "2026-02": usd("0.00", "150.00", "150.00", "140.00"),
        "2026-03": usd("0.00", "150.00", "0.00", "155.00"),
        "2026-04": usd("0.00", "150.00", "300.00", "150.00"),
        "2026-05": usd("0.00", "0.00", "0.00", "135.00"),
    }


def test_refund_lowers_cash_in_its_month_and_leaves_revenue_alone(world: World) -> None:
    """Refunds made in March take cash down in March; billings, recognised revenue and MRR stay."""
    stripe = world.stripe
    product = stripe.post("/v1/products", "prod", name="Platform")["id"]
    plan = stripe.monthly("plan", product, 10_000)  # 100.00 a month
    clock = stripe.clock("clock", at(1, 10))
    customer = stripe.customer("r", clock)
    stripe.subscribe("sub", customer, plan)
    stripe.advance(clock, at(2, 20))  # Feb 9 renewal, paid
    stripe.advance(clock, at(3, 15))  # Mar 11 renewal, paid
    world.pull()
    who = key_of(customer)
    # Recognised for a 100.00 plan from Jan 10 (30-day periods, by day):
    #   Jan 10..Feb 8: Jan 73.33, Feb 26.67; Feb 9..Mar 10: Feb 66.67, Mar 33.33;
    #   Mar 11..Apr 9: Mar 70.00, Apr 30.00 -> Jan 73.33, Feb 93.34, Mar 103.33, Apr 30.00.
    before = world.revenue(who, "2026-01", "2026-04")
    assert before == {
        "2026-01": usd("0.00", "100.00", "100.00", "73.33"),
        "2026-02": usd("0.00", "100.00", "100.00", "93.34"),
        "2026-03": usd("0.00", "100.00", "100.00", "103.33"),
        "2026-04": usd("0.00", "0.00", "0.00", "30.00"),
    }

    charges = {c["created"]: c["id"] for c in stripe.get("/v1/charges", customer=customer)["data"]}
    # On Mar 15 the January payment is refunded in full and 25.00 of February's in part.
    stripe.post("/v1/refunds", "refund-jan", charge=charges[at(1, 10)])
    stripe.post("/v1/refunds", "refund-feb", charge=charges[at(2, 9)], amount=2_500)
    world.pull()

    # Cash in March: 100.00 received - 100.00 - 25.00 refunded = -25.00; January and February
    # keep the money received then; billings and recognised revenue do not move.
    after = world.revenue(who, "2026-01", "2026-04")
    assert after == {
        **before,
        "2026-03": usd("0.00", "100.00", "-25.00", "103.33"),
    }
    assert world.mrr(who, "2026-03", "2026-03") == {
        "2026-03": ("100.00", "1200.00", "0.00", "0.00")
    }


def test_disputes_withdraw_cash_and_a_won_one_gives_it_back(world: World) -> None:
    """A disputed payment leaves cash when the bank takes it; winning returns it, losing does not."""
    stripe = world.stripe
    product = stripe.post("/v1/products", "prod", name="Platform")["id"]
    plan = stripe.monthly("plan", product, 10_000)  # 100.00 a month
    clock = stripe.clock("clock", at(1, 10))
    customers = {}
    for name in ("closed", "lost", "won"):
        # Stripe's test card whose payments are disputed as fraudulent at once.
        customers[name] = stripe.customer(name, clock, "pm_card_createDispute")
        stripe.subscribe(f"sub-{name}", customers[name], plan)
        stripe.set_card(f"card-{name}", customers[name], "pm_card_visa")
    stripe.advance(clock, at(2, 15))  # Feb 9 renewals, paid with the new cards
    disputes = {}
    for name, customer in customers.items():
        (charge,) = [
            c for c in stripe.get("/v1/charges", customer=customer)["data"] if c["disputed"]
        ]
        (dispute,) = stripe.get("/v1/disputes", charge=charge["id"])["data"]
        disputes[name] = dispute["id"]
    # On Feb 15: accept one dispute, answer the others with Stripe's test evidence.
    closed = stripe.post(f"/v1/disputes/{disputes['closed']}/close", "close")
    lost = stripe.post(
        f"/v1/disputes/{disputes['lost']}",
        "lose",
        **{"evidence[uncategorized_text]": "losing_evidence"},
    )
    won = stripe.post(
        f"/v1/disputes/{disputes['won']}",
        "win",
        **{"evidence[uncategorized_text]": "winning_evidence"},
    )
    assert (closed["status"], lost["status"], won["status"]) == ("lost", "lost", "won")
    assert [t["reporting_category"] for t in won["balance_transactions"]] == [
        "dispute",
        "dispute_reversal",
    ]
    stripe.advance(clock, at(3, 1))
    world.pull()

    # Each customer paid 100.00 on Jan 10, withdrawn the same day by the dispute: January cash
    # 0.00. February: the Feb 9 renewal brings 100.00, and the won dispute returns the 100.00
    # on Feb 15. Billings and recognised revenue are those of the 100.00 plan from Jan 10
    # (Jan 73.33, Feb 26.67 + 66.67 = 93.34); a dispute is not a credit note.
    for name, cash_in_february in (("closed", "100.00"), ("lost", "100.00"), ("won", "200.00")):
        who = key_of(customers[name])
        assert world.revenue(who, "2026-01", "2026-02") == {
            "2026-01": usd("0.00", "100.00", "0.00", "73.33"),
            "2026-02": usd("0.00", "100.00", cash_in_february, "93.34"),
        }, name
        # The subscription goes on: a dispute changes cash, not MRR.
        assert world.mrr(who, "2026-02", "2026-02") == {
            "2026-02": ("100.00", "1200.00", "0.00", "0.00")
        }
