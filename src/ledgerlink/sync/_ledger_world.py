"""What the ledger planner reads from the store: landed Stripe and QuickBooks records, links
and the ledger's own outbox rows, loaded in one read transaction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledgerlink.store.models import CustomerLink, LinkStatus, Outbox, SourceRecord

__all__ = [
    "CUSTOMER_ENTITY",
    "DOCUMENT_ENTITY",
    "ITEM_ENTITY",
    "STRIPE_OBJECTS",
    "LedgerRow",
    "LedgerWorld",
    "currency_customer",
    "load_world",
    "stripe_note",
]

DOCUMENT_ENTITY = "ledger"
"""``entity_kind`` of a posted document's outbox rows; ``entity_id`` is the Stripe object id."""
ITEM_ENTITY = "ledger_item"
"""``entity_kind`` of QuickBooks item creations; ``entity_id`` is the item's ``Name``."""
CUSTOMER_ENTITY = "ledger_customer"
"""``entity_kind`` of a QuickBooks customer the ledger creates for a customer's other currency;
``entity_id`` is ``<currency>:<golden customer id>`` (see :func:`currency_customer`)."""
STRIPE_OBJECTS = (
    "invoices",
    "charges",
    "refunds",
    "credit_notes",
    "payouts",
    "balance_transactions",
)
PAYOUT_TIES = "payout_transactions"
"""Landed object (system ``stripe``) tying a payout to the balance transactions it paid out."""
_QB_DOCUMENTS = ("Invoice", "Payment", "RefundReceipt", "CreditMemo", "Deposit", "JournalEntry")
_CUSTOMER_FIELDS = ("CompanyName", "PrimaryEmailAddr", "PrimaryPhone", "WebAddr", "BillAddr")
"""What a customer the ledger makes in another currency copies from the customer's own, so that
matching sees the same company (a name alone would not vouch for it)."""
_NOTE = re.compile(r"\bstripe:([A-Za-z0-9_]+)")
_VOIDED = "Voided"
"""What QuickBooks puts before the ``PrivateNote`` of a voided document."""
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]


def currency_customer(currency: str, customer_id: str) -> str:
    """The ``entity_id`` of the QuickBooks customer in ``currency`` of golden ``customer_id``."""
    return f"{currency.upper()}:{customer_id}"


def stripe_note(stripe_id: str) -> str:
    """The ``PrivateNote`` a posted document carries, so QuickBooks itself shows its source."""
    return f"ledgerlink stripe:{stripe_id}"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """The newest outbox row of one (entity, QuickBooks object), and the id it got."""

    id: int
    action: str
    status: str
    payload: Mapping[str, Any]
    remote_id: str | None


@dataclass
class LedgerWorld:
    """Everything one ledger plan reads.

    ``in_quickbooks`` maps (QuickBooks object, Stripe id) to the id of a landed document that
    carries ``stripe:<id>`` in its ``PrivateNote``; ``voided`` holds those QuickBooks shows as
    voided (the note starts with "Voided"); ``landed_credit_memos`` keeps the landed credit
    memos' bodies (by Stripe id), which a void empties. ``quickbooks_customers`` lists the
    QuickBooks customers linked to each golden customer; ``customer_currency`` and
    ``customer_name`` are a landed QuickBooks customer's ``CurrencyRef`` and ``DisplayName``,
    ``customer_fields`` its company name, e-mail, phone, website and billing address.
    """

    stripe: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    changed_at: dict[str, datetime] = field(default_factory=dict)
    ties: dict[str, list[str]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    in_quickbooks: dict[tuple[str, str], str] = field(default_factory=dict)
    voided: set[tuple[str, str]] = field(default_factory=set)
    landed_credit_memos: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    customer_of: dict[tuple[str, str, str], str] = field(default_factory=dict)
    quickbooks_customer: dict[str, str] = field(default_factory=dict)
    quickbooks_customers: dict[str, list[str]] = field(default_factory=dict)
    customer_currency: dict[str, str] = field(default_factory=dict)
    customer_name: dict[str, str] = field(default_factory=dict)
    customer_fields: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], LedgerRow] = field(default_factory=dict)
    created: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def remote_id(self, kind: str, entity_id: str, obj: str) -> str | None:
        """The QuickBooks id of a document or item, from the outbox or the landed record."""
        return self.created.get((kind, entity_id, obj)) or self.in_quickbooks.get((obj, entity_id))


def _land_document(
    world: LedgerWorld, obj: str, remote_id: str, payload: Mapping[str, Any]
) -> None:
    """Note a landed QuickBooks document that names its Stripe source in ``PrivateNote``."""
    note = str(payload.get("PrivateNote") or "")
    found = _NOTE.search(note)
    if not found:
        return
    key = (obj, found.group(1))
    world.in_quickbooks.setdefault(key, remote_id)
    if note.startswith(_VOIDED):
        world.voided.add(key)
    if obj == "CreditMemo":
        world.landed_credit_memos[found.group(1)] = payload


def load_world(conn: Connection) -> LedgerWorld:
    """Read the landed records, links and ledger outbox rows the planner needs."""
    world = LedgerWorld()
    query = select(
        _SOURCE.c.system,
        _SOURCE.c.object,
        _SOURCE.c.external_id,
        _SOURCE.c.payload,
        _SOURCE.c.changed_at,
    ).where(
        _SOURCE.c.deleted_at.is_(None),
        ((_SOURCE.c.system == "stripe") & _SOURCE.c.object.in_([*STRIPE_OBJECTS, PAYOUT_TIES]))
        | (
            (_SOURCE.c.system == "quickbooks")
            & _SOURCE.c.object.in_(["Account", "Item", "Customer", *_QB_DOCUMENTS])
        ),
    )
    for row in conn.execute(query):
        payload: Mapping[str, Any] = row.payload or {}
        if row.system == "stripe" and row.object == PAYOUT_TIES:
            world.ties[row.external_id] = [str(t) for t in payload.get("balance_transactions", [])]
        elif row.system == "stripe":
            world.stripe.setdefault(row.object, {})[row.external_id] = payload
            world.changed_at[row.external_id] = row.changed_at
        elif row.object == "Account":
            world.accounts.setdefault(str(payload.get("Name", "")).strip().lower(), row.external_id)
        elif row.object == "Item":
            world.items.setdefault(str(payload.get("Name", "")).strip().lower(), row.external_id)
        elif row.object == "Customer":
            currency = (payload.get("CurrencyRef") or {}).get("value")
            if currency:
                world.customer_currency[row.external_id] = str(currency).upper()
            world.customer_name[row.external_id] = str(payload.get("DisplayName") or "")
            world.customer_fields[row.external_id] = {
                k: payload[k] for k in _CUSTOMER_FIELDS if payload.get(k)
            }
        else:
            _land_document(world, row.object, row.external_id, payload)
    for link in conn.execute(
        select(_LINK.c.system, _LINK.c.object, _LINK.c.external_id, _LINK.c.customer_id)
        .where(_LINK.c.status == LinkStatus.LINKED.value)
        .order_by(_LINK.c.id)
    ):
        world.customer_of[(link.system, link.object, link.external_id)] = link.customer_id
        if link.system == "quickbooks" and link.object == "Customer":
            world.quickbooks_customer.setdefault(link.customer_id, link.external_id)
            world.quickbooks_customers.setdefault(link.customer_id, []).append(link.external_id)
    for out in conn.execute(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.entity_kind,
            _OUTBOX.c.entity_id,
            _OUTBOX.c.object,
            _OUTBOX.c.action,
            _OUTBOX.c.status,
            _OUTBOX.c.payload,
            _OUTBOX.c.remote_id,
        )
        .where(
            _OUTBOX.c.target == "quickbooks",
            _OUTBOX.c.entity_kind.in_([DOCUMENT_ENTITY, ITEM_ENTITY, CUSTOMER_ENTITY]),
            _OUTBOX.c.status != "cancelled",
        )
        .order_by(_OUTBOX.c.id)
    ):
        key = (out.entity_kind, out.entity_id, out.object)
        world.rows[key] = LedgerRow(
            out.id, out.action, out.status, out.payload or {}, out.remote_id
        )
        if out.status == "done" and out.remote_id:
            world.created.setdefault(key, out.remote_id)
    return world
