"""From canonical parties to the matching engine's input: ``Party`` -> ``PartyRecord``.

The mapping layer turns a landed Salesforce Account, Stripe customer or QuickBooks Customer
into a :class:`~ledgerlink.domain.entities.Party`; the engine wants a flat
:class:`~ledgerlink.matching.party.PartyRecord`. This module owns that step, and the
cross-references it carries:

* metadata keys that name a record of another system (:data:`DEFAULT_XREF_KEYS`): Stripe
  ``metadata.salesforce_account_id``, the Salesforce Account's ``Stripe_Customer_Id__c`` and
  ``QuickBooks_Customer_Id__c`` (mapped to ``metadata.stripe_customer_id`` and
  ``metadata.quickbooks_customer_id``);
* links the hub made itself (a QuickBooks customer it created for a customer), passed in by the
  caller as ``extra_xrefs``.

Salesforce Ids come in a 15-character case-sensitive and an 18-character case-safe form; an
id copied into another system may be either, so :class:`SalesforceIdResolver` maps both to the
form the Salesforce connector landed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ledgerlink.domain.entities import Address, AddressKind, Party
from ledgerlink.matching.party import PartyRecord, PartyRef

__all__ = [
    "DEFAULT_XREF_KEYS",
    "SalesforceIdResolver",
    "XrefKey",
    "party_record",
]

_SALESFORCE_ID_LENGTHS = (15, 18)


@dataclass(frozen=True, slots=True)
class XrefKey:
    """A metadata key whose value is the id of a record in another system.

    Attributes:
        system: the system the id belongs to.
        object: the object of that system (as landed in ``source_record``).
    """

    system: str
    object: str


DEFAULT_XREF_KEYS: Mapping[str, XrefKey] = {
    "salesforce_account_id": XrefKey("salesforce", "Account"),
    "stripe_customer_id": XrefKey("stripe", "customers"),
    "quickbooks_customer_id": XrefKey("quickbooks", "Customer"),
}
"""Metadata keys (after mapping) that hold the id of a party in another system."""


class SalesforceIdResolver:
    """Map 15- and 18-character Salesforce Ids to the form that was landed.

    Args:
        landed: the ids of Salesforce records present in the store (usually 18 characters).
    """

    def __init__(self, landed: Iterable[str]) -> None:
        self._by_prefix: dict[str, str] = {}
        for record_id in landed:
            if len(record_id) in _SALESFORCE_ID_LENGTHS:
                self._by_prefix[record_id[:15]] = record_id

    def add(self, landed: Iterable[str]) -> None:
        """Know the ids of records landed since; an id known already keeps its form."""
        for record_id in landed:
            if len(record_id) in _SALESFORCE_ID_LENGTHS:
                self._by_prefix.setdefault(record_id[:15], record_id)

    def forget(self, gone: Iterable[str]) -> None:
        """Forget the ids of records no longer landed."""
        for record_id in gone:
            if self._by_prefix.get(record_id[:15]) == record_id:
                del self._by_prefix[record_id[:15]]

    def __call__(self, ref: PartyRef) -> PartyRef:
        """Return ``ref`` with its Salesforce Id in the landed form (other refs unchanged)."""
        if ref.system != "salesforce" or len(ref.id) not in _SALESFORCE_ID_LENGTHS:
            return ref
        landed = self._by_prefix.get(ref.id[:15])
        return (
            ref if landed is None or landed == ref.id else PartyRef(ref.system, ref.object, landed)
        )


def _address(party: Party) -> Address | None:
    for address in party.addresses:
        if address.kind is AddressKind.BILLING and _has_content(address):
            return address
    return next((a for a in party.addresses if _has_content(a)), None)


def _has_content(address: Address) -> bool:
    return any(
        (
            address.line1,
            address.line2,
            address.city,
            address.region,
            address.postal_code,
            address.country,
        )
    )


def _street(address: Address) -> str | None:
    lines = [line.strip() for line in (address.line1, address.line2) if line and line.strip()]
    return ", ".join(lines) or None


def party_record(
    party: Party,
    *,
    xref_keys: Mapping[str, XrefKey] = DEFAULT_XREF_KEYS,
    extra_xrefs: Iterable[PartyRef] = (),
    resolve: Callable[[PartyRef], PartyRef] | None = None,
) -> PartyRecord:
    """Turn a canonical party into the matching engine's record.

    The billing address is used (else the first non-empty one), its two lines joined; the
    first tax id counts. Metadata values under ``xref_keys`` become cross-references, as do
    ``extra_xrefs``; a reference to the record itself is dropped.

    Args:
        party: the canonical party, as the mapping layer produced it.
        xref_keys: metadata key -> the system and object its value identifies.
        extra_xrefs: further cross-references (links the hub made).
        resolve: rewrites a cross-reference to the form that was landed (Salesforce Ids).

    Returns:
        The engine's record; ``updated_at`` falls back to ``created_at``.
    """
    ref = PartyRef(party.source.system, party.source.object, party.source.id)
    address = _address(party)
    xrefs: list[PartyRef] = []
    for key, target in sorted(xref_keys.items()):
        value = (party.metadata.get(key) or "").strip()
        if value and target.system != ref.system:
            xrefs.append(PartyRef(target.system, target.object, value))
    xrefs.extend(extra_xrefs)
    if resolve is not None:
        xrefs = [resolve(x) for x in xrefs]
    unique = tuple(sorted({x for x in xrefs if x != ref}))
    return PartyRecord(
        ref=ref,
        name=party.name,
        emails=tuple(party.emails),
        phones=tuple(party.phones),
        website=party.website,
        country=None if address is None else address.country,
        street=None if address is None else _street(address),
        city=None if address is None else address.city,
        region=None if address is None else address.region,
        postal_code=None if address is None else address.postal_code,
        tax_id=party.tax_ids[0].value if party.tax_ids else None,
        xrefs=unique,
        updated_at=party.updated_at or party.created_at,
    )
