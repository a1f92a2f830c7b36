"""Ledger posting: Stripe invoices, charges, refunds, fees, disputes and payouts -> QuickBooks.

:func:`plan_ledger` reads what the Stripe connector landed (``invoices``, ``charges``,
``refunds``, ``payouts``, ``balance_transactions``) and queues, in one transaction, the
QuickBooks documents that put them in the books (see ``docs/ledger.md``):

=====================  =============================================================
Stripe                 QuickBooks
=====================  =============================================================
finalized invoice      Invoice for the QuickBooks customer of the same golden customer
succeeded charge       Payment into the clearing account, applied to that invoice
charge's fee           JournalEntry: debit fees, credit clearing
refund                 RefundReceipt paid out of the clearing account
dispute (adjustment)   JournalEntry: debit disputes, credit clearing (amount and fee)
payout                 Deposit into the bank account from the clearing account
=====================  =============================================================

**Exactly once.** Each document is an outbox row with ``entity_kind = "ledger"`` and the
Stripe object id as ``entity_id``, keyed by (target, object, action, Stripe id, content).
A Stripe object whose document is queued or sent, or whose document already landed from
QuickBooks carrying ``stripe:<id>`` in its ``PrivateNote``, is not planned again; an
invoice amended after it was posted is updated in place, never posted twice.

**Waiting.** A document whose customer, invoice or item is not in QuickBooks yet is left for
the next cycle (the customer planner creates customers; items are created here) and counted in
:attr:`LedgerPlanReport.waiting` with the reason.

**Currencies.** A document keeps its currency; in another currency than the company's home
currency it carries ``ExchangeRate`` from Stripe's balance transaction (``exchange_rate``, when
it converts into the home currency) or from the configured rate table. Without either the
document is quarantined (stage ``plan``) with the reason; a rate of 1 is never assumed.

The QuickBooks JSON comes from :mod:`ledgerlink_quickbooks.posting`, imported when planning:
the ledger posts to QuickBooks, so its connector must be installed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.domain.money import Money, json_number
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.mapping.normalize import quarantine_record
from ledgerlink.store.db import for_writing
from ledgerlink.store.models import Quarantine, QuarantineStage
from ledgerlink.store.repository import Store, canonical_json
from ledgerlink.sync._ledger_reconcile import PayoutReconciliation, reconcile, tie_payout
from ledgerlink.sync._ledger_world import (
    DOCUMENT_ENTITY,
    ITEM_ENTITY,
    LedgerWorld,
    load_world,
    stripe_note,
)
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key

__all__ = [
    "DOCUMENT_ENTITY",
    "ITEM_ENTITY",
    "LedgerDocument",
    "LedgerOptions",
    "LedgerPlanReport",
    "MissingRateError",
    "PayoutReconciliation",
    "plan_ledger",
    "reconcile",
    "tie_payout",
]

TARGET = "quickbooks"
_POSTED_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible"})
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_log = get_logger(component="ledger")


class MissingRateError(ValueError):
    """A document in a foreign currency has no exchange rate (none from Stripe, none configured)."""


class _Wait(Exception):  # noqa: N818 - control flow: the document waits for the next cycle
    """A document cannot be built yet; the message says what it waits for."""


@dataclass(frozen=True)
class LedgerOptions:
    """How documents are valued.

    Attributes:
        home_currency: the QuickBooks company's home currency.
        rates: configured exchange rates, currency -> home units per unit of that currency;
            used when Stripe's balance transaction gives none.
    """

    home_currency: str = "USD"
    rates: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerDocument:
    """One QuickBooks write the ledger plan wants.

    Attributes:
        kind: ``invoice``, ``payment``, ``fee``, ``refund``, ``dispute``, ``payout`` or ``item``.
        stripe_id: the Stripe object posted (the item's name for ``item``).
        object: the QuickBooks entity.
        action: create, or update of an amended invoice.
        payload: the QuickBooks JSON (amounts as exact JSON numbers).
        remote_id: the QuickBooks id updated (None for a create).
        idempotency_key: the outbox key.
    """

    kind: str
    stripe_id: str
    object: str
    action: WriteAction
    payload: Mapping[str, Any]
    remote_id: str | None
    idempotency_key: str

    def planned_write(self) -> PlannedWrite:
        """The outbox row of this document."""
        op = WriteOp(
            idempotency_key=self.idempotency_key,
            object=self.object,
            action=self.action,
            payload=dict(self.payload),
            remote_id=self.remote_id,
        )
        entity = ITEM_ENTITY if self.kind == "item" else DOCUMENT_ENTITY
        return PlannedWrite(TARGET, op, entity_kind=entity, entity_id=self.stripe_id)


@dataclass
class LedgerPlanReport:
    """What one :func:`plan_ledger` did.

    Attributes:
        documents: the writes wanted this time (creates and updates).
        queued: outbox rows inserted.
        posted: Stripe objects already queued or in QuickBooks (not planned again).
        waiting: reason -> how many documents wait for the next cycle.
        quarantined: (Stripe id, reason) of documents that cannot be posted.
        skipped: reason -> how many Stripe objects post nothing (drafts, failed charges).
        seconds: wall time.
    """

    documents: list[LedgerDocument] = field(default_factory=list)
    queued: int = 0
    posted: int = 0
    waiting: Counter[str] = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def by_kind(self) -> dict[str, int]:
        """Documents wanted per kind."""
        return dict(Counter(doc.kind for doc in self.documents))

    def as_dict(self) -> dict[str, Any]:
        """The counts, for logs and the cycle summary."""
        return {
            "documents": len(self.documents),
            "by_kind": self.by_kind(),
            "queued": self.queued,
            "posted": self.posted,
            "waiting": dict(self.waiting),
            "quarantined": len(self.quarantined),
            "skipped": dict(self.skipped),
            "seconds": round(self.seconds, 3),
        }


def _posting() -> ModuleType:
    try:
        from ledgerlink_quickbooks import posting
    except ImportError as exc:  # pragma: no cover - the workspace always installs it
        msg = "ledger posting needs the QuickBooks connector (ledgerlink-quickbooks)"
        raise RuntimeError(msg) from exc
    return posting


def _jsonable(value: Any) -> Any:
    """Decimals -> exact JSON numbers (the outbox stores JSON); refuses inexact amounts."""
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _money(minor: Any, currency: str) -> Money:
    return Money(int(minor or 0), currency.upper())


def _day(unix: Any) -> date:
    return datetime.fromtimestamp(int(unix), UTC).date()


class _Planner:
    """Builds the documents of one plan from a loaded :class:`LedgerWorld`."""

    def __init__(self, world: LedgerWorld, mappings: MappingSet, options: LedgerOptions) -> None:
        self.world = world
        self.mappings = mappings
        self.options = options
        self.posting = _posting()
        self.report = LedgerPlanReport()
        self.quarantine: list[tuple[str, str, str, Mapping[str, Any]]] = []
        self.fine: list[tuple[str, str]] = []
        self._item_creates: set[str] = set()

    # -- reference data --------------------------------------------------------------------

    def account(self, role: str) -> str:
        spec = self.mappings.account(role)
        found = self.world.accounts.get(spec.name.strip().lower())
        if found is None:
            raise _Wait(f"account {role!r} ({spec.name}) not in QuickBooks")
        return found

    def accounts_map(self) -> Any:
        return self.posting.AccountsMap(
            clearing=self.account("clearing"),
            bank=self.account("bank"),
            fees_expense=self.account("fees"),
        )

    def item(self, line: Mapping[str, Any]) -> str:
        price = line.get("price") or {}
        spec = self.mappings.item_for(
            stripe_price=price.get("id"),
            stripe_lookup_key=price.get("lookup_key"),
            stripe_product=price.get("product"),
            product_name=line.get("description"),
        )
        if spec is None:
            raise _Wait("no item in products.yaml for a line and no default_item")
        key = spec.name.strip().lower()
        found = self.world.items.get(key) or self.world.created.get(
            (ITEM_ENTITY, spec.name, "Item")
        )
        if found is not None:
            return found
        if spec.name not in self._item_creates and (ITEM_ENTITY, spec.name, "Item") not in (
            self.world.rows
        ):
            income = self.account(spec.income_account)
            payload = {"Name": spec.name, "Type": "Service", "IncomeAccountRef": {"value": income}}
            self._add(
                kind="item",
                stripe_id=spec.name,
                obj="Item",
                action=WriteAction.CREATE,
                payload=payload,
                remote_id=None,
            )
            self._item_creates.add(spec.name)
        raise _Wait(f"item {spec.name!r} being created in QuickBooks")

    def customer(self, stripe_customer: Any) -> str:
        golden = self.world.customer_of.get(("stripe", "customers", str(stripe_customer)))
        if golden is None:
            raise _Wait("Stripe customer not matched to a customer yet")
        found = self.world.quickbooks_customer.get(golden)
        if found is None:
            raise _Wait("customer not in QuickBooks yet")
        return found

    def rate(self, currency: str, txn_id: Any = None) -> Decimal | None:
        """Home units per unit of ``currency``: Stripe's rate, else the table, else an error."""
        home = self.options.home_currency.upper()
        if currency.upper() == home:
            return None
        txn = self.world.stripe.get("balance_transactions", {}).get(str(txn_id or ""))
        if txn and txn.get("exchange_rate") and str(txn.get("currency", "")).upper() == home:
            return Decimal(str(txn["exchange_rate"]))
        configured = self.options.rates.get(currency.upper())
        if configured is not None:
            return Decimal(str(configured))
        msg = (
            f"no exchange rate {currency.upper()}->{home}: Stripe gave none and the rate "
            f"table has no {currency.upper()}"
        )
        raise MissingRateError(msg)

    # -- bookkeeping -----------------------------------------------------------------------

    def _add(
        self,
        kind: str,
        *,
        stripe_id: str,
        obj: str,
        action: WriteAction,
        payload: Mapping[str, Any],
        remote_id: str | None,
        version: str | None = None,
    ) -> None:
        body = _jsonable(payload)
        key = idempotency_key(
            TARGET, obj, action, f"stripe:{stripe_id}", canonical_json(body), version=version
        )
        self.report.documents.append(
            LedgerDocument(kind, stripe_id, obj, action, body, remote_id, key)
        )

    def post(
        self, kind: str, stripe_id: str, obj: str, build: Any, *, amendable: bool = False
    ) -> None:
        """Plan one document unless it is already posted; record waits and quarantines."""
        existing = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, obj))
        landed = self.world.in_quickbooks.get((obj, stripe_id))
        if (existing is not None or landed is not None) and not amendable:
            self.report.posted += 1
            return
        try:
            payload = build()
        except _Wait as wait:
            self.report.waiting[str(wait)] += 1
            return
        except MissingRateError as missing:
            self.report.quarantined.append((stripe_id, str(missing)))
            self.quarantine.append((kind, stripe_id, str(missing), {"kind": kind}))
            return
        self.fine.append((kind, stripe_id))
        if existing is None and landed is None:
            self._add(
                kind,
                stripe_id=stripe_id,
                obj=obj,
                action=WriteAction.CREATE,
                payload=payload,
                remote_id=None,
            )
            return
        self.report.posted += 1
        remote = self.world.remote_id(DOCUMENT_ENTITY, stripe_id, obj)
        if existing is not None and existing.status != "done":
            return  # the last write of it is still on its way; compare once it is sent
        if remote is None or (
            existing is not None
            and canonical_json(_jsonable(payload)) == canonical_json(existing.payload)
        ):
            return
        changed = self.world.changed_at.get(stripe_id)
        self._add(
            kind,
            stripe_id=stripe_id,
            obj=obj,
            action=WriteAction.UPDATE,
            payload=payload,
            remote_id=remote,
            version=None if changed is None else changed.isoformat(),
        )

    # -- documents -------------------------------------------------------------------------

    def invoice(self, invoice: Mapping[str, Any]) -> Mapping[str, Any]:
        currency = str(invoice["currency"]).upper()
        customer = self.customer(invoice.get("customer"))
        lines = []
        for line in (invoice.get("lines") or {}).get("data") or []:
            amount = _money(line.get("amount"), currency)
            quantity = int(line.get("quantity") or 1)
            unit = (line.get("price") or {}).get("unit_amount")
            if unit is None or int(unit) * quantity != amount.amount:
                quantity, unit = 1, amount.amount
            lines.append(
                self.posting.InvoiceLine(
                    item_id=self.item(line),
                    quantity=quantity,
                    unit_price=_money(unit, currency),
                    description=str(line.get("description") or "")[:4000],
                )
            )
        discount = sum(
            (int(d.get("amount") or 0) for d in invoice.get("total_discount_amounts") or []), 0
        )
        charge = self.world.stripe.get("charges", {}).get(str(invoice.get("charge") or ""))
        issued = (invoice.get("status_transitions") or {}).get("finalized_at") or invoice["created"]
        due = invoice.get("due_date")
        body: Mapping[str, Any] = self.posting.invoice(
            customer_id=customer,
            lines=lines,
            currency=currency,
            txn_date=_day(issued),
            due_date=None if due is None else _day(due),
            doc_number=invoice.get("number"),
            discount=_money(discount, currency) if discount else None,
            tax=_money(invoice.get("tax"), currency) if invoice.get("tax") else None,
            home_currency=self.options.home_currency,
            exchange_rate=self.rate(currency, (charge or {}).get("balance_transaction")),
            memo=stripe_note(str(invoice["id"])),
        )
        return body

    def payment(self, charge: Mapping[str, Any]) -> Mapping[str, Any]:
        currency = str(charge["currency"]).upper()
        invoice_id = str(charge["invoice"])
        invoice = self.world.stripe.get("invoices", {}).get(invoice_id)
        if invoice is None:
            raise _Wait("the charge's invoice has not landed yet")
        remote = self.world.remote_id(DOCUMENT_ENTITY, invoice_id, "Invoice")
        if remote is None:
            raise _Wait("invoice not in QuickBooks yet")
        body = dict(
            self.posting.payment(
                customer_id=self.customer(charge.get("customer")),
                invoice_id=remote,
                amount=_money(charge["amount"], currency),
                txn_date=_day(charge["created"]),
                accounts=self.accounts_map(),
                home_currency=self.options.home_currency,
                exchange_rate=self.rate(currency, charge.get("balance_transaction")),
                reference=str(charge["id"])[-21:],
            )
        )
        body["PrivateNote"] = stripe_note(str(charge["id"]))
        return body

    def journal(
        self, txn: Mapping[str, Any], amount: int, role: str, description: str
    ) -> Mapping[str, Any]:
        currency = str(txn["currency"]).upper()
        accounts = self.posting.AccountsMap(
            clearing=self.account("clearing"),
            bank=self.account("bank"),
            fees_expense=self.account(role),
        )
        body = dict(
            self.posting.fee_journal_entry(
                fee=_money(amount, currency),
                txn_date=_day(txn["created"]),
                accounts=accounts,
                description=description,
                home_currency=self.options.home_currency,
                exchange_rate=self.rate(currency, txn["id"]),
            )
        )
        body["PrivateNote"] = stripe_note(str(txn["id"]))
        return body

    def refund(self, refund: Mapping[str, Any]) -> Mapping[str, Any]:
        currency = str(refund["currency"]).upper()
        charge = self.world.stripe.get("charges", {}).get(str(refund.get("charge") or ""))
        if charge is None:
            raise _Wait("the refunded charge has not landed yet")
        invoice = self.world.stripe.get("invoices", {}).get(str(charge.get("invoice") or ""))
        first = ((invoice or {}).get("lines") or {}).get("data") or [{}]
        line = self.posting.InvoiceLine(
            item_id=self.item(first[0]),
            quantity=1,
            unit_price=_money(refund["amount"], currency),
            description=f"Refund of {charge['id']}",
        )
        body = dict(
            self.posting.refund_receipt(
                customer_id=self.customer(charge.get("customer")),
                lines=[line],
                currency=currency,
                txn_date=_day(refund["created"]),
                accounts=self.accounts_map(),
                home_currency=self.options.home_currency,
                exchange_rate=self.rate(currency, refund.get("balance_transaction")),
            )
        )
        body["PrivateNote"] = stripe_note(str(refund["id"]))
        return body

    def payout(self, payout: Mapping[str, Any]) -> Mapping[str, Any]:
        currency = str(payout["currency"]).upper()
        body = dict(
            self.posting.payout_deposit(
                amount=_money(payout["amount"], currency),
                txn_date=_day(payout.get("arrival_date") or payout["created"]),
                accounts=self.accounts_map(),
                description=f"Stripe payout {payout['id']}",
                home_currency=self.options.home_currency,
                exchange_rate=self.rate(currency, payout.get("balance_transaction")),
            )
        )
        body["PrivateNote"] = stripe_note(str(payout["id"]))
        return body

    # -- the plan --------------------------------------------------------------------------

    def run(self) -> None:
        stripe = self.world.stripe
        for invoice in _by_created(stripe.get("invoices", {})):
            if invoice.get("status") not in _POSTED_INVOICE_STATUSES:
                self.report.skipped[f"invoice {invoice.get('status')}"] += 1
                continue
            if not invoice.get("total"):
                self.report.skipped["invoice with zero total"] += 1
                continue
            self.post(
                "invoice",
                str(invoice["id"]),
                "Invoice",
                lambda invoice=invoice: self.invoice(invoice),
                amendable=True,
            )
        for charge in _by_created(stripe.get("charges", {})):
            if charge.get("status") != "succeeded":
                self.report.skipped["charge not succeeded"] += 1
                continue
            if not charge.get("invoice"):
                self.report.skipped["charge without invoice"] += 1
                continue
            self.post(
                "payment",
                str(charge["id"]),
                "Payment",
                lambda charge=charge: self.payment(charge),
            )
        self.run_balance()

    def run_balance(self) -> None:
        """Fees, disputes, refunds and payouts: the movements of Stripe's balance."""
        stripe = self.world.stripe
        for txn in _by_created(stripe.get("balance_transactions", {})):
            fee = int(txn.get("fee") or 0)
            category = txn.get("reporting_category") or txn.get("type")
            if category == "dispute":
                self.post(
                    "dispute",
                    str(txn["id"]),
                    "JournalEntry",
                    lambda txn=txn: self.journal(
                        txn, -int(txn["net"]), "disputes", f"Stripe dispute {txn.get('source')}"
                    ),
                )
            elif fee > 0:
                self.post(
                    "fee",
                    str(txn["id"]),
                    "JournalEntry",
                    lambda txn=txn, fee=fee: self.journal(
                        txn, fee, "fees", f"Stripe fees {txn.get('source')}"
                    ),
                )
        for refund in _by_created(stripe.get("refunds", {})):
            if refund.get("status") != "succeeded":
                self.report.skipped["refund not succeeded"] += 1
                continue
            self.post(
                "refund",
                str(refund["id"]),
                "RefundReceipt",
                lambda refund=refund: self.refund(refund),
            )
        for payout in _by_created(stripe.get("payouts", {})):
            if payout.get("status") in ("failed", "canceled"):
                self.report.skipped[f"payout {payout.get('status')}"] += 1
                continue
            self.post(
                "payout",
                str(payout["id"]),
                "Deposit",
                lambda payout=payout: self.payout(payout),
            )


def _by_created(objects: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(objects.values(), key=lambda o: (int(o.get("created") or 0), str(o["id"])))


_STRIPE_OBJECT = {
    "invoice": "invoices",
    "payment": "charges",
    "refund": "refunds",
    "payout": "payouts",
    "fee": "balance_transactions",
    "dispute": "balance_transactions",
}


def _store(conn: Connection, planner: _Planner, now: datetime) -> None:
    report = planner.report
    report.queued = enqueue(conn, [doc.planned_write() for doc in report.documents], now=now)
    crash_point("ledger.enqueue")
    for kind, stripe_id, reason, payload in planner.quarantine:
        quarantine_record(
            conn,
            system="stripe",
            object_name=_STRIPE_OBJECT[kind],
            external_id=stripe_id,
            stage=QuarantineStage.PLAN.value,
            reason=f"ledger: {reason}",
            payload=payload,
            now=now,
        )
    # A document that could be built now no longer needs its earlier quarantine row.
    for kind, stripe_id in planner.fine:
        conn.execute(
            update(_QUARANTINE)
            .where(
                _QUARANTINE.c.system == "stripe",
                _QUARANTINE.c.object == _STRIPE_OBJECT[kind],
                _QUARANTINE.c.external_id == stripe_id,
                _QUARANTINE.c.stage == QuarantineStage.PLAN.value,
                _QUARANTINE.c.resolved_at.is_(None),
            )
            .values(resolved_at=now, updated_at=now)
        )


def plan_ledger(
    store: Store | Engine,
    mappings: MappingSet,
    *,
    now: datetime,
    options: LedgerOptions | None = None,
    dry_run: bool = False,
) -> LedgerPlanReport:
    """Queue the QuickBooks documents that post what Stripe landed, each exactly once.

    Args:
        store: the store (or its engine).
        mappings: the loaded mappings (``accounts.yaml`` roles and ``products.yaml`` items).
        now: the time of the plan (timezone-aware UTC).
        options: home currency and rate table (USD and no table by default).
        dry_run: compute and report only.

    Returns:
        The documents wanted, what waits and why, and what was quarantined.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be timezone-aware"
        raise ValueError(msg)
    started = time.perf_counter()
    engine = store.engine if isinstance(store, Store) else store
    with engine.connect() as conn:
        world = load_world(conn)
    planner = _Planner(world, mappings, options or LedgerOptions())
    planner.run()
    if not dry_run:
        with for_writing(engine).begin() as conn:
            _store(conn, planner, now)
        crash_point("ledger.committed")
    report = planner.report
    report.seconds = time.perf_counter() - started
    _log.info("ledger.planned", **report.as_dict())
    return report
