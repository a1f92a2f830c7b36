"""MRR movements from subscription histories rebuilt out of Stripe invoices, on the sandbox.

One test clock plays a year's first half: customer A starts on Basic, upgrades to Pro,
downgrades to two Basic seats, cancels at once, and comes back on Pro; customer B starts on
Pro and cancels at period end. The Stripe connector pulls subscriptions and invoices into the
store, and `ledgerlink report movements` must show each change in its month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ledgerlink.store import Store

from .conftest import StripeSandbox, report_rows

BASIC = 10_000  # 100.00 USD a month
PRO = 30_000  # 300.00 USD a month
AMOUNTS = ("opening", "new", "expansion", "contraction", "churn", "reactivation", "closing")


def at(month: int, day: int) -> int:
    """Unix seconds of a day in 2026 at noon UTC."""
    return int(datetime(2026, month, day, 12, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Scenario:
    """The config of the CLI on the store and the two customers' report keys."""

    config: Path
    a: str
    b: str


@pytest.fixture
def scenario(store: Store, report_config: Path, stripe_sandbox: StripeSandbox) -> Scenario:
    """Play the clock through upgrade, downgrade, both cancellations and a reactivation."""
    stripe = stripe_sandbox.stripe
    product = stripe.post("/v1/products", "prod", name="Seats")["id"]
    basic = stripe.monthly("basic", product, BASIC)
    pro = stripe.monthly("pro", product, PRO)
    clock = stripe.clock("clock", at(1, 5))
    customers = {}
    for name in ("a", "b"):
        customers[name] = stripe.post(
            "/v1/customers",
            f"cus-{name}",
            name=f"Customer {name.upper()}",
            test_clock=clock,
            payment_method="pm_card_visa",
            **{"invoice_settings[default_payment_method]": "pm_card_visa"},
        )["id"]
    sub_a = stripe.post(
        "/v1/subscriptions",
        "sub-a",
        customer=customers["a"],
        **{"items[0][price]": basic, "items[0][quantity]": 1},
    )
    item_a = sub_a["items"]["data"][0]["id"]
    sub_b = stripe.post(
        "/v1/subscriptions",
        "sub-b",
        customer=customers["b"],
        **{"items[0][price]": pro, "items[0][quantity]": 1},
    )
    stripe.advance(clock, at(2, 10))  # renewals on Feb 4
    stripe.post(
        f"/v1/subscriptions/{sub_a['id']}",
        "upgrade",
        proration_behavior="create_prorations",
        **{"items[0][id]": item_a, "items[0][price]": pro},
    )
    stripe.post(f"/v1/subscriptions/{sub_b['id']}", "cancel-b", cancel_at_period_end="true")
    stripe.advance(clock, at(3, 15))  # A renews on Mar 6 on Pro; B ends on Mar 6
    stripe.post(
        f"/v1/subscriptions/{sub_a['id']}",
        "downgrade",
        proration_behavior="create_prorations",
        **{"items[0][id]": item_a, "items[0][price]": basic, "items[0][quantity]": 2},
    )
    stripe.advance(clock, at(4, 10))  # A renews on Apr 5 with two Basic seats
    response = stripe.http.delete(f"/v1/subscriptions/{sub_a['id']}")
    assert response.status_code == 200, response.text
    stripe.advance(clock, at(5, 12))
    stripe.post(
        "/v1/subscriptions",
        "sub-a2",
        customer=customers["a"],
        **{"items[0][price]": pro, "items[0][quantity]": 1},
    )
    stripe.advance(clock, at(6, 20))  # the comeback renews on Jun 11
    stripe_sandbox.pull(store, ["subscriptions", "invoices"])
    return Scenario(
        report_config,
        f"stripe/customers/{customers['a']}",
        f"stripe/customers/{customers['b']}",
    )


def movements(scenario: Scenario, *args: str) -> list[dict[str, str]]:
    """Run `ledgerlink report movements` January to June 2026 as CSV and parse it."""
    return report_rows(scenario.config, "movements", "--from", "2026-01", "--to", "2026-06", *args)


def changes(rows: list[dict[str, str]], customer: str) -> dict[str, dict[str, Decimal]]:
    """The customer's non-zero amounts per month."""
    return {
        row["month"]: {k: Decimal(row[k]) for k in AMOUNTS if Decimal(row[k])}
        for row in rows
        if row["customer"] == customer
    }


def test_each_lifecycle_change_shows_in_its_month(scenario: Scenario) -> None:
    """Upgrade, downgrade, immediate and period-end cancellation and a comeback land in their months."""
    rows = movements(scenario, "--by-customer")
    assert changes(rows, scenario.a) == {
        "2026-01": {"new": Decimal("100.00"), "closing": Decimal("100.00")},
        "2026-02": {
            "opening": Decimal("100.00"),
            "expansion": Decimal("200.00"),
            "closing": Decimal("300.00"),
        },
        "2026-03": {
            "opening": Decimal("300.00"),
            "contraction": Decimal("100.00"),
            "closing": Decimal("200.00"),
        },
        "2026-04": {"opening": Decimal("200.00"), "churn": Decimal("200.00")},
        "2026-05": {"reactivation": Decimal("300.00"), "closing": Decimal("300.00")},
    }
    # B asked to cancel in February and still paid for that period: churned when it ended.
    assert changes(rows, scenario.b) == {
        "2026-01": {"new": Decimal("300.00"), "closing": Decimal("300.00")},
        "2026-03": {"opening": Decimal("300.00"), "churn": Decimal("300.00")},
    }


def test_every_month_reconciles(scenario: Scenario) -> None:
    """Each month's totals satisfy opening + new + expansion - contraction - churn + reactivation = closing."""
    rows = movements(scenario)
    assert {row["month"] for row in rows} >= {f"2026-0{m}" for m in range(1, 7)}
    for row in rows:
        a = {k: Decimal(row[k]) for k in AMOUNTS}
        assert (
            a["opening"]
            + a["new"]
            + a["expansion"]
            - a["contraction"]
            - a["churn"]
            + a["reactivation"]
            == a["closing"]
        ), row
    usd = [row for row in rows if row["currency"] == "USD"]
    assert sum(Decimal(row["expansion"]) for row in usd) >= Decimal("200.00")
    assert sum(Decimal(row["contraction"]) for row in usd) >= Decimal("100.00")
    assert sum(Decimal(row["churn"]) for row in usd) >= Decimal("500.00")
    assert sum(Decimal(row["reactivation"]) for row in usd) >= Decimal("300.00")
