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
    "DOCUMENT_ENTITY",
    "ITEM_ENTITY",
    "STRIPE_OBJECTS",
    "LedgerRow",
    "LedgerWorld",
    "load_world",
    "stripe_note",
]

DOCUMENT_ENTITY = "ledger"
"""``entity_kind`` of a posted document's outbox rows; ``entity_id`` is the Stripe object id."""
ITEM_ENTITY = "ledger_item"
"""``entity_kind`` of QuickBooks item creations; ``entity_id`` is the item's ``Name``."""
STRIPE_OBJECTS = ("invoices", "charges", "refunds", "payouts", "balance_transactions")
PAYOUT_TIES = "payout_transactions"
"""Landed object (system ``stripe``) tying a payout to the balance transactions it paid out."""
_QB_DOCUMENTS = ("Invoice", "Payment", "RefundReceipt", "CreditMemo", "Deposit", "JournalEntry")
_NOTE = re.compile(r"\bstripe:([A-Za-z0-9_]+)")
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]


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
    """Everything one ledger plan reads."""

    stripe: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    changed_at: dict[str, datetime] = field(default_factory=dict)
    ties: dict[str, list[str]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    in_quickbooks: dict[tuple[str, str], str] = field(default_factory=dict)
    customer_of: dict[tuple[str, str, str], str] = field(default_factory=dict)
    quickbooks_customer: dict[str, str] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], LedgerRow] = field(default_factory=dict)
    created: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def remote_id(self, kind: str, entity_id: str, obj: str) -> str | None:
        """The QuickBooks id of a document or item, from the outbox or the landed record."""
        return self.created.get((kind, entity_id, obj)) or self.in_quickbooks.get((obj, entity_id))


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
            & _SOURCE.c.object.in_(["Account", "Item", *_QB_DOCUMENTS])
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
        else:
            found = _NOTE.search(str(payload.get("PrivateNote") or ""))
            if found:
                world.in_quickbooks.setdefault((row.object, found.group(1)), row.external_id)
    for link in conn.execute(
        select(_LINK.c.system, _LINK.c.object, _LINK.c.external_id, _LINK.c.customer_id)
        .where(_LINK.c.status == LinkStatus.LINKED.value)
        .order_by(_LINK.c.id)
    ):
        world.customer_of[(link.system, link.object, link.external_id)] = link.customer_id
        if link.system == "quickbooks" and link.object == "Customer":
            world.quickbooks_customer.setdefault(link.customer_id, link.external_id)
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
            _OUTBOX.c.entity_kind.in_([DOCUMENT_ENTITY, ITEM_ENTITY]),
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
