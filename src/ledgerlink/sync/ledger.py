"""Ledger posting: Stripe invoices, charges, refunds, credit notes, fees, disputes and payouts
-> QuickBooks.

:func:`plan_ledger` reads what the Stripe connector landed (``invoices``, ``charges``,
``refunds``, ``credit_notes``, ``payouts``, ``balance_transactions``, ``payout_transactions``)
and queues, in one transaction, the
QuickBooks documents that put them in the books (see ``docs/ledger.md``):

=====================  =============================================================
Stripe                 QuickBooks
=====================  =============================================================
finalized invoice      Invoice for the QuickBooks customer of the same golden customer
invoice voided later   the same Invoice voided (``operation=void``)
succeeded charge       Payment into the clearing account, applied to that invoice, or
                       unapplied (credit on the account) for a charge without invoice
charge's fee           JournalEntry: debit fees, credit clearing
refund                 RefundReceipt paid out of the clearing account
credit note            CreditMemo for what Stripe did not refund; on an open invoice a
                       zero Payment applies it; voided later, it is unapplied and emptied
dispute (adjustment)   JournalEntry: debit disputes, credit clearing (amount and fee)
payout                 Deposit into the bank account from the clearing account
=====================  =============================================================

**Exactly once.** Each document is an outbox row with ``entity_kind = "ledger"`` and the
Stripe object id as ``entity_id``, keyed by (target, object, action, Stripe id, content).
A Stripe object whose document is queued or sent, or whose document already landed from
QuickBooks carrying ``stripe:<id>`` in its ``PrivateNote``, is not planned again; an
invoice amended after it was posted is updated in place, never posted twice.

**Waiting.** A document whose customer, invoice or item is not in QuickBooks yet is left for
the next cycle (the customer planner creates customers; items, and a customer's QuickBooks
customer in another currency, are created here: QuickBooks keeps one currency per customer)
and counted in :attr:`LedgerPlanReport.waiting` with the reason.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

from sqlalchemy import select, update
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
from ledgerlink.sync._landed import LinkRow
from ledgerlink.sync._ledger_reconcile import PayoutReconciliation, reconcile, tie_payout
from ledgerlink.sync._ledger_world import (
    CUSTOMER_ENTITY,
    CUSTOMER_FIELDS,
    DOCUMENT_ENTITY,
    ITEM_ENTITY,
    KeptLedgerWorld,
    LedgerRow,
    LedgerWorld,
    currency_customer,
    load_world,
    stripe_note,
)
from ledgerlink.sync._packed import PackedPayloads, pack, unpack
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key

__all__ = [
    "CUSTOMER_ENTITY",
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
#: Waiting reasons the send of another ledger document settles (:attr:`waiting_on_sends`).
_SETTLED_BY_A_SEND = ("invoice not in QuickBooks yet", "credit memo not in QuickBooks yet")
_BEING_CREATED = "being created in QuickBooks"
NO_QUICKBOOKS_CUSTOMER = "customer not in QuickBooks yet"
"""Waiting reason of a document whose customer has no QuickBooks customer linked: settled once
the customer planner's create of one is sent (:attr:`LedgerPlanReport.waiting_on_customers`)."""
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
        kind: ``invoice``, ``void``, ``payment``, ``fee``, ``refund``, ``credit_note``,
            ``credit_application``, ``dispute``, ``dispute_reversal``, ``payout``, ``item`` or
            ``customer``.
        stripe_id: the Stripe object posted (the item's name for ``item``,
            ``<currency>:<customer id>`` for ``customer``).
        object: the QuickBooks entity.
        action: create; update of an amended invoice or of a voided credit note's memo; void
            of a voided invoice; delete of a voided credit note's application.
        packed: the QuickBooks JSON (amounts as exact JSON numbers) as bytes; a first plan
            of a large account wants hundreds of thousands of documents at once (see
            :attr:`payload`).
        remote_id: the QuickBooks id updated (None for a create).
        idempotency_key: the outbox key.
    """

    kind: str
    stripe_id: str
    object: str
    action: WriteAction
    packed: bytes
    remote_id: str | None
    idempotency_key: str

    @property
    def payload(self) -> dict[str, Any]:
        """The QuickBooks JSON (a fresh dict)."""
        return unpack(self.packed)

    def planned_write(self) -> PlannedWrite:
        """The outbox row of this document."""
        op = WriteOp(
            idempotency_key=self.idempotency_key,
            object=self.object,
            action=self.action,
            payload=self.payload,
            remote_id=self.remote_id,
        )
        entity = {"item": ITEM_ENTITY, "customer": CUSTOMER_ENTITY}.get(self.kind, DOCUMENT_ENTITY)
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
        unchanged: Stripe objects a kept plan did not look at again: their outcome was final
            (posted, or skipped for a reason of their own) and nothing of theirs changed.
        seconds: wall time.
    """

    documents: list[LedgerDocument] = field(default_factory=list)
    queued: int = 0
    posted: int = 0
    waiting: Counter[str] = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    seconds: float = 0.0

    @property
    def waiting_on_sends(self) -> int:
        """Documents waiting for another QuickBooks document, item or customer the ledger
        creates: the send of that one settles them (its id is in the outbox once sent), so a
        plan right after the push can post them without waiting for the next pull."""
        return sum(
            count
            for reason, count in self.waiting.items()
            if reason.startswith(_SETTLED_BY_A_SEND) or reason.endswith(_BEING_CREATED)
        )

    @property
    def waiting_on_customers(self) -> int:
        """Documents waiting for their customer's QuickBooks customer, which the customer
        planner creates: once it is sent, its currency and name are known (as sent)."""
        return self.waiting.get(NO_QUICKBOOKS_CUSTOMER, 0)

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
            "unchanged": self.unchanged,
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

    def __init__(
        self,
        world: LedgerWorld,
        mappings: MappingSet,
        options: LedgerOptions,
        sending: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.world = world
        self.mappings = mappings
        self.options = options
        self.sending = sending or {}
        """QuickBooks customer id -> the fields the customer planner sends it in this pass."""
        self.posting = _posting()
        self.report = LedgerPlanReport()
        self.quarantine: list[tuple[str, str, str, Mapping[str, Any]]] = []
        self.fine: list[tuple[str, str]] = []
        self._item_creates: set[str] = set()
        self._customer_creates: set[str] = set()
        """QuickBooks id -> currency of the customers in other currencies the ledger made."""
        self._wake: tuple[str, ...] = ()
        """What the document being built waits on, when a wait names it: the Stripe ids
        whose change (:attr:`LedgerWorld.touched`) may end the wait."""
        self._waited: set[str] = set()
        """Stripe ids this plan found waiting (counted as they were)."""

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

    def customer(self, stripe_customer: Any, currency: str) -> str:
        """The QuickBooks customer a ``currency`` document of ``stripe_customer`` belongs to.

        QuickBooks keeps one currency per customer and refuses a document in another, so this
        is the customer's linked QuickBooks customer in that currency (one without
        ``CurrencyRef`` is in the home currency). When there is none, the ledger creates one,
        "<name> (<currency>)" with the company, e-mail, phone and address of the customer's
        QuickBooks customer, linked to the same customer once sent; the document waits.
        """
        golden = self.world.customer_of.get(("stripe", "customers", str(stripe_customer)))
        if golden is None:
            raise self._waiting(stripe_customer, "Stripe customer not matched to a customer yet")
        linked = self.world.quickbooks_customers.get(golden) or []
        if not linked:
            raise self._waiting(stripe_customer, NO_QUICKBOOKS_CUSTOMER)
        currency = currency.upper()
        home = self.options.home_currency.upper()
        known = [self._currency_of(found, home) for found in linked]
        for found, its in zip(linked, known, strict=True):
            if its == currency:
                return found
        if None in known:
            # A linked customer not landed yet (just created) may be the one in this currency:
            # posting to another, or making one, waits until its currency is known.
            raise self._waiting(stripe_customer, "customer's QuickBooks record not landed yet")
        entity_id = currency_customer(currency, golden)
        key = (CUSTOMER_ENTITY, entity_id, "Customer")
        made = self.world.created.get(key)
        if made is not None:
            return made
        if entity_id not in self._customer_creates and key not in self.world.rows:
            name, fields = self._name_of(linked[0])
            if not name:
                raise self._waiting(stripe_customer, "customer's QuickBooks record not landed yet")
            self._add(
                "customer",
                stripe_id=entity_id,
                obj="Customer",
                action=WriteAction.CREATE,
                payload={
                    **fields,
                    "DisplayName": f"{name} ({currency})"[:500],
                    "CurrencyRef": {"value": currency},
                },
                remote_id=None,
            )
            self._customer_creates.add(entity_id)
        raise _Wait(f"customer in {currency} being created in QuickBooks")

    def _name_of(self, remote_id: str) -> tuple[str | None, Mapping[str, Any]]:
        """The name and company fields of QuickBooks customer ``remote_id``: as landed (with
        the fields the customer planner sends it in this pass over them), else as the
        customer planner sent it to create it."""
        sent = {k: v for k, v in self.sending.get(remote_id, {}).items() if k in CUSTOMER_FIELDS}
        if remote_id in self.world.customer_name:  # landed
            fields = self.world.customer_fields.get(remote_id, {})
            # An update of this pass, not landed yet: the new customer takes its values, not
            # the ones it replaces (else the next plan updates the new customer to them).
            return self.world.customer_name[remote_id], {**fields, **sent} if sent else fields
        made = self.world.made_customers.get(remote_id)
        return (None, {}) if made is None else (made.name, made.fields)

    def _currency_of(self, remote_id: str, home: str) -> str | None:
        """The currency of QuickBooks customer ``remote_id``: as landed (the home currency
        without ``CurrencyRef``), as the customer planner created it (QuickBooks gives a
        customer created without ``CurrencyRef`` the home currency), or that of a customer in
        another currency the ledger created; None while none is known."""
        if remote_id in self.world.customer_name:  # landed
            return self.world.customer_currency.get(remote_id, home)
        made = self.world.made_customers.get(remote_id)
        if made is not None:
            return made.currency or home
        return self.world.made_in.get(remote_id)

    def posted_customer(self, stripe_id: str, obj: str) -> str | None:
        """The ``CustomerRef`` a posted document was sent with (what links to it must use)."""
        row = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, obj))
        if row is None:
            return None
        ref = row.payload.get("CustomerRef")
        return str(ref["value"]) if isinstance(ref, Mapping) and ref.get("value") else None

    def rate(self, currency: str, txn_id: Any = None) -> Decimal | None:
        """Home units per unit of ``currency``: Stripe's rate, else the table, else an error."""
        home = self.options.home_currency.upper()
        if currency.upper() == home:
            return None
        txn = self._stripe_object("balance_transactions", str(txn_id or ""))
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
            LedgerDocument(kind, stripe_id, obj, action, pack(body), remote_id, key)
        )

    def post(
        self,
        kind: str,
        stripe_id: str,
        obj: str,
        build: Any,
        *,
        amendable: bool = False,
        sources: tuple[Any, ...] = (),
    ) -> None:
        """Plan one document unless it is already posted; record waits and quarantines.

        ``sources``: the Stripe ids the document is built from, when a missing exchange rate
        is all that can hold it (their ``changed_at`` tells whether a held one can post now).
        """
        existing = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, obj))
        landed = self.world.in_quickbooks.get((obj, stripe_id))
        voided = (existing is not None and existing.action == WriteAction.VOID.value) or (
            (obj, stripe_id) in self.world.voided
        )
        if (existing is not None or landed is not None) and (
            not amendable or voided or self._unchanged(obj, stripe_id, existing, sources)
        ):
            self.report.posted += 1
            self.world.final.add(stripe_id)
            return
        payload = self._build(kind, stripe_id, obj, build, sources)
        if payload is None:
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
        same = (
            remote is not None
            and existing is not None
            and canonical_json(_jsonable(payload)) == canonical_json(existing.payload)
        )
        if (
            same
            and existing is not None
            and self._settle(obj, stripe_id, existing, payload, sources)
        ):
            # What the next plan would find from the memo (unchanged, so final), known now:
            # after a rebuild of the world, one walk settles the posted invoices, not two.
            self.world.final.add(stripe_id)
        if remote is None or same:
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

    def _build(
        self, kind: str, stripe_id: str, obj: str, build: Any, sources: tuple[Any, ...]
    ) -> Mapping[str, Any] | None:
        """The document's payload; None when it waits or is held (recorded in the report)."""
        inputs = (
            (*(self.world.changed_at.get(str(i)) for i in sources), self.world.references)
            if sources
            else None
        )
        held = self.world.held.get((obj, stripe_id))
        if held is not None and held[0] == inputs:
            self._hold(kind, stripe_id, held[1])  # built from the same, it fails the same way
            self.world.final.add(stripe_id)
            return None
        self._take_wake()
        try:
            payload: Mapping[str, Any] = build()
        except _Wait as wait:
            self.report.waiting[str(wait)] += 1
            wake = self._take_wake()
            if wake:
                # Final until what it waits on is touched: a kept plan does not build it
                # again each time only to find it waiting for the same thing.
                self.world.final.add(stripe_id)
                self.world.waits[stripe_id] = str(wait)
                self._waited.add(stripe_id)
                self._depends(stripe_id, wake)
            else:
                self.world.final.discard(stripe_id)
            return None
        except MissingRateError as missing:
            self._hold(kind, stripe_id, str(missing))
            if inputs is not None:
                # Held until what it is built from changes: looked at again only then.
                self.world.held[(obj, stripe_id)] = (inputs, str(missing))
                self.world.final.add(stripe_id)
                self._depends(stripe_id, sources)
            return None
        self.world.held.pop((obj, stripe_id), None)
        return payload

    def _waiting(self, on: Any, reason: str) -> _Wait:
        """The wait of a document for Stripe object ``on``: a Stripe customer (touched when
        its QuickBooks customer may have changed) or an invoice (touched when it lands or its
        document is sent). A kept plan looks at the document again only then."""
        self._wake = (str(on),) if on else ()
        return _Wait(reason)

    def _take_wake(self) -> tuple[str, ...]:
        """What the last build's wait named (see :attr:`_wake`), cleared for the next."""
        wake, self._wake = self._wake, ()
        return wake

    def _skip(self, stripe_id: str, reason: str) -> None:
        """An object that posts nothing, for a reason of its own (final until it changes)."""
        self.report.skipped[reason] += 1
        self.world.final.add(stripe_id)

    def _stripe_object(self, obj: str, stripe_id: str) -> Mapping[str, Any] | None:
        """The landed Stripe object ``stripe_id`` of kind ``obj`` (``invoices``...), or None."""
        objects = self.world.stripe.get(obj)
        return None if objects is None else objects.get(stripe_id)

    def _walk(self, objects: PackedPayloads | None) -> Iterator[Mapping[str, Any]]:
        """The objects to look at, oldest first: all, but what a kept world knows is final
        and untouched since."""
        if objects is None:
            return iter(())
        final = self.world.final
        if not final:
            return objects.by_created()
        touched = self.world.touched
        dependents = self.world.dependents
        again = {d for t in touched if t in dependents for d in dependents[t]}
        every = (o.keys() for o in self.world.stripe.values())
        ids = final.open_in(objects.keys(), every) | ((touched | again) & objects.keys())
        self.report.unchanged += len(objects) - len(ids)
        waits = self.world.waits
        for stripe_id in ids & waits.keys():
            del waits[stripe_id]  # looked at again: waits anew or not
        return objects.by_created(ids)

    def _hold(self, kind: str, stripe_id: str, reason: str) -> None:
        self.report.quarantined.append((stripe_id, reason))
        self.quarantine.append((kind, stripe_id, reason, {"kind": kind}))

    def _unchanged(
        self, obj: str, stripe_id: str, existing: LedgerRow | None, sources: tuple[Any, ...]
    ) -> bool:
        """An amendable document last found equal to its row, unchanged since (no rebuild)."""
        return existing is not None and self.world.settled.get((obj, stripe_id)) == (
            existing.id,
            self._inputs(stripe_id, sources),
        )

    def _depends(self, stripe_id: str, sources: tuple[Any, ...]) -> None:
        """Note that the document of ``stripe_id`` is built from ``sources``: a change to one
        of them makes a kept plan look at it again, though it is final."""
        for source in sources:
            if source and source != stripe_id:
                self.world.dependents.setdefault(str(source), set()).add(stripe_id)

    def _inputs(self, stripe_id: str, sources: tuple[Any, ...]) -> tuple[Any, ...]:
        """What a settled document stays equal to its row for: the ``changed_at`` of its
        Stripe object and of those it is built from, and :attr:`LedgerWorld.references`."""
        changed = self.world.changed_at
        return (
            changed.get(stripe_id),
            *(changed.get(str(i)) for i in sources),
            self.world.references,
        )

    def _settle(
        self,
        obj: str,
        stripe_id: str,
        existing: LedgerRow,
        payload: Mapping[str, Any],
        sources: tuple[Any, ...],
    ) -> bool:
        """Remember a document found equal to its row, so that while its Stripe object, its
        row, the objects it is built from (``sources``) and the QuickBooks accounts and items
        stay, it is taken as equal without being built again. What else it is built from is
        fixed once posted (the customer it was posted to), except the exchange rate of a
        foreign-currency document: its charge's balance transaction (landing later, among
        its sources, which it then depends on) or the rate table (of the options the memo is
        kept for). False when it cannot be remembered (a foreign-currency document with no
        sources to follow)."""
        currency = (payload.get("CurrencyRef") or {}).get("value")
        if currency is not None and str(currency).upper() != self.options.home_currency.upper():
            if not sources:
                return False
            self._depends(stripe_id, sources)
        self.world.settled[(obj, stripe_id)] = (existing.id, self._inputs(stripe_id, sources))
        return True

    # -- documents -------------------------------------------------------------------------

    def invoice(self, invoice: Mapping[str, Any]) -> Mapping[str, Any]:
        currency = str(invoice["currency"]).upper()
        # A posted invoice stays with the QuickBooks customer it was posted to: an amendment
        # never moves it (its payments are applied there).
        customer = self.posted_customer(str(invoice["id"]), "Invoice") or self.customer(
            invoice.get("customer"), currency
        )
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
        charge = self._stripe_object("charges", str(invoice.get("charge") or ""))
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
        """A Payment applied to the charge's invoice, or unapplied for a one-off charge."""
        currency = str(charge["currency"]).upper()
        remote: str | None = None
        customer: str | None = None
        if charge.get("invoice"):
            invoice_id = str(charge["invoice"])
            invoice = self._stripe_object("invoices", invoice_id)
            if invoice is None:
                raise self._waiting(invoice_id, "the charge's invoice has not landed yet")
            remote = self.world.remote_id(DOCUMENT_ENTITY, invoice_id, "Invoice")
            if remote is None:
                raise self._waiting(invoice_id, "invoice not in QuickBooks yet")
            customer = self.posted_customer(invoice_id, "Invoice")
        body = dict(
            self.posting.payment(
                customer_id=customer or self.customer(charge.get("customer"), currency),
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
        self,
        txn: Mapping[str, Any],
        amount: int,
        role: str,
        description: str,
        *,
        reverse: bool = False,
    ) -> Mapping[str, Any]:
        """A JournalEntry of ``amount`` from clearing to ``role``'s account (debit ``role``,
        credit clearing); ``reverse`` the other way (debit clearing, credit ``role``)."""
        currency = str(txn["currency"]).upper()
        clearing, other = self.account("clearing"), self.account(role)
        if reverse:
            clearing, other = other, clearing
        accounts = self.posting.AccountsMap(
            clearing=clearing, bank=self.account("bank"), fees_expense=other
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
        charge = self._stripe_object("charges", str(refund.get("charge") or ""))
        if charge is None:
            raise _Wait("the refunded charge has not landed yet")
        invoice = self._stripe_object("invoices", str(charge.get("invoice") or ""))
        first = ((invoice or {}).get("lines") or {}).get("data") or [{}]
        line = self.posting.InvoiceLine(
            item_id=self.item(first[0]),
            quantity=1,
            unit_price=_money(refund["amount"], currency),
            description=f"Refund of {charge['id']}",
        )
        body = dict(
            self.posting.refund_receipt(
                customer_id=self.customer(charge.get("customer"), currency),
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

    def void_invoice(self, invoice: Mapping[str, Any]) -> None:
        """Void the QuickBooks Invoice of a Stripe invoice voided after it was posted.

        QuickBooks keeps a voided invoice (same Id and number, amounts 0, "Voided" in its note),
        as Stripe keeps a void invoice. The void is one outbox row keyed by the invoice alone,
        so a retried or re-planned void is the same row, and a voided invoice is never voided
        again. An invoice never posted stays out of the books.
        """
        stripe_id = str(invoice["id"])
        existing = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, "Invoice"))
        remote = self.world.remote_id(DOCUMENT_ENTITY, stripe_id, "Invoice")
        if existing is None and remote is None:
            self._skip(stripe_id, "invoice void")
            return
        if (existing is not None and existing.action == WriteAction.VOID.value) or (
            ("Invoice", stripe_id) in self.world.voided
        ):
            self.report.posted += 1
            self.world.final.add(stripe_id)
            return
        if existing is not None and existing.status != "done":
            self.report.waiting[
                f"invoice {existing.action} {existing.status}; its void follows"
            ] += 1
            return
        if remote is None:  # pragma: no cover - a done row always has the QuickBooks id
            self.report.waiting["invoice not in QuickBooks yet; its void follows"] += 1
            return
        self._add(
            "void",
            stripe_id=stripe_id,
            obj="Invoice",
            action=WriteAction.VOID,
            payload={},
            remote_id=remote,
        )

    def refunded(self, note: Mapping[str, Any]) -> int | None:
        """What of a credit note Stripe refunded (None: its refund has not landed yet)."""
        refunds = note.get("refunds") or []
        if refunds:
            return sum(int(r.get("amount_refunded") or 0) for r in refunds)
        refund_id = note.get("refund")
        if not refund_id:
            return 0
        refund = self._stripe_object("refunds", str(refund_id))
        if refund is None:
            return None
        return min(int(refund.get("amount") or 0), int(note.get("total") or 0))

    def _credit_line(
        self, line: Mapping[str, Any], invoice_lines: Mapping[str, Mapping[str, Any]], currency: str
    ) -> Any:
        source = invoice_lines.get(str(line.get("invoice_line_item") or "")) or {
            "description": line.get("description")
        }
        amount = _money(line.get("amount"), currency)
        quantity = int(line.get("quantity") or 1)
        unit = line.get("unit_amount")
        if unit is None or int(unit) * quantity != amount.amount:
            quantity, unit = 1, amount.amount
        return self.posting.InvoiceLine(
            item_id=self.item(source),
            quantity=quantity,
            unit_price=_money(unit, currency),
            description=str(line.get("description") or "")[:4000],
        )

    def _credit_invoice(self, note: Mapping[str, Any]) -> Mapping[str, Any]:
        invoice = self._stripe_object("invoices", str(note.get("invoice") or ""))
        if invoice is None:
            raise _Wait("the credit note's invoice has not landed yet")
        return invoice

    def _invoice_rate(self, invoice: Mapping[str, Any], currency: str) -> Decimal | None:
        """The invoice's rate (its charge's balance transaction), so the receivable clears."""
        charge = self._stripe_object("charges", str(invoice.get("charge") or ""))
        return self.rate(currency, (charge or {}).get("balance_transaction"))

    def credit_memo(self, note: Mapping[str, Any], credit: int) -> Mapping[str, Any]:
        """The CreditMemo of a credit note's ``credit`` (its total less what Stripe refunded).

        With nothing refunded the memo has the credit note's lines, discount and tax; when part
        was refunded (the refund posts its own RefundReceipt) it is one line for the rest, on
        the item of the credited line, so no amount is counted twice.
        """
        currency = str(note["currency"]).upper()
        customer = self.customer(note.get("customer"), currency)
        invoice = self._credit_invoice(note)
        invoice_data = (invoice.get("lines") or {}).get("data") or []
        invoice_lines = {str(line.get("id")): line for line in invoice_data}
        note_lines = (note.get("lines") or {}).get("data") or []
        total = int(note.get("total") or 0)
        discount = int(note.get("discount_amount") or 0)
        tax = total - int(note.get("subtotal") or total) + discount
        whole = (
            credit == total
            and note_lines
            and tax >= 0
            and sum(int(line.get("amount") or 0) for line in note_lines) - discount + tax == total
        )
        if whole:
            lines = [self._credit_line(line, invoice_lines, currency) for line in note_lines]
        else:
            discount = tax = 0
            first = note_lines[0] if note_lines else {}
            source = invoice_lines.get(str(first.get("invoice_line_item") or "")) or (
                invoice_data[0] if invoice_data else {"description": first.get("description")}
            )
            lines = [
                self.posting.InvoiceLine(
                    item_id=self.item(source),
                    quantity=1,
                    unit_price=_money(credit, currency),
                    description=f"Credit note {note.get('number') or note['id']}",
                )
            ]
        body: Mapping[str, Any] = self.posting.credit_memo(
            customer_id=customer,
            lines=lines,
            currency=currency,
            txn_date=_day(note.get("effective_at") or note["created"]),
            home_currency=self.options.home_currency,
            exchange_rate=self._invoice_rate(invoice, currency),
            doc_number=note.get("number"),
            discount=_money(discount, currency) if discount else None,
            tax=_money(tax, currency) if tax else None,
            memo=stripe_note(str(note["id"])),
        )
        return body

    def credit_application(self, note: Mapping[str, Any], credit: int) -> Mapping[str, Any]:
        """The zero Payment applying a pre-payment credit note's memo to its invoice."""
        currency = str(note["currency"]).upper()
        invoice = self._credit_invoice(note)
        invoice_id = str(invoice["id"])
        invoice_remote = self.world.remote_id(DOCUMENT_ENTITY, invoice_id, "Invoice")
        if invoice_remote is None:
            raise _Wait("invoice not in QuickBooks yet")
        memo_remote = self.world.remote_id(DOCUMENT_ENTITY, str(note["id"]), "CreditMemo")
        if memo_remote is None:
            raise _Wait("credit memo not in QuickBooks yet")
        customer = self.posted_customer(str(note["id"]), "CreditMemo") or self.customer(
            note.get("customer"), currency
        )
        if self.posted_customer(invoice_id, "Invoice") not in (None, customer):
            raise _Wait("credit memo and invoice are on different QuickBooks customers")
        body = dict(
            self.posting.credit_application(
                customer_id=customer,
                invoice_id=invoice_remote,
                credit_memo_id=memo_remote,
                amount=_money(credit, currency),
                txn_date=_day(note.get("effective_at") or note["created"]),
                home_currency=self.options.home_currency,
                exchange_rate=self._invoice_rate(invoice, currency),
            )
        )
        body["PrivateNote"] = stripe_note(str(note["id"]))
        return body

    def run_credit_notes(self) -> None:
        """Credit notes: a CreditMemo for what was not refunded, applied while the invoice is
        open; a voided one is emptied in QuickBooks (see :meth:`void_credit_note`)."""
        notes = self.world.stripe.get("credit_notes")
        for note in notes.by_created() if notes is not None else ():
            stripe_id = str(note["id"])
            if note.get("status") == "void":
                self.void_credit_note(note)
                continue
            if note.get("status") != "issued":
                self.report.skipped[f"credit note {note.get('status')}"] += 1
                continue
            refunded = self.refunded(note)
            if refunded is None:
                self.report.waiting["the credit note's refund has not landed yet"] += 1
                continue
            credit = int(note.get("total") or 0) - refunded
            if credit <= 0:
                self.report.skipped["credit note refunded in full (its refund posts)"] += 1
                continue
            self.post(
                "credit_note",
                stripe_id,
                "CreditMemo",
                lambda note=note, credit=credit: self.credit_memo(note, credit),
            )
            if note.get("type") == "pre_payment":
                self.post(
                    "credit_application",
                    stripe_id,
                    "Payment",
                    lambda note=note, credit=credit: self.credit_application(note, credit),
                )

    def void_credit_note(self, note: Mapping[str, Any]) -> None:
        """Empty the CreditMemo of a credit note voided after it was posted.

        The QuickBooks API voids invoices but not credit memos, so the hub does what a void
        does: first it deletes the zero Payment that applied the memo to its invoice (the
        invoice owes that amount again), then, once that is done, it updates the memo to zero
        with "Voided" before its note. Each step is one outbox row; a voided memo is left alone.
        """
        stripe_id = str(note["id"])
        memo_row = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, "CreditMemo"))
        memo_remote = self.world.remote_id(DOCUMENT_ENTITY, stripe_id, "CreditMemo")
        if memo_row is None and memo_remote is None:
            self.report.skipped["credit note void"] += 1
            return
        emptied = memo_row is not None and str(
            memo_row.payload.get("PrivateNote") or ""
        ).startswith("Voided")
        if emptied or ("CreditMemo", stripe_id) in self.world.voided:
            self.report.posted += 1
            return
        if memo_remote is None or (memo_row is not None and memo_row.status != "done"):
            self.report.waiting["credit memo being posted; its void follows"] += 1
            return
        if self._remove_application(stripe_id):
            return
        source = (
            memo_row.payload
            if memo_row is not None
            else self.world.landed_credit_memos.get(stripe_id)
        )
        if source is None:  # pragma: no cover - a landed memo always comes with its body
            self.report.waiting["credit memo body not landed yet"] += 1
            return
        self._add(
            "credit_note",
            stripe_id=stripe_id,
            obj="CreditMemo",
            action=WriteAction.UPDATE,
            payload=self.posting.zeroed(dict(source), stripe_note(stripe_id)),
            remote_id=memo_remote,
        )

    def _remove_application(self, stripe_id: str) -> bool:
        """Delete a voided credit note's application; True while it is not gone yet."""
        row = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, "Payment"))
        remote = self.world.remote_id(DOCUMENT_ENTITY, stripe_id, "Payment")
        if remote is None and row is None:
            return False
        if row is not None and row.action == WriteAction.DELETE.value:
            if row.status == "done":
                return False
            self.report.waiting["credit application being removed; the memo's void follows"] += 1
            return True
        if remote is None or (row is not None and row.status != "done"):
            self.report.waiting["credit application being posted; its removal follows"] += 1
            return True
        self._add(
            "credit_application",
            stripe_id=stripe_id,
            obj="Payment",
            action=WriteAction.DELETE,
            payload={},
            remote_id=remote,
        )
        return True

    # -- the plan --------------------------------------------------------------------------

    def run(self) -> None:
        stripe = self.world.stripe
        for invoice in self._walk(stripe.get("invoices")):
            if invoice.get("status") == "void":
                self.void_invoice(invoice)
                continue
            if invoice.get("status") not in _POSTED_INVOICE_STATUSES:
                self._skip(str(invoice["id"]), f"invoice {invoice.get('status')}")
                continue
            if not invoice.get("total"):
                self._skip(str(invoice["id"]), "invoice with zero total")
                continue
            charge = self._stripe_object("charges", str(invoice.get("charge") or "")) or {}
            self.post(
                "invoice",
                str(invoice["id"]),
                "Invoice",
                lambda invoice=invoice: self.invoice(invoice),
                amendable=True,
                sources=(invoice["id"], invoice.get("charge"), charge.get("balance_transaction")),
            )
        for charge in self._walk(stripe.get("charges")):
            if charge.get("status") != "succeeded":
                self._skip(str(charge["id"]), "charge not succeeded")
                continue
            if not charge.get("invoice") and not charge.get("customer"):
                # A guest payment has no customer to credit: QuickBooks needs CustomerRef.
                self._skip(str(charge["id"]), "charge without customer or invoice")
                continue
            self.post(
                "payment",
                str(charge["id"]),
                "Payment",
                lambda charge=charge: self.payment(charge),
                sources=(charge["id"], charge.get("balance_transaction"), charge.get("invoice")),
            )
        self.run_credit_notes()
        self.run_balance()
        for stripe_id, reason in self.world.waits.items():
            if stripe_id not in self._waited:  # not looked at again: it waits as it did
                self.report.waiting[reason] += 1

    def run_balance(self) -> None:
        """Fees, disputes, refunds and payouts: the movements of Stripe's balance."""
        stripe = self.world.stripe
        for txn in self._walk(stripe.get("balance_transactions")):
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
            elif category == "dispute_reversal" and int(txn.get("net") or 0) > 0:
                # A won dispute gives the funds back: the dispute's entry, reversed.
                self.post(
                    "dispute_reversal",
                    str(txn["id"]),
                    "JournalEntry",
                    lambda txn=txn: self.journal(
                        txn,
                        int(txn["net"]),
                        "disputes",
                        f"Stripe dispute won {txn.get('source')}",
                        reverse=True,
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
                    sources=(txn["id"],),
                )
            else:
                self.world.final.add(str(txn["id"]))  # moves no ledger document of its own
        for refund in self._walk(stripe.get("refunds")):
            if refund.get("status") != "succeeded":
                self._skip(str(refund["id"]), "refund not succeeded")
                continue
            self.post(
                "refund",
                str(refund["id"]),
                "RefundReceipt",
                lambda refund=refund: self.refund(refund),
            )
        for payout in self._walk(stripe.get("payouts")):
            if payout.get("status") in ("failed", "canceled"):
                self._skip(str(payout["id"]), f"payout {payout.get('status')}")
                continue
            self.post(
                "payout",
                str(payout["id"]),
                "Deposit",
                lambda payout=payout: self.payout(payout),
            )


_STRIPE_OBJECT = {
    "invoice": "invoices",
    "void": "invoices",
    "credit_note": "credit_notes",
    "credit_application": "credit_notes",
    "payment": "charges",
    "refund": "refunds",
    "payout": "payouts",
    "fee": "balance_transactions",
    "dispute": "balance_transactions",
    "dispute_reversal": "balance_transactions",
}


def _store(conn: Connection, planner: _Planner, now: datetime) -> None:
    report = planner.report
    report.queued = enqueue(conn, (doc.planned_write() for doc in report.documents), now=now)
    crash_point("ledger.enqueue")
    held = _open_plan_rows(
        conn,
        {stripe_id for _k, stripe_id, _r, _p in planner.quarantine}
        | {stripe_id for _k, stripe_id in planner.fine},
    )
    for kind, stripe_id, reason, payload in planner.quarantine:
        obj, text = _STRIPE_OBJECT[kind], f"ledger: {reason}"
        if held.get((obj, stripe_id), (None, None, None))[1:] == (text, payload):
            continue  # held already, for the same reason: nothing to write
        quarantine_record(
            conn,
            system="stripe",
            object_name=obj,
            external_id=stripe_id,
            stage=QuarantineStage.PLAN.value,
            reason=text,
            payload=payload,
            now=now,
        )
    _resolve_fine(conn, planner.fine, held, now)


_RESOLVE_BATCH = 500


def _open_plan_rows(
    conn: Connection, stripe_ids: set[str]
) -> dict[tuple[str, str], tuple[int, str, Any]]:
    """The open plan-stage quarantine rows of these Stripe objects: (object, id) -> (row id,
    reason, payload), read in chunks of ids on the quarantine's key."""
    found: dict[tuple[str, str], tuple[int, str, Any]] = {}
    ids = sorted(stripe_ids)
    for start in range(0, len(ids), _RESOLVE_BATCH):
        rows = conn.execute(
            select(
                _QUARANTINE.c.id,
                _QUARANTINE.c.object,
                _QUARANTINE.c.external_id,
                _QUARANTINE.c.reason,
                _QUARANTINE.c.payload,
            ).where(
                _QUARANTINE.c.system == "stripe",
                _QUARANTINE.c.external_id.in_(ids[start : start + _RESOLVE_BATCH]),
                _QUARANTINE.c.stage == QuarantineStage.PLAN.value,
                _QUARANTINE.c.resolved_at.is_(None),
            )
        )
        found.update({(r.object, r.external_id): (r.id, r.reason, r.payload) for r in rows})
    return found


def _resolve_fine(
    conn: Connection,
    fine: list[tuple[str, str]],
    held: Mapping[tuple[str, str], tuple[int, str, Any]],
    now: datetime,
) -> None:
    """Resolve the open plan-stage quarantine rows of documents that could be built now.

    A document that builds no longer needs its earlier quarantine row. Only the open rows
    (``held``) matched are resolved (by id, a few statements at most), instead of one UPDATE
    per document planned every pass.
    """
    ids = [
        held[key][0]
        for kind, stripe_id in fine
        if (key := (_STRIPE_OBJECT[kind], stripe_id)) in held
    ]
    for start in range(0, len(ids), _RESOLVE_BATCH):
        conn.execute(
            update(_QUARANTINE)
            .where(
                _QUARANTINE.c.id.in_(ids[start : start + _RESOLVE_BATCH]),
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
    kept: KeptLedgerWorld | None = None,
    links: Sequence[LinkRow] | None = None,
    landed: bool = True,
    sending: Mapping[str, Mapping[str, Any]] | None = None,
) -> LedgerPlanReport:
    """Queue the QuickBooks documents that post what Stripe landed, each exactly once.

    Args:
        store: the store (or its engine).
        mappings: the loaded mappings (``accounts.yaml`` roles and ``products.yaml`` items).
        now: the time of the plan (timezone-aware UTC).
        options: home currency and rate table (USD and no table by default).
        dry_run: compute and report only.
        kept: the world kept between plans of a long-running process (the daemon, a
            benchmark): only what changed since its last plan is read again. None reads
            everything.
        links: the linked records (:func:`~ledgerlink.sync._landed.read_links`), when the
            caller read them for several planners; None reads them.
        landed: with ``kept``, False plans from the landed records as the last plan read
            them, with the links and outbox read again (a cycle's follow-up right after its
            push, which lands nothing: what landed meanwhile waits for the next plan).
        sending: QuickBooks customer id -> the payload of the customer planner's update of it
            in this pass (sent or about to be, not landed yet): a customer the ledger makes in
            another currency copies the company fields from it over the landed ones.

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
    options = options or LedgerOptions()
    with engine.connect() as conn:
        world = (
            load_world(conn, links) if kept is None else kept.refresh(conn, links, landed=landed)
        )
    if world.settled_for != (id(mappings), options):
        world.settled, world.held, world.dependents = {}, {}, {}
        world.final.clear()
        world.waits.clear()
        world.settled_for = (id(mappings), options)
    if world.final_references != world.references:
        world.final.clear()  # amendable documents are compared again with new accounts or items
        world.waits.clear()
        world.final_references = world.references
    planner = _Planner(world, mappings, options, sending)
    planner.run()
    if not dry_run:
        with for_writing(engine).begin() as conn:
            _store(conn, planner, now)
        crash_point("ledger.committed")
    report = planner.report
    report.seconds = time.perf_counter() - started
    _log.info("ledger.planned", **report.as_dict())
    return report
