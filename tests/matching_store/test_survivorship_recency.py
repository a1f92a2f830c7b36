"""Survivorship's "most recently updated" means the record whose company details changed last.

A customer with two Salesforce Accounts that show different phones takes the phone of the one
edited last. The hub's own writes to an Account (its open balance, MRR, ids) move the Account's
``LastModifiedDate`` too; if that counted, each such write would move the golden phone to the
other Account, the next plan would send it to Stripe and QuickBooks, and the next write back
would move it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet
from ledgerlink.matching.persist import Matcher, run_matching
from ledgerlink.store import Store
from ledgerlink.store.models import Customer

from .conftest import NOW, salesforce_account

FIRST = "001Hs00000000AAAAA"
SECOND = "001Hs00000000BBBAA"
FIRST_PHONE = "+49 30 5550 1234"
SECOND_PHONE = "+49 30 5550 9876"


def _account(record_id: str, phone: str, modified: str, **fields: Any) -> Record:
    """A Horizon Farms AG Account: both share name, site and address, not their phone."""
    return salesforce_account(
        record_id,
        "Horizon Farms AG",
        Phone=phone,
        Website="horizonfarms.de",
        BillingStreet="Feldweg 3",
        BillingCity="Berlin",
        BillingPostalCode="10115",
        BillingCountry="Germany",
        LastModifiedDate=modified,
        SystemModstamp=modified,
        **fields,
    )


def _golden(store: Store) -> tuple[str, str]:
    """The single golden customer's phone and the record it came from."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(Customer.fields, Customer.lineage)).all()  # type: ignore[call-overload]
    assert len(rows) == 1, rows
    fields, lineage = rows[0]
    return str(fields["phone"]), str(lineage["phone"])


Run = Callable[[Store, MappingSet, datetime], None]


def _fresh(store: Store, mappings: MappingSet, at: datetime) -> None:
    run_matching(store.engine, mappings, now=at)


def _kept() -> Run:
    matcher: list[Matcher] = []

    def run(store: Store, mappings: MappingSet, at: datetime) -> None:
        if not matcher:
            matcher.append(Matcher(store.engine, mappings))
        matcher[0].run(now=at)

    return run


@pytest.mark.parametrize("kind", ["fresh", "kept"])
def test_a_write_of_other_fields_does_not_move_the_golden_phone(
    store: Store, mappings: MappingSet, kind: str
) -> None:
    """Balances written to the other Account leave the phone; an edit of its phone moves it."""
    run = _fresh if kind == "fresh" else _kept()
    store.land(
        "salesforce",
        [
            _account(FIRST, FIRST_PHONE, "2026-02-02T10:00:00.000+0000"),
            _account(SECOND, SECOND_PHONE, "2026-02-01T10:00:00.000+0000"),
        ],
        now=NOW,
    )
    run(store, mappings, NOW)
    phone, source = _golden(store)
    assert source == f"salesforce:Account:{FIRST}"  # edited last

    # The hub writes the open balance to the second Account: modified later, same details.
    later = NOW + timedelta(hours=1)
    store.land(
        "salesforce",
        [
            _account(
                SECOND,
                SECOND_PHONE,
                "2026-03-01T12:30:00.000+0000",
                Open_Balance__c=120.5,
            )
        ],
        now=later,
    )
    run(store, mappings, later)
    assert _golden(store) == (phone, source)

    # Someone types a new phone into the second Account: now it is the one edited last.
    edited = later + timedelta(hours=1)
    store.land(
        "salesforce",
        [
            _account(
                SECOND,
                "+49 30 5550 7777",
                "2026-03-01T13:30:00.000+0000",
                Open_Balance__c=120.5,
            )
        ],
        now=edited,
    )
    run(store, mappings, edited)
    new_phone, new_source = _golden(store)
    assert new_source == f"salesforce:Account:{SECOND}"
    assert (phone, new_phone) == ("+493055501234", "+493055507777")


def test_a_write_of_other_fields_is_not_matched_again(store: Store, mappings: MappingSet) -> None:
    """The echo of a write of other fields (an open balance: only the modification time of the
    party moves) is not matched again by a kept matcher; an edit of its details is."""
    matcher = Matcher(store.engine, mappings)
    store.land(
        "salesforce", [_account(FIRST, FIRST_PHONE, "2026-02-02T10:00:00.000+0000")], now=NOW
    )
    matcher.run(now=NOW)
    later = NOW + timedelta(hours=1)
    balance = _account(FIRST, FIRST_PHONE, "2026-03-01T12:30:00.000+0000", Open_Balance__c=9.5)
    store.land("salesforce", [balance], now=later)
    echo = matcher.run(now=later)
    assert (echo.changed, echo.rows_written) == (0, 0)
    edited = later + timedelta(hours=1)
    phone = _account(FIRST, SECOND_PHONE, "2026-03-01T13:30:00.000+0000", Open_Balance__c=9.5)
    store.land("salesforce", [phone], now=edited)
    again = matcher.run(now=edited)
    assert again.changed == 1
    assert _golden(store)[0] == "+493055509876"
