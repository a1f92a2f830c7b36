"""Survivorship: one golden customer from the parties of a cluster, with lineage per field.

For each golden field the rules name the systems in source-of-truth order (for example the
name from Salesforce, the billing e-mail from Stripe, the tax id from QuickBooks). The value
comes from the first system in that order that has a non-empty value; among records of the
same rank the most recently updated wins; systems the rules do not list come last. The
address is taken as a whole from one record, never mixed line by line from several. Every
field records which source record gave it (lineage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ledgerlink.matching.normalize import normalize_country, normalize_phone
from ledgerlink.matching.party import PartyRecord, PartyRef

__all__ = ["GOLDEN_FIELDS", "GoldenCustomer", "SurvivorshipRules", "build_golden"]

GOLDEN_FIELDS: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "website",
    "country",
    "street",
    "city",
    "region",
    "postal_code",
    "tax_id",
)
_ADDRESS_FIELDS = ("street", "city", "region", "postal_code")
_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SurvivorshipRules:
    """Source-of-truth order per field.

    Attributes:
        order: golden field (or ``address`` for the address block) -> systems, first wins.
        default: order for fields the mapping does not name.
    """

    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default: tuple[str, ...] = ("salesforce", "quickbooks", "stripe")

    def systems_for(self, golden_field: str) -> tuple[str, ...]:
        """Return the source-of-truth order of a golden field."""
        key = "address" if golden_field in _ADDRESS_FIELDS else golden_field
        return self.order.get(key, self.default)


@dataclass(frozen=True, slots=True)
class GoldenCustomer:
    """The surviving view of one customer.

    Attributes:
        id: the customer (cluster) id.
        members: every linked source record.
        values: golden field -> value (None when no source has one).
        lineage: golden field -> the source record that gave its value.
    """

    id: str
    members: tuple[PartyRef, ...]
    values: Mapping[str, str | None]
    lineage: Mapping[str, PartyRef]


def _first(values: Sequence[str]) -> str | None:
    for value in values:
        if value and value.strip():
            return value.strip()
    return None


_EXTRACTORS: dict[str, Callable[[PartyRecord], str | None]] = {
    "name": lambda r: _first([r.name or ""]),
    "email": lambda r: _first(r.emails),
    "phone": lambda r: _first(
        [normalize_phone(p, r.country) or p for p in r.phones if p and p.strip()]
    ),
    "website": lambda r: _first([r.website or ""]),
    "country": lambda r: normalize_country(r.country),
    "street": lambda r: _first([r.street or ""]),
    "city": lambda r: _first([r.city or ""]),
    "region": lambda r: _first([r.region or ""]),
    "postal_code": lambda r: _first([r.postal_code or ""]),
    "tax_id": lambda r: _first([r.tax_id or ""]),
}


def _ranked(records: Sequence[PartyRecord], systems: tuple[str, ...]) -> list[PartyRecord]:
    def rank(record: PartyRecord) -> tuple[int, float, PartyRef]:
        position = systems.index(record.ref.system) if record.ref.system in systems else 99
        return (position, -(record.updated_at or _OLDEST).timestamp(), record.ref)

    return sorted(records, key=rank)


def build_golden(
    customer_id: str, records: Sequence[PartyRecord], rules: SurvivorshipRules | None = None
) -> GoldenCustomer:
    """Build the golden customer of a cluster.

    Args:
        customer_id: the cluster id.
        records: the cluster's source records.
        rules: survivorship rules (defaults: Salesforce, then QuickBooks, then Stripe).

    Returns:
        The golden customer with a value and its source for every field some record has.

    Raises:
        ValueError: when ``records`` is empty.
    """
    if not records:
        msg = "a golden customer needs at least one source record"
        raise ValueError(msg)
    rules = rules or SurvivorshipRules()
    values: dict[str, str | None] = dict.fromkeys(GOLDEN_FIELDS)
    lineage: dict[str, PartyRef] = {}
    address_source = next(
        (
            r
            for r in _ranked(records, rules.systems_for("street"))
            if any(_EXTRACTORS[f](r) for f in _ADDRESS_FIELDS)
        ),
        None,
    )
    for golden_field in GOLDEN_FIELDS:
        if golden_field in _ADDRESS_FIELDS:
            candidates = [] if address_source is None else [address_source]
        else:
            candidates = _ranked(records, rules.systems_for(golden_field))
        for record in candidates:
            value = _EXTRACTORS[golden_field](record)
            if value is not None:
                values[golden_field] = value
                lineage[golden_field] = record.ref
                break
    members = tuple(sorted(r.ref for r in records))
    return GoldenCustomer(customer_id, members, values, lineage)
