"""Tests of survivorship: source-of-truth order per field, recency, whole addresses, lineage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledgerlink.matching import SurvivorshipRules, build_golden

from .conftest import PartyMaker, ref


def test_each_field_comes_from_its_source_of_truth_with_lineage(party: PartyMaker) -> None:
    """The name follows Salesforce, the e-mail Stripe, the tax id QuickBooks, each with lineage."""
    records = [
        party("sf:1", name="Acme Inc", phones="(415) 555-0100", country="United States"),
        party("st:1", name="ACME INC.", emails="billing@acme.com", country="US"),
        party("qb:1", name="Acme", emails="jane@acme.com", tax_id="12-3456789"),
    ]
    rules = SurvivorshipRules(
        order={"email": ("stripe", "quickbooks"), "tax_id": ("quickbooks",)},
        default=("salesforce", "stripe", "quickbooks"),
    )
    golden = build_golden("cus_1", records, rules)
    assert golden.values["name"] == "Acme Inc"
    assert golden.values["email"] == "billing@acme.com"
    assert golden.values["tax_id"] == "12-3456789"
    assert golden.values["phone"] == "+14155550100"
    assert golden.values["country"] == "US"
    assert golden.lineage == {
        "name": ref("sf:1"),
        "email": ref("st:1"),
        "tax_id": ref("qb:1"),
        "phone": ref("sf:1"),
        "country": ref("sf:1"),
    }
    assert golden.members == (ref("qb:1"), ref("sf:1"), ref("st:1"))


def test_empty_values_fall_through_and_recency_breaks_ties(party: PartyMaker) -> None:
    """A blank value never wins; among records of one system the most recent one does."""
    old = datetime(2025, 1, 1, tzinfo=UTC)
    new = datetime(2026, 6, 1, tzinfo=UTC)
    records = [
        party("sf:1", name="  ", updated_at=new),
        party("sf:2", name="Acme Old Name", updated_at=old),
        party("sf:3", name="Acme New Name", updated_at=new),
        party("st:1", name="Acme Stripe"),
    ]
    golden = build_golden("cus_1", records)
    assert golden.values["name"] == "Acme New Name"
    assert golden.lineage["name"] == ref("sf:3")
    assert golden.values["website"] is None
    assert "website" not in golden.lineage


def test_address_is_taken_whole_from_one_record(party: PartyMaker) -> None:
    """Street, city and postal code come together from the first record that has an address."""
    records = [
        party("sf:1", name="Acme", city="Berlin"),
        party("qb:1", street="Hauptstraße 5", city="München", postal_code="80331"),
    ]
    golden = build_golden("cus_1", records, SurvivorshipRules(order={"address": ("quickbooks",)}))
    assert (golden.values["street"], golden.values["city"], golden.values["postal_code"]) == (
        "Hauptstraße 5",
        "München",
        "80331",
    )
    assert {golden.lineage[f] for f in ("street", "city", "postal_code")} == {ref("qb:1")}


def test_a_golden_customer_needs_records() -> None:
    """Building a golden customer from no records is an error."""
    with pytest.raises(ValueError, match="at least one"):
        build_golden("cus_1", [])
