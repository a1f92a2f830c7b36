"""Canonical parties to matching records: cross-references, addresses, Salesforce Ids."""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerlink.domain.entities import Address, AddressKind, Party, SourceRef, TaxId
from ledgerlink.matching import PartyRef
from ledgerlink.matching.adapt import SalesforceIdResolver, party_record


def _party(system: str, obj: str, record_id: str, **fields: object) -> Party:
    return Party(source=SourceRef(system=system, object=obj, id=record_id), name="Acme", **fields)  # type: ignore[arg-type]


def test_stripe_metadata_names_the_salesforce_account() -> None:
    """A Salesforce Account Id in Stripe metadata becomes a cross-reference to that Account."""
    party = _party("stripe", "customers", "cus_1", metadata={"salesforce_account_id": "001A"})
    assert party_record(party).xrefs == (PartyRef("salesforce", "Account", "001A"),)


def test_salesforce_account_names_its_stripe_and_quickbooks_records() -> None:
    """The Account's Stripe and QuickBooks id fields become cross-references."""
    party = _party(
        "salesforce",
        "Account",
        "001A",
        metadata={"stripe_customer_id": "cus_1", "quickbooks_customer_id": "42", "type": "x"},
    )
    assert party_record(party).xrefs == (
        PartyRef("quickbooks", "Customer", "42"),
        PartyRef("stripe", "customers", "cus_1"),
    )


def test_blank_and_self_references_are_dropped() -> None:
    """Blank metadata values and references to the record itself are no cross-reference."""
    party = _party("stripe", "customers", "cus_1", metadata={"salesforce_account_id": "  "})
    record = party_record(party, extra_xrefs=[PartyRef("stripe", "customers", "cus_1")])
    assert record.xrefs == ()


def test_fifteen_character_salesforce_id_resolves_to_the_landed_form() -> None:
    """A 15-character Id copied into Stripe points at the 18-character Account that landed."""
    resolve = SalesforceIdResolver(["001Hs00000ACME1AAA"])
    party = _party(
        "stripe", "customers", "c", metadata={"salesforce_account_id": "001Hs00000ACME1"}
    )
    assert party_record(party, resolve=resolve).xrefs == (
        PartyRef("salesforce", "Account", "001Hs00000ACME1AAA"),
    )


def test_a_kept_resolver_learns_landed_ids_and_forgets_gone_ones() -> None:
    """A kept matcher keeps its resolver between runs: an Account landed later is known from
    then on, a form landed first keeps its place, and a deleted Account is forgotten."""
    resolve = SalesforceIdResolver(["001Hs00000ACME1AAA"])
    resolve.add(["001Hs00000BOLT1AAA", "001Hs00000ACME1"])
    assert resolve(PartyRef("salesforce", "Account", "001Hs00000BOLT1")).id == "001Hs00000BOLT1AAA"
    assert resolve(PartyRef("salesforce", "Account", "001Hs00000ACME1")).id == "001Hs00000ACME1AAA"
    resolve.forget(["001Hs00000BOLT1AAA", "001Hs00000ZZZZ1AAA"])
    assert resolve(PartyRef("salesforce", "Account", "001Hs00000BOLT1")).id == "001Hs00000BOLT1"
    assert resolve(PartyRef("salesforce", "Account", "001Hs00000ACME1")).id == "001Hs00000ACME1AAA"


def test_billing_address_and_first_tax_id_are_used() -> None:
    """The billing address wins over shipping, its lines joined; the first tax id counts."""
    party = _party(
        "quickbooks",
        "Customer",
        "7",
        addresses=(
            Address(kind=AddressKind.SHIPPING, line1="1 Dock Rd", city="Leeds", country="GB"),
            Address(kind=AddressKind.BILLING, line1="5 High St", line2="Suite 2", city="York"),
        ),
        tax_ids=(TaxId(type="gb_vat", value="GB123456789"), TaxId(type="x", value="9")),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    record = party_record(party)
    assert (record.street, record.city, record.country) == ("5 High St, Suite 2", "York", None)
    assert record.tax_id == "GB123456789"
    assert record.updated_at == datetime(2026, 1, 1, tzinfo=UTC)
