"""Which QuickBooks customer a document goes to when the customer has several currencies.

QuickBooks keeps one currency per customer and refuses a document in another ("the transaction
is in USD but customer ... is in EUR"). The ledger plans again right after a push, when a
customer the hub has just created is linked but not pulled yet: its currency is not known
then, and must not be taken for the home currency.
"""

from __future__ import annotations

import pytest

from ledgerlink.mapping import load_mappings
from ledgerlink.sync._ledger_world import CUSTOMER_ENTITY, LedgerWorld, currency_customer
from ledgerlink.sync.ledger import LedgerOptions, _Planner, _Wait

GOLDEN = "cust-1"
STRIPE = "cus_north"
HOME = "99"  # landed, without CurrencyRef: the home currency (USD)


def _planner(linked: list[str], *, made_in_eur: str | None = None) -> _Planner:
    world = LedgerWorld()
    world.customer_of[("stripe", "customers", STRIPE)] = GOLDEN
    world.quickbooks_customers[GOLDEN] = linked
    world.customer_name[HOME] = "Northwind Traders"
    if made_in_eur is not None:  # the ledger's own "Northwind Traders (EUR)", sent
        world.created[(CUSTOMER_ENTITY, currency_customer("EUR", GOLDEN), "Customer")] = made_in_eur
        world.made_in[made_in_eur] = "EUR"  # as the refresh of that done row notes it
    return _Planner(world, load_mappings(), LedgerOptions(home_currency="USD"))


def test_a_customer_not_landed_is_not_taken_for_the_home_currency() -> None:
    """A USD document goes to the landed USD customer, not to one just created and unknown."""
    planner = _planner(["100", HOME])  # "100" sorts first (ids compare as text)
    assert planner.customer(STRIPE, "usd") == HOME


def test_a_document_in_another_currency_waits_while_a_linked_customer_is_unknown() -> None:
    """The unknown customer may be the EUR one: no second EUR customer is made meanwhile."""
    planner = _planner(["100", HOME])
    with pytest.raises(_Wait, match="not landed yet"):
        planner.customer(STRIPE, "eur")
    assert planner._customer_creates == set()


def test_the_ledgers_own_currency_customer_is_known_before_it_lands() -> None:
    """The customer in EUR the ledger created takes EUR documents, and only those."""
    planner = _planner(["101", HOME], made_in_eur="101")
    assert planner.customer(STRIPE, "eur") == "101"
    assert planner.customer(STRIPE, "usd") == HOME
