"""Quotes to Stripe: an accepted deal becomes the Stripe customer, subscription or invoice.

:func:`plan_quotes` reads the landed Salesforce deals and queues, in the outbox, the Stripe
writes that bill them and the status that goes back to the deal:

* **Deals.** A Quote whose ``Status`` is ``Accepted``, or a Closed Won Opportunity with lines
  when it has no quote at all, of an Account matched to a golden customer. A deal not billed
  yet is billed only when it changed within ``window`` (30 days by default) before the plan:
  connecting an org with years of accepted quotes must not bill them all again.
* **Prices.** Each line's ``Product2`` is found in ``mappings/products.yaml`` by its product
  code (``salesforce_product_codes``), or by its name (``product_names``) when it has no
  code; the item's ``stripe_prices`` and ``stripe_lookup_keys`` name the Stripe price, and
  the landed price in the deal's currency is the one billed (a quoted unit price that differs
  from it gets a note). A recurring price becomes a subscription item, a one-time price a
  line of a one-off invoice. A deal with a line that has no such price, a
  fractional quantity, or recurring prices of several billing periods is quarantined at stage
  ``plan`` with the reason (``ledgerlink quarantine list --stage plan``) and planned again
  once fixed, which resolves the row.
* **Customer.** Without a Stripe customer the customer is created first, with
  ``metadata.salesforce_account_id`` and ``metadata.ledgerlink_customer_id``. Its outbox row
  is the customer planner's kind (entity ``customer``, the same key the customer planner would
  derive), so the push links it to the golden customer and neither planner creates it again.
  The subscription follows in the next cycle, once the customer's id is known.
* **Once per deal.** The subscription and the invoice carry ``metadata.salesforce_quote_id``
  (the Quote or Opportunity Id) and their outbox key is derived from that id alone, so a
  retried or re-planned create replays Stripe's first answer. A landed subscription with the
  deal's id is the deal's: an amended quote (lines added, removed or changed) updates its items
  instead of creating a second subscription.
* **Status back.** The deal's ``writes`` in ``mappings/salesforce.yaml`` (``Invoiced__c:
  hub.invoiced``, ``Paid__c: hub.paid``; an Opportunity takes the same fields as its Quote)
  are computed from the landed Stripe invoices of the deal's subscription and one-off invoice:
  invoiced once one is issued, paid when the latest issued invoice of each is paid. A value
  is written when it differs from the deal as landed (or, for a field the pull does not read,
  from what the hub wrote last), so a settled deal plans nothing.

The cycle calls :func:`plan_quotes` after the customer plan; ``dry_run`` reports only.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.domain.currencies import MoneyError
from ledgerlink.domain.money import Money, Rounding
from ledgerlink.log import get_logger
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.mapping.normalize import quarantine_record
from ledgerlink.mapping.schema import ItemSpec
from ledgerlink.store.db import for_writing
from ledgerlink.store.models import (
    CustomerLink,
    LinkStatus,
    Outbox,
    OutboxStatus,
    Quarantine,
    QuarantineStage,
    SourceRecord,
)
from ledgerlink.store.repository import Store
from ledgerlink.sync._landed import ChangedRecords, LinkRow
from ledgerlink.sync._packed import PackedPayloads
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key

__all__ = [
    "DEAL_ENTITY",
    "DEFAULT_WINDOW",
    "QUOTE_METADATA_KEY",
    "DealOp",
    "HeldDeal",
    "QuotePlanReport",
    "plan_quotes",
]

DEAL_ENTITY = "quote"
"""``entity_kind`` of the deal's outbox rows (their ``entity_id`` is the Quote/Opportunity Id)."""
QUOTE_METADATA_KEY = "salesforce_quote_id"
"""Stripe metadata key naming the deal a subscription or invoice bills."""
DEFAULT_WINDOW = timedelta(days=30)
"""A deal not billed yet is billed only when it changed this recently."""
DAYS_UNTIL_DUE = 30
"""Payment term of the invoices a deal produces (they are sent, not charged automatically)."""

_CUSTOMER_ENTITY = "customer"  # the customer planner's entity kind (ledgerlink.sync.plan)
_ACCEPTED = "accepted"
_CLOSED_WON = "Closed Won"
_ISSUED = {"open", "paid", "uncollectible"}
_DEAD_SUBSCRIPTION = {"canceled", "incomplete_expired"}
_DEAL_WRITES = ("invoiced", "paid")
_SF_OBJECTS = ("Quote", "QuoteLineItem", "Opportunity", "OpportunityLineItem", "Product2")
_STRIPE_OBJECTS = ("customers", "prices", "subscriptions", "invoices")
_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_log = get_logger(component="plan.quotes")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DealOp:
    """A write a deal needs.

    Attributes:
        target: the connector that makes the write (``stripe``, ``salesforce``).
        object: ``customers``, ``subscriptions``, ``invoices``, ``Quote`` or ``Opportunity``.
        action: create or update.
        deal_id: the Quote or Opportunity Id.
        remote_id: the record updated (None for a create).
        payload: what is sent, in the target's names.
        idempotency_key: the outbox key.
        entity_kind: the outbox row's entity kind (``customer`` for a customer create).
        entity_id: the outbox row's entity id (the golden customer for a customer create).
    """

    target: str
    object: str
    action: WriteAction
    deal_id: str
    remote_id: str | None
    payload: Mapping[str, Any]
    idempotency_key: str
    entity_kind: str = DEAL_ENTITY
    entity_id: str = ""

    def planned_write(self) -> PlannedWrite:
        """Return the outbox row of this write."""
        op = WriteOp(
            idempotency_key=self.idempotency_key,
            object=self.object,
            action=self.action,
            payload=dict(self.payload),
            remote_id=self.remote_id,
        )
        return PlannedWrite(
            self.target, op, entity_kind=self.entity_kind, entity_id=self.entity_id or self.deal_id
        )


@dataclass(frozen=True, slots=True)
class HeldDeal:
    """A deal that cannot be billed as it stands, and why (quarantined at stage ``plan``)."""

    object: str
    deal_id: str
    customer_id: str | None
    reason: str


@dataclass
class QuotePlanReport:
    """What one :func:`plan_quotes` did (or, with ``dry_run``, would do).

    Attributes:
        deals: accepted quotes and won opportunities of matched customers considered.
        ops: the writes wanted.
        held: deals quarantined, with the reason.
        queued: outbox rows inserted (a key already queued is not counted).
        resolved: plan-stage quarantine rows of deals that can now be billed.
        notes: things people should know (a deal waiting, and for what).
        dry_run: nothing was stored.
        seconds: wall time.
    """

    deals: int = 0
    ops: list[DealOp] = field(default_factory=list)
    held: list[HeldDeal] = field(default_factory=list)
    queued: int = 0
    resolved: int = 0
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counts, for logs and the daemon's job report."""
        kinds: dict[str, int] = defaultdict(int)
        for op in self.ops:
            kinds[f"{op.target}.{op.object}.{op.action.value}"] += 1
        return {
            "deals": self.deals,
            "writes": len(self.ops),
            "by_kind": dict(kinds),
            "held": len(self.held),
            "queued": self.queued,
            "resolved": self.resolved,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }


# -- what landed ---------------------------------------------------------------------------


@dataclass
class _Landed:
    """The raw records one plan reads, by system and object, then by id."""

    records: dict[tuple[str, str], PackedPayloads] = field(
        default_factory=lambda: defaultdict(PackedPayloads)
    )
    """Kept between plans by a long-running process: packed (see :mod:`ledgerlink.sync._packed`)."""
    changed: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    customer_of: dict[str, str] = field(default_factory=dict)
    stripe_links: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    created_customers: dict[str, str] = field(default_factory=dict)
    open_customer_creates: set[str] = field(default_factory=set)
    deal_writes: dict[tuple[str, str], str] = field(default_factory=dict)
    written_status: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))

    def of(self, system: str, obj: str) -> PackedPayloads:
        return self.records[(system, obj)]


_RECORD_COLUMNS = (
    _SOURCE.c.system,
    _SOURCE.c.object,
    _SOURCE.c.external_id,
    _SOURCE.c.payload,
    _SOURCE.c.changed_at,
)
_IN_CHUNK = 500
_BILLS_A_DEAL: Mapping[str, Any] = {"metadata": {QUOTE_METADATA_KEY: "yes"}}
"""A stand-in subscription for :func:`_deal_invoices`: one that names a deal."""


def _deal_invoices(
    conn: Connection, subscriptions: Mapping[str, Mapping[str, Any]], *, only: bool = False
) -> Iterator[Any]:
    """The landed Stripe invoices a deal's status reads, chosen by the database.

    Those are the invoices of subscriptions that name a deal, and one-off invoices that name
    one (not with ``only``: the subscriptions' invoices alone). With a million invoices
    landed, parsing every payload to find the few of deals costs more than the rest of the
    plan: the database reads the two fields instead.
    """
    billed = sorted(_billed(subscriptions))
    names_deal = _SOURCE.c.payload[("metadata", QUOTE_METADATA_KEY)].as_string().is_not(None)
    conditions = ([] if only else [names_deal]) + [
        _SOURCE.c.payload["subscription"].as_string().in_(billed[start : start + _IN_CHUNK])
        for start in range(0, len(billed), _IN_CHUNK)
    ]
    for condition in conditions:
        yield from conn.execute(
            select(*_RECORD_COLUMNS).where(
                _SOURCE.c.system == "stripe",
                _SOURCE.c.object == "invoices",
                _SOURCE.c.deleted_at.is_(None),
                condition,
            )
        )


def _keep(landed: _Landed, rows: Iterable[Any]) -> None:
    for row in rows:
        landed.records[(row.system, row.object)][row.external_id] = row.payload or {}
        landed.changed[(row.system, row.object, row.external_id)] = row.changed_at


_WANTED = [("salesforce", o) for o in _SF_OBJECTS] + [
    ("stripe", o) for o in _STRIPE_OBJECTS if o != "invoices"
]


def _load(conn: Connection, links: Sequence[LinkRow] | None = None) -> _Landed:
    landed = _Landed()
    rows = conn.execute(
        select(*_RECORD_COLUMNS).where(
            tuple_(_SOURCE.c.system, _SOURCE.c.object).in_(_WANTED),
            _SOURCE.c.deleted_at.is_(None),
        )
    )
    _keep(landed, rows)
    # After the subscriptions: which invoices are read depends on them.
    _keep(landed, _deal_invoices(conn, landed.of("stripe", "subscriptions")))
    _load_state(conn, landed, links)
    return landed


def _load_state(conn: Connection, landed: _Landed, links: Sequence[LinkRow] | None = None) -> None:
    """The links (from ``links`` when the caller read them already), and what the outbox
    says of the customers and deals the hub wrote."""
    if links is None:
        links = [
            (r.system, r.object, r.external_id, r.customer_id)
            for r in conn.execute(
                select(_LINK.c.system, _LINK.c.object, _LINK.c.external_id, _LINK.c.customer_id)
                .where(
                    _LINK.c.status == LinkStatus.LINKED.value,
                    tuple_(_LINK.c.system, _LINK.c.object).in_(
                        [("salesforce", "Account"), ("stripe", "customers")]
                    ),
                )
                .order_by(_LINK.c.id)
            )
        ]
    for system, obj, external_id, customer_id in links:
        if system == "salesforce" and obj == "Account":
            landed.customer_of[external_id] = customer_id
        elif system == "stripe" and obj == "customers":
            landed.stripe_links[customer_id].append(external_id)
    outbox = conn.execute(
        select(
            _OUTBOX.c.entity_kind,
            _OUTBOX.c.entity_id,
            _OUTBOX.c.target,
            _OUTBOX.c.object,
            _OUTBOX.c.action,
            _OUTBOX.c.status,
            _OUTBOX.c.remote_id,
        ).where(
            _OUTBOX.c.target == "stripe",
            _OUTBOX.c.action == WriteAction.CREATE.value,
            _OUTBOX.c.entity_kind.in_([_CUSTOMER_ENTITY, DEAL_ENTITY]),
        )
    )
    for entry in outbox:
        if entry.entity_kind == _CUSTOMER_ENTITY:
            if entry.object != "customers":
                continue
            if entry.status == OutboxStatus.DONE.value and entry.remote_id:
                landed.created_customers[entry.entity_id] = entry.remote_id
            elif entry.status in (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value):
                landed.open_customer_creates.add(entry.entity_id)
        elif entry.status == OutboxStatus.DONE.value and entry.remote_id:
            landed.deal_writes[(entry.entity_id, entry.object)] = entry.remote_id
        elif entry.status in (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value):
            landed.deal_writes[(entry.entity_id, entry.object)] = ""
    # What the hub last wrote to each deal: a field the connector does not read (not in the
    # landed payload) is compared with it, so an org that hides the field gets no write loop.
    # The row's status is checked here, not in the query (see the same read of the ledger's
    # currency customers in matching): the deal rows are few, the done rows every write made.
    status_rows = conn.execute(
        select(_OUTBOX.c.entity_id, _OUTBOX.c.payload, _OUTBOX.c.status)
        .where(
            _OUTBOX.c.entity_kind == DEAL_ENTITY,
            _OUTBOX.c.target == "salesforce",
            _OUTBOX.c.action == WriteAction.UPDATE.value,
        )
        .order_by(_OUTBOX.c.id)
    )
    done = (row for row in status_rows if row.status == OutboxStatus.DONE.value)
    for status in done:
        landed.written_status[status.entity_id].update(status.payload or {})


def _billed(subscriptions: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {sid for sid, sub in subscriptions.items() if _metadata(sub).get(QUOTE_METADATA_KEY)}


def _of_deal(invoice: Mapping[str, Any], billed: set[str]) -> bool:
    return bool(_metadata(invoice).get(QUOTE_METADATA_KEY)) or (
        str(invoice.get("subscription") or "") in billed
    )


class KeptQuotes:
    """The landed deals, lines, products and Stripe records the quotes planner reads, kept
    between plans of a long-running process and refreshed from what changed.

    The first refresh reads as :func:`plan_quotes` does without it (the invoices of deals
    chosen by the database); later ones read the records changed since (see
    :class:`~ledgerlink.sync._landed.ChangedRecords`), keep a changed invoice when it names a
    deal or belongs to a subscription that does, and ask the database for the invoices of a
    subscription that newly names one. Links and the outbox's state are read whole (a few rows
    per customer and deal).
    """

    def __init__(self) -> None:
        self._records: _Landed | None = None
        self._changes = ChangedRecords()
        self._billed: set[str] = set()
        self._deals: list[_Deal] | None = None
        self._billing: _DealBilling | None = None
        self._lock = threading.Lock()

    def deals(self, landed: _Landed) -> list[_Deal]:
        """:func:`_deals` of ``landed``, kept until a deal, line or product changes (every
        plan would otherwise decode every landed quote and opportunity to find them)."""
        with self._lock:
            if self._deals is None:
                self._deals = _deals(landed)
            return self._deals

    def _apply(self, kept: _Landed, system: str, obj: str, row: Any, billed: set[str]) -> None:
        """Keep (or drop) one changed record; note the subscriptions that name a deal."""
        payload = row.payload or {}
        gone = row.deleted_at is not None
        if system == "salesforce":
            self._deals = None
        elif obj == "subscriptions":
            if not gone and _metadata(payload).get(QUOTE_METADATA_KEY):
                billed.add(row.external_id)
            else:
                billed.discard(row.external_id)
        records = kept.of(system, obj)
        if gone or (obj == "invoices" and not _of_deal(payload, self._billed)):
            if records.pop(row.external_id, None) is not None and system == "stripe":
                self._billing = None
            kept.changed.pop((system, obj, row.external_id), None)
            return
        records[row.external_id] = payload
        kept.changed[(system, obj, row.external_id)] = row.changed_at
        if system == "stripe" and obj in ("subscriptions", "invoices"):
            self._billing = None

    def billing(self, landed: _Landed) -> _DealBilling:
        """:func:`_deal_billing` of ``landed``, kept until a Stripe subscription or an invoice
        of a deal changes (every plan would otherwise decode every landed subscription)."""
        with self._lock:
            if self._billing is None:
                self._billing = _deal_billing(landed)
            return self._billing

    def refresh(self, conn: Connection, links: Sequence[LinkRow] | None = None) -> _Landed:
        """The landed records as the store holds them now (``links``: see :func:`_load_state`)."""
        with self._lock:
            kept = self._records
            if kept is None:
                # Where the next read starts is taken first: what lands during the load is in
                # its window.
                self._changes.start_at_newest(conn, [*_WANTED, ("stripe", "invoices")])
                kept = self._records = _load(conn, links)
                self._billed = _billed(kept.of("stripe", "subscriptions"))
                self._deals = self._billing = None
                return kept
            self._changes.begin()
            billed = set(self._billed)
            for system, obj in [*_WANTED, ("stripe", "invoices")]:
                if obj == "invoices":
                    new = billed - self._billed
                    self._billed = billed
                    if new:
                        self._billing = None
                    _keep(kept, _deal_invoices(conn, dict.fromkeys(new, _BILLS_A_DEAL), only=True))
                for row in self._changes.rows(conn, system, obj):
                    self._apply(kept, system, obj, row, billed)
            self._changes.end()
            fresh = _Landed(records=kept.records, changed=kept.changed)
            _load_state(conn, fresh, links)
            self._records = fresh
            return fresh


# -- values --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _moment(value: Any) -> datetime | None:
    """A Salesforce date-time (``2026-01-15T10:00:00.000+0000``) as an aware datetime."""
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


def _quantity(value: Any) -> int | None:
    """A whole, positive quantity; None for a fractional, negative or missing one."""
    try:
        number = Decimal(str(value if value is not None else 1))
    except InvalidOperation:
        return None
    if number <= 0 or number != number.to_integral_value():
        return None
    return int(number)


def _metadata(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = payload.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


@dataclass(frozen=True)
class _Line:
    """A billable line: the Stripe price and quantity, and whether it recurs."""

    price: str
    quantity: int
    recurring: tuple[str, int] | None


@dataclass(frozen=True)
class _Deal:
    """An accepted quote or won opportunity, with its lines as landed."""

    object: str
    id: str
    account_id: str
    currency: str
    changed_at: datetime | None
    lines: tuple[Mapping[str, Any], ...]
    payload: Mapping[str, Any]


def _deals(landed: _Landed) -> list[_Deal]:
    """Accepted quotes, and Closed Won opportunities with lines that have no quote."""
    deals: list[_Deal] = []
    lines_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for line_id, line in sorted(landed.of("salesforce", "QuoteLineItem").items()):
        lines_of[str(line.get("QuoteId"))].append({**line, "Id": line_id})
    for line_id, line in sorted(landed.of("salesforce", "OpportunityLineItem").items()):
        lines_of[str(line.get("OpportunityId"))].append({**line, "Id": line_id})
    quoted: set[str] = set()
    opportunities = landed.of("salesforce", "Opportunity")
    for quote_id, quote in sorted(landed.of("salesforce", "Quote").items()):
        parent = _text(quote.get("OpportunityId"))
        if parent is not None:
            quoted.add(parent)
        if _text(quote.get("Status")) != "Accepted":
            continue
        account = _text(quote.get("AccountId")) or _text(
            (opportunities.get(parent or "") or {}).get("AccountId")
        )
        if account is None:
            continue
        deals.append(
            _Deal(
                "Quote",
                quote_id,
                account,
                (_text(quote.get("CurrencyIsoCode")) or "USD").lower(),
                _moment(quote.get("LastModifiedDate")),
                tuple(lines_of.get(quote_id, ())),
                quote,
            )
        )
    for opportunity_id, opportunity in sorted(opportunities.items()):
        won = opportunity.get("IsWon") is True or opportunity.get("StageName") == _CLOSED_WON
        account = _text(opportunity.get("AccountId"))
        lines = tuple(lines_of.get(opportunity_id, ()))
        if not won or opportunity_id in quoted or account is None or not lines:
            continue
        deals.append(
            _Deal(
                "Opportunity",
                opportunity_id,
                account,
                (_text(opportunity.get("CurrencyIsoCode")) or "USD").lower(),
                _moment(opportunity.get("LastModifiedDate")),
                lines,
                opportunity,
            )
        )
    return deals


def _item_of(mappings: MappingSet, product: Mapping[str, Any]) -> ItemSpec | None:
    """The products.yaml item of a Product2: by its product code; by name only without a code.

    Never the default item, and never a name match for a coded product: ``Enterprise`` yearly
    (``ENT-Y``) must not be billed at the monthly Enterprise price because the names agree.
    """
    code, name = _text(product.get("ProductCode")), _text(product.get("Name"))
    value, attribute = (code, "salesforce_product_codes") if code else (name, "product_names")
    if value is None:
        return None
    return next(
        (item for item in mappings.products.items.values() if value in getattr(item, attribute)),
        None,
    )


class _Prices:
    """Landed Stripe prices, found by id or lookup key in a currency."""

    def __init__(self, prices: Mapping[str, Mapping[str, Any]]) -> None:
        self.by_id = {pid: p for pid, p in prices.items() if p.get("active", True) is not False}
        self.by_key: dict[str, list[str]] = defaultdict(list)
        for pid, price in sorted(self.by_id.items()):
            key = _text(price.get("lookup_key"))
            if key is not None:
                self.by_key[key].append(pid)

    def find(self, item: ItemSpec, currency: str) -> str | None:
        candidates = [*item.stripe_prices]
        for key in item.stripe_lookup_keys:
            candidates.extend(self.by_key.get(key, ()))
        for pid in candidates:
            price = self.by_id.get(pid)
            if price is not None and str(price.get("currency", "")).lower() == currency:
                return pid
        return None

    def recurring(self, pid: str) -> tuple[str, int] | None:
        recurring = self.by_id[pid].get("recurring")
        if not isinstance(recurring, Mapping) or not recurring.get("interval"):
            return None
        return str(recurring["interval"]), int(recurring.get("interval_count") or 1)


@dataclass(frozen=True)
class _DealBilling:
    """What bills each deal, as landed: read-only, shared by the plans it stays true for."""

    subscriptions: dict[str, tuple[str, Mapping[str, Any]]]
    """Deal id -> its subscription (id, object)."""
    invoices: dict[str, tuple[str, Mapping[str, Any]]]
    """Deal id -> its one-off invoice (id, object)."""
    invoices_of: dict[str, list[Mapping[str, Any]]]
    """Subscription id (of a deal) -> its invoices."""


def _deal_billing(landed: _Landed) -> _DealBilling:
    subscriptions = _by_deal(landed, "subscriptions")
    # Only the invoices of deals' subscriptions tell a deal's status: copying every invoice
    # of every subscription (a million of them) would cost more than the plan.
    billed = {subscription_id for subscription_id, _ in subscriptions.values()}
    invoices_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for invoice_id, invoice in landed.of("stripe", "invoices").items():
        subscription = _text(invoice.get("subscription"))
        if subscription is not None and subscription in billed:
            invoices_of[subscription].append({**invoice, "id": invoice_id})
    return _DealBilling(subscriptions, _by_deal(landed, "invoices"), invoices_of)


def _by_deal(landed: _Landed, obj: str) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Landed Stripe objects that name a deal in their metadata (oldest first wins)."""
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    records = landed.of("stripe", obj)
    for record_id in records.ids_by_created():
        record = records[record_id]
        deal = _text(_metadata(record).get(QUOTE_METADATA_KEY))
        if deal is None or deal in found:
            continue
        if obj == "subscriptions" and record.get("status") in _DEAD_SUBSCRIPTION:
            continue
        if obj == "invoices" and (record.get("subscription") or record.get("status") == "void"):
            continue
        found[deal] = (record_id, record)
    return found


# -- the planner ---------------------------------------------------------------------------


class _Planner:
    """Plans one deal at a time against what landed."""

    def __init__(
        self,
        mappings: MappingSet,
        landed: _Landed,
        now: datetime,
        window: timedelta,
        billing: _DealBilling | None = None,
    ) -> None:
        self.mappings = mappings
        self.landed = landed
        self.now = now
        self.window = window
        self.prices = _Prices(landed.of("stripe", "prices"))
        self.report = QuotePlanReport()
        self.considered: set[tuple[str, str]] = set()
        self.customer_creates: set[str] = set()
        billing = billing or _deal_billing(landed)
        self.subscriptions, self.invoices = billing.subscriptions, billing.invoices
        self.invoices_of = billing.invoices_of

    def deal(self, deal: _Deal) -> None:
        customer_id = self.landed.customer_of.get(deal.account_id)
        if customer_id is None:
            return  # not matched yet; the next cycle sees it
        self.report.deals += 1
        subscription = self.subscriptions.get(deal.id)
        invoice = self.invoices.get(deal.id)
        billed = subscription is not None or invoice is not None
        self.considered.add((deal.object, deal.id))
        if not billed and not self._recent(deal):
            self.report.notes.append(
                f"{deal.object} {deal.id}: accepted before the billing window "
                f"({self.window.days} days); not billed by the hub"
            )
            return
        lines = self._lines(deal, customer_id)
        if lines is None:
            return
        recurring = [line for line in lines if line.recurring is not None]
        one_time = [line for line in lines if line.recurring is None]
        stripe_customer = self._stripe_customer(deal, customer_id)
        if stripe_customer is not None:
            self._subscription(deal, stripe_customer, recurring, subscription)
            self._invoice(deal, stripe_customer, one_time, invoice)
        self._status(deal, subscription, invoice)

    def _recent(self, deal: _Deal) -> bool:
        return deal.changed_at is not None and deal.changed_at >= self.now - self.window

    def _hold(self, deal: _Deal, customer_id: str, reason: str) -> None:
        self.report.held.append(HeldDeal(deal.object, deal.id, customer_id, reason))

    def _lines(self, deal: _Deal, customer_id: str) -> list[_Line] | None:
        if not deal.lines:
            self._hold(deal, customer_id, "the deal has no lines to bill")
            return None
        products = self.landed.of("salesforce", "Product2")
        problems: list[str] = []
        lines: list[_Line] = []
        for line in deal.lines:
            product_id = _text(line.get("Product2Id")) or ""
            product = products.get(product_id) or {}
            label = _text(product.get("ProductCode")) or _text(product.get("Name")) or product_id
            item = _item_of(self.mappings, product)
            if item is None:
                problems.append(f"product {label} has no item in products.yaml")
                continue
            price = self.prices.find(item, deal.currency)
            if price is None:
                problems.append(
                    f"product {label} (item {item.name!r}) has no Stripe price in "
                    f"{deal.currency.upper()}"
                )
                continue
            quantity = _quantity(line.get("Quantity"))
            if quantity is None:
                problems.append(
                    f"line {line.get('Id')} has quantity {line.get('Quantity')!r}, "
                    "not a whole number of units"
                )
                continue
            lines.append(_Line(price, quantity, self.prices.recurring(price)))
            self._check_price(deal, line, label, price)
        periods = {line.recurring for line in lines if line.recurring is not None}
        if len(periods) > 1:
            shown = ", ".join(f"every {n} {unit}" for unit, n in sorted(periods))
            problems.append(f"recurring lines bill on different periods ({shown})")
        if problems:
            self._hold(deal, customer_id, "; ".join(problems))
            return None
        return _merged(lines)

    def _check_price(self, deal: _Deal, line: Mapping[str, Any], label: str, price_id: str) -> None:
        """Note a quoted net unit price that differs from the Stripe price billed.

        Stripe bills its price; a discount or a custom price on the quote needs a Stripe price
        (or coupon) of its own, which people must decide on.
        """
        try:
            unit = Decimal(str(line.get("UnitPrice")))
            discount = Decimal(str(line.get("Discount") or 0))
            quoted = Money.from_decimal(
                unit * (100 - discount) / 100, deal.currency, rounding=Rounding.HALF_EVEN
            )
        except (InvalidOperation, ValueError, MoneyError):
            return
        billed = self.prices.by_id[price_id].get("unit_amount")
        if isinstance(billed, int) and billed != quoted.amount:
            self.report.notes.append(
                f"{deal.object} {deal.id}: {label} quoted at {quoted} a unit, Stripe price "
                f"{price_id} bills {Money(billed, quoted.currency)}"
            )

    def _stripe_customer(self, deal: _Deal, customer_id: str) -> str | None:
        """The customer's Stripe id; queue its creation (once) when it has none."""
        customers = self.landed.of("stripe", "customers")
        linked = sorted(self.landed.stripe_links.get(customer_id, ()))
        naming = [
            c
            for c in linked
            if _metadata(customers.get(c) or {}).get("salesforce_account_id") == deal.account_id
        ]
        if naming or linked:
            return (naming or linked)[0]
        created = self.landed.created_customers.get(customer_id)
        if created is not None:
            return created
        if customer_id in self.landed.open_customer_creates:
            self.report.notes.append(f"{deal.object} {deal.id}: waiting for the Stripe customer")
            return None
        if customer_id not in self.customer_creates:
            self.customer_creates.add(customer_id)
            account = self.landed.of("salesforce", "Account").get(deal.account_id) or {}
            payload: dict[str, Any] = {
                "golden_customer_id": customer_id,
                "salesforce_account_id": deal.account_id,
            }
            name = " ".join(str(account.get("Name") or "").split())
            if name:
                payload["name"] = name
            # The customer planner's key for this create: one create per customer, whoever plans it.
            key = idempotency_key(
                "stripe",
                "customers",
                WriteAction.CREATE,
                customer_id,
                {"customer": customer_id, "name": None},
            )
            self.report.ops.append(
                DealOp(
                    "stripe",
                    "customers",
                    WriteAction.CREATE,
                    deal.id,
                    None,
                    payload,
                    key,
                    entity_kind=_CUSTOMER_ENTITY,
                    entity_id=customer_id,
                )
            )
        self.report.notes.append(
            f"{deal.object} {deal.id}: Stripe customer queued; billed in the next cycle"
        )
        return None

    def _deal_metadata(self, deal: _Deal) -> dict[str, str]:
        return {QUOTE_METADATA_KEY: deal.id, "salesforce_object": deal.object}

    def _subscription(
        self,
        deal: _Deal,
        stripe_customer: str,
        lines: Sequence[_Line],
        landed: tuple[str, Mapping[str, Any]] | None,
    ) -> None:
        if landed is None:
            if not lines:
                return
            if (deal.id, "subscriptions") in self.landed.deal_writes:
                return  # created (or on its way) and not landed yet
            payload = {
                "customer": stripe_customer,
                "items": [{"price": line.price, "quantity": line.quantity} for line in lines],
                "collection_method": "send_invoice",
                "days_until_due": DAYS_UNTIL_DUE,
                "metadata": self._deal_metadata(deal),
            }
            # Keyed by the deal alone: a deal creates one subscription, whatever its lines.
            key = idempotency_key(
                "stripe", "subscriptions", WriteAction.CREATE, deal.id, {"deal": deal.id}
            )
            self.report.ops.append(
                DealOp("stripe", "subscriptions", WriteAction.CREATE, deal.id, None, payload, key)
            )
            return
        subscription_id, subscription = landed
        items = _items_change(subscription, lines)
        if not items:
            return
        payload = {"items": items, "proration_behavior": "create_prorations"}
        version = self.landed.changed.get(("stripe", "subscriptions", subscription_id))
        key = idempotency_key(
            "stripe",
            "subscriptions",
            WriteAction.UPDATE,
            deal.id,
            payload,
            version=None if version is None else version.isoformat(),
        )
        self.report.ops.append(
            DealOp(
                "stripe",
                "subscriptions",
                WriteAction.UPDATE,
                deal.id,
                subscription_id,
                payload,
                key,
            )
        )

    def _invoice(
        self,
        deal: _Deal,
        stripe_customer: str,
        lines: Sequence[_Line],
        landed: tuple[str, Mapping[str, Any]] | None,
    ) -> None:
        if landed is not None or not lines or (deal.id, "invoices") in self.landed.deal_writes:
            if landed is not None and lines and not _same_invoice(landed[1], lines):
                self.report.notes.append(
                    f"{deal.object} {deal.id}: one-time lines changed after invoice "
                    f"{landed[0]} was issued; issue a credit note or a new invoice in Stripe"
                )
            return
        payload = {
            "customer": stripe_customer,
            "currency": deal.currency,
            "lines": [{"price": line.price, "quantity": line.quantity} for line in lines],
            "collection_method": "send_invoice",
            "days_until_due": DAYS_UNTIL_DUE,
            "metadata": self._deal_metadata(deal),
        }
        key = idempotency_key("stripe", "invoices", WriteAction.CREATE, deal.id, {"deal": deal.id})
        self.report.ops.append(
            DealOp("stripe", "invoices", WriteAction.CREATE, deal.id, None, payload, key)
        )

    def _status(
        self,
        deal: _Deal,
        subscription: tuple[str, Mapping[str, Any]] | None,
        invoice: tuple[str, Mapping[str, Any]] | None,
    ) -> None:
        writes = self.mappings.systems["salesforce"].objects.get("Quote")
        targets = {
            path: expression[4:]
            for path, expression in (writes.writes if writes is not None else {}).items()
            if expression.startswith("hub.") and expression[4:] in _DEAL_WRITES
        }
        if not targets or (subscription is None and invoice is None):
            return
        documents: list[list[Mapping[str, Any]]] = []
        if subscription is not None:
            documents.append(self.invoices_of.get(subscription[0], []))
        if invoice is not None:
            documents.append([invoice[1]])
        values = _deal_status(documents)
        written = self.landed.written_status.get(deal.id, {})
        payload = {
            path: values[name]
            for path, name in sorted(targets.items())
            if (deal.payload[path] if path in deal.payload else written.get(path)) != values[name]
        }
        if not payload:
            return
        version = self.landed.changed.get(("salesforce", deal.object, deal.id))
        key = idempotency_key(
            "salesforce",
            deal.object,
            WriteAction.UPDATE,
            deal.id,
            payload,
            version=None if version is None else version.isoformat(),
        )
        self.report.ops.append(
            DealOp("salesforce", deal.object, WriteAction.UPDATE, deal.id, deal.id, payload, key)
        )


def _merged(lines: Iterable[_Line]) -> list[_Line]:
    """Lines of one price added up (Stripe takes a price once per subscription)."""
    totals: dict[str, _Line] = {}
    for line in lines:
        known = totals.get(line.price)
        quantity = line.quantity + (known.quantity if known is not None else 0)
        totals[line.price] = _Line(line.price, quantity, line.recurring)
    return [totals[price] for price in sorted(totals)]


def _items_change(subscription: Mapping[str, Any], lines: Sequence[_Line]) -> list[dict[str, Any]]:
    """The ``items`` of an update that makes the subscription hold ``lines`` (empty: none)."""
    data = (subscription.get("items") or {}).get("data") or []
    current: dict[str, Mapping[str, Any]] = {}
    for item in data:
        price = item.get("price")
        price_id = price.get("id") if isinstance(price, Mapping) else price
        if price_id:
            current[str(price_id)] = item
    wanted = {line.price: line.quantity for line in lines}
    changes: list[dict[str, Any]] = []
    for price_id, item in sorted(current.items()):
        if price_id not in wanted:
            changes.append({"id": item["id"], "deleted": True})
        elif item.get("quantity") is not None and int(item["quantity"]) != wanted[price_id]:
            changes.append({"id": item["id"], "quantity": wanted[price_id]})
    changes.extend(
        {"price": price_id, "quantity": quantity}
        for price_id, quantity in sorted(wanted.items())
        if price_id not in current
    )
    return changes


def _same_invoice(invoice: Mapping[str, Any], lines: Sequence[_Line]) -> bool:
    data = (invoice.get("lines") or {}).get("data") or []
    billed: dict[str, int] = defaultdict(int)
    for line in data:
        price = line.get("price")
        price_id = price.get("id") if isinstance(price, Mapping) else price
        if price_id:
            billed[str(price_id)] += int(line.get("quantity") or 0)
    return dict(billed) == {line.price: line.quantity for line in lines}


def _deal_status(documents: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, bool]:
    """``invoiced``: an invoice was issued; ``paid``: the latest issued one of each is paid."""
    latest: list[Mapping[str, Any]] = []
    for invoices in documents:
        issued = [i for i in invoices if i.get("status") in _ISSUED]
        if issued:
            latest.append(max(issued, key=lambda i: (i.get("created") or 0, str(i.get("id")))))
    invoiced = bool(latest)
    paid = invoiced and len(latest) == len(documents)
    paid = paid and all(i.get("status") == "paid" for i in latest)
    return {"invoiced": invoiced, "paid": paid}


# -- storing -------------------------------------------------------------------------------


def _store(conn: Connection, planner: _Planner, now: datetime) -> None:
    report = planner.report
    report.queued = enqueue(conn, (op.planned_write() for op in report.ops), now=now)
    held = {(h.object, h.deal_id) for h in report.held}
    deals = planner.landed
    for hold in report.held:
        payload = deals.of("salesforce", hold.object).get(hold.deal_id) or {}
        quarantine_record(
            conn,
            system="salesforce",
            object_name=hold.object,
            external_id=hold.deal_id,
            stage=QuarantineStage.PLAN.value,
            reason=f"not billed: {hold.reason}. Fix the deal or mappings/products.yaml and "
            "the next plan bills it.",
            payload={"customer_id": hold.customer_id, "deal": dict(payload)},
            now=now,
        )
    report.resolved = _resolve(conn, planner.considered - held, now)


def _resolve(conn: Connection, settled: set[tuple[str, str]], now: datetime) -> int:
    """Resolve the plan-stage quarantine rows of deals that can be billed now."""
    if not settled:
        return 0
    rows = conn.execute(
        select(_QUARANTINE.c.id, _QUARANTINE.c.object, _QUARANTINE.c.external_id).where(
            _QUARANTINE.c.system == "salesforce",
            _QUARANTINE.c.object.in_(["Quote", "Opportunity"]),
            _QUARANTINE.c.stage == QuarantineStage.PLAN.value,
            _QUARANTINE.c.resolved_at.is_(None),
        )
    )
    ids = [row.id for row in rows if (row.object, row.external_id) in settled]
    if ids:
        conn.execute(
            update(_QUARANTINE)
            .where(_QUARANTINE.c.id.in_(ids))
            .values(resolved_at=now, updated_at=now)
        )
    return len(ids)


# -- entry point ---------------------------------------------------------------------------


def plan_quotes(
    store: Store | Engine,
    mappings: MappingSet,
    *,
    now: datetime,
    dry_run: bool = False,
    window: timedelta = DEFAULT_WINDOW,
    kept: KeptQuotes | None = None,
    links: Sequence[LinkRow] | None = None,
) -> QuotePlanReport:
    """Plan the Stripe writes that bill accepted deals, and the status written back to them.

    Reads the landed deals, lines, products, Stripe prices, customers, subscriptions and
    invoices, the customer links and the outbox; in one transaction queues the writes
    (:func:`ledgerlink.sync.outbox.enqueue`), quarantines deals that cannot be billed and
    resolves those that can again. Safe to call at any time: a write already queued is not
    queued twice, and a deal is billed once.

    Args:
        store: the store (or its engine).
        mappings: the loaded mappings (``products.yaml`` and the Quote's ``writes``).
        now: the time of the plan (timezone-aware UTC).
        dry_run: compute and report only; nothing is stored or queued.
        window: a deal not billed yet is billed only when it changed this recently.
        kept: the records kept between plans of a long-running process (the daemon, a
            benchmark): only what changed since its last plan is read again. None reads
            everything.
        links: the linked records (:func:`~ledgerlink.sync._landed.read_links`), when the
            caller read them for several planners; None reads them.

    Returns:
        The writes, the deals held and the counts.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be timezone-aware"
        raise ValueError(msg)
    started = time.perf_counter()
    engine = store.engine if isinstance(store, Store) else store
    with engine.connect() as conn:
        landed = _load(conn, links) if kept is None else kept.refresh(conn, links)
    planner = _Planner(
        mappings, landed, now, window, None if kept is None else kept.billing(landed)
    )
    for deal in _deals(landed) if kept is None else kept.deals(landed):
        planner.deal(deal)
    report = planner.report
    report.dry_run = dry_run
    if not dry_run:
        with for_writing(engine).begin() as conn:
            _store(conn, planner, now)
    report.seconds = time.perf_counter() - started
    _log.info("plan.quotes.done", **report.as_dict())
    return report
