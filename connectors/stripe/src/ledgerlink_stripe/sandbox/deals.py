"""One-time prices for the sandbox account: what an accepted quote's services bill with.

The generated catalog holds monthly prices only. :func:`seed_one_time_prices` adds an
"Onboarding" product with one-time prices (lookup keys ``onboarding_usd``, ``onboarding_eur``,
``onboarding_gbp``), which ``mappings/products.yaml`` maps to Salesforce product code ``ONB``,
so a quote for onboarding becomes a one-off Stripe invoice.
"""

from __future__ import annotations

from typing import Any

from ledgerlink_stripe.sandbox.billing import Billing

__all__ = ["ONE_TIME_PRICES", "seed_one_time_prices"]

ONE_TIME_PRICES: dict[str, int] = {"usd": 250_000, "eur": 230_000, "gbp": 198_000}
"""Onboarding's unit amount per currency, in minor units."""


def seed_one_time_prices(billing: Billing) -> dict[str, dict[str, Any]]:
    """Create the Onboarding product and its one-time prices; return the prices by lookup key."""
    product = billing.create_product({"name": "Onboarding", "metadata": {"kind": "services"}})
    return {
        f"onboarding_{currency}": billing.create_price(
            {
                "product": product["id"],
                "currency": currency,
                "unit_amount": amount,
                "lookup_key": f"onboarding_{currency}",
            }
        )
        for currency, amount in ONE_TIME_PRICES.items()
    }
