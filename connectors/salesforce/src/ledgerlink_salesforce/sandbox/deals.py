"""Accepted quotes for the sandbox org: deals the hub bills in Stripe.

The generated quotes are history (their status is random and they last changed long ago);
:func:`seed_accepted_quotes` adds, on existing accounts, a few quotes accepted *now*, each with
its Closed Won opportunity and lines, so that a cycle has deals to bill:

* a subscription quote: 3 x Pro (``PRO-M``) and 5 x Seat add-on (``SEAT``), monthly prices
  that ``mappings/products.yaml`` maps to Stripe lookup keys ``pro_usd`` and ``extra_seat_usd``;
* a one-time quote: 1 x Onboarding (``ONB``), billed on an invoice (lookup key
  ``onboarding_usd``, a one-time price the Stripe sandbox adds with its own
  ``seed_one_time_prices``);
* a quote for Enterprise yearly (``ENT-Y``), which no Stripe price bills: the hub holds it
  for review.

Customer seeding is untouched: the quotes hang on accounts the org already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ledgerlink_salesforce.sandbox.data import Org, salesforce_id

__all__ = ["SeededDeal", "seed_accepted_quotes"]

_PRICEBOOK_ID = "01sHs0000000001AAA"
# (product index in the generated catalog, unit price in USD): the price the Stripe sandbox
# bills, as a sales team quoting from the billing catalog would.
_PRO, _ENTERPRISE, _SEAT, _ONBOARDING = (1, 49.0), (3, 12000.0), (4, 12.0), (6, 2500.0)
_DEALS: tuple[tuple[str, tuple[tuple[tuple[int, float], int], ...]], ...] = (
    ("Pro for the team", ((_PRO, 3), (_SEAT, 5))),
    ("Onboarding package", ((_ONBOARDING, 1),)),
    ("Enterprise yearly", ((_ENTERPRISE, 1),)),
)


@dataclass(frozen=True)
class SeededDeal:
    """A seeded deal: its account, opportunity, quote and line ids."""

    name: str
    account_id: str
    opportunity_id: str
    quote_id: str
    line_ids: tuple[str, ...]


def seed_accepted_quotes(
    org: Org, *, first_account: int = 1, at: datetime | None = None
) -> list[SeededDeal]:
    """Add the accepted quotes above on accounts ``first_account``, ``first_account + 1``, ...

    Args:
        org: the sandbox org.
        first_account: index of the generated account that gets the first quote.
        at: the time the deals were won and accepted (default: now).

    Returns:
        The deals added, in the order above.

    Raises:
        KeyError: the org has fewer accounts than deals from ``first_account`` on.
    """
    moment = at or org.now()
    deals: list[SeededDeal] = []
    for offset, (name, lines) in enumerate(_DEALS):
        account_id = salesforce_id("001", first_account + offset)
        account = org.tables["Account"].get(account_id)
        if account is None:
            raise KeyError(account_id)
        total = sum(price * quantity for (_index, price), quantity in lines)
        opportunity = org.insert(
            "Opportunity",
            {
                "AccountId": account["Id"],
                "Name": name,
                "StageName": "Closed Won",
                "CloseDate": moment.date().isoformat(),
                "Amount": total,
                "CurrencyIsoCode": "USD",
                "IsWon": True,
                "IsClosed": True,
                "Pricebook2Id": _PRICEBOOK_ID,
                "Type": "New Business",
            },
            at=moment,
        )
        quote = org.insert(
            "Quote",
            {
                "OpportunityId": opportunity["Id"],
                "AccountId": account["Id"],
                "Name": name,
                "Status": "Accepted",
                "ExpirationDate": (moment + timedelta(days=30)).date().isoformat(),
                "GrandTotal": total,
                "CurrencyIsoCode": "USD",
                "Pricebook2Id": _PRICEBOOK_ID,
            },
            at=moment,
        )
        line_ids = [
            org.insert("QuoteLineItem", _line(quote["Id"], index, price, quantity), at=moment)["Id"]
            for (index, price), quantity in lines
        ]
        deals.append(
            SeededDeal(name, account["Id"], opportunity["Id"], quote["Id"], tuple(line_ids))
        )
    return deals


def _line(quote_id: str, product: int, price: float, quantity: int) -> dict[str, Any]:
    return {
        "QuoteId": quote_id,
        "PricebookEntryId": salesforce_id("01u", product),
        "Product2Id": salesforce_id("01t", product),
        "Quantity": float(quantity),
        "UnitPrice": price,
        "Discount": None,
        "TotalPrice": round(price * quantity, 2),
    }
