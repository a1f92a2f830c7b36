"""Which QuickBooks customer a document goes to when the customer has several currencies.

QuickBooks keeps one currency per customer and refuses a document in another ("the transaction
is in USD but customer ... is in EUR"). The ledger plans again right after a push, when a
customer the hub has just created is linked but not pulled yet: its currency is not known
then, and must not be taken for the home currency.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledgerlink.connector.protocol import WriteAction
from ledgerlink.mapping import load_mappings
from ledgerlink.sync._ledger_world import CUSTOMER_ENTITY, LedgerWorld, currency_customer
from ledgerlink.sync._packed import unpack
from ledgerlink.sync.cycle import quickbooks_customer_updates
from ledgerlink.sync.ledger import LedgerOptions, _Planner, _Wait
from ledgerlink.sync.plan import PlannedOp, PlanReport

GOLDEN = "cust-1"
STRIPE = "cus_north"
HOME = "99"  # landed, without CurrencyRef: the home currency (USD)


def _planner(
    linked: list[str],
    *,
    made_in_eur: str | None = None,
    sending: dict[str, dict[str, Any]] | None = None,
) -> _Planner:
    world = LedgerWorld()
    world.customer_of[("stripe", "customers", STRIPE)] = GOLDEN
    world.quickbooks_customers[GOLDEN] = linked
    world.customer_name[HOME] = "Northwind Traders"
    world.customer_fields[HOME] = {
        "PrimaryEmailAddr": {"Address": "ap@northwind.example"},
        "PrimaryPhone": {"FreeFormNumber": "+1 415 555 0100"},
        "WebAddr": {"URI": "northwind.example"},
    }
    if made_in_eur is not None:  # the ledger's own "Northwind Traders (EUR)", sent
        world.created[(CUSTOMER_ENTITY, currency_customer("EUR", GOLDEN), "Customer")] = made_in_eur
        world.made_in[made_in_eur] = "EUR"  # as the refresh of that done row notes it
    return _Planner(world, load_mappings(), LedgerOptions(home_currency="USD"), sending)


def _made(planner: _Planner) -> dict[str, Any]:
    """The payload of the one customer the plan makes."""
    (document,) = [d for d in planner.report.documents if d.kind == "customer"]
    return unpack(document.packed)


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


def test_a_currency_customer_is_made_with_the_company_fields_of_its_customer() -> None:
    """Northwind's first EUR invoice: its EUR customer copies the landed company fields (so
    that matching sees the same company) under a name of its own."""
    planner = _planner([HOME])
    with pytest.raises(_Wait, match="being created"):
        planner.customer(STRIPE, "eur")
    made = _made(planner)
    assert made["DisplayName"] == "Northwind Traders (EUR)"
    assert made["PrimaryEmailAddr"] == {"Address": "ap@northwind.example"}


def test_a_currency_customer_copies_what_this_pass_sends_its_customer() -> None:
    """In the pass that makes Northwind's EUR customer, the customer planner also sends its
    QuickBooks customer a new e-mail and phone (from Salesforce): the EUR customer is made
    with those, not the landed ones the update replaces (else the next pass updates it)."""
    update = PlannedOp(
        target="quickbooks",
        object="Customer",
        action=WriteAction.UPDATE,
        customer_id=GOLDEN,
        remote_id=HOME,
        payload={
            "DisplayName": "Northwind Traders Group",
            "PrimaryEmailAddr": {"Address": "billing@northwind.example"},
            "PrimaryPhone": {"FreeFormNumber": "+1 415 555 0199"},
        },
        changes=(),
        idempotency_key="k",
    )
    sending = quickbooks_customer_updates(PlanReport(ops=[update]))
    planner = _planner([HOME], sending=sending)
    with pytest.raises(_Wait, match="being created"):
        planner.customer(STRIPE, "eur")
    made = _made(planner)
    assert made["PrimaryEmailAddr"] == {"Address": "billing@northwind.example"}
    assert made["PrimaryPhone"] == {"FreeFormNumber": "+1 415 555 0199"}
    assert made["WebAddr"] == {"URI": "northwind.example"}  # not sent: as landed
    assert made["DisplayName"] == "Northwind Traders (EUR)"
