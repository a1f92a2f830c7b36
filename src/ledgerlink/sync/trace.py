"""Follow one deal through every system: quote -> subscription -> invoice -> cash -> books.

:func:`trace` starts from any record of the chain (``system:object:id``) or from a golden
customer, climbs to the top of its chain (the Salesforce opportunity or quote, else the Stripe
subscription or invoice), then walks down and returns a tree of :class:`TraceStep`:

    Salesforce Opportunity -> Salesforce Quote -> Stripe subscription -> Stripe invoice
      -> QuickBooks Invoice; Stripe charge -> QuickBooks Payment; balance transaction fee
      -> QuickBooks JournalEntry; refund -> QuickBooks RefundReceipt; payout -> Deposit;
      credit note -> QuickBooks CreditMemo (and, on an open invoice, the zero Payment applying it)

Links are the ones the hub itself uses: Stripe metadata ``salesforce_quote_id`` /
``salesforce_opportunity_id``, Stripe's own ids (``invoice.subscription``, ``charge.invoice``,
``charge.balance_transaction``, ``refund.charge``, ``credit_note.invoice``), the payout ties
of the reconciliation, and for QuickBooks the ledger outbox rows (``entity_kind = "ledger"``,
the Stripe id as ``entity_id``, the QuickBooks id as ``remote_id`` once sent) or a landed
document carrying ``stripe:<id>`` in its ``PrivateNote``. A step that should exist and does
not carries a ``problem`` saying what is missing and why (the same reasons the ledger planner
waits on), so an operator sees where a deal stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.protocol import WriteAction
from ledgerlink.domain.currencies import get_currency
from ledgerlink.domain.money import Money, Rounding
from ledgerlink.store.models import Customer, Quarantine, SourceRecord
from ledgerlink.sync._ledger_reconcile import _ties
from ledgerlink.sync._ledger_world import (
    DOCUMENT_ENTITY,
    STRIPE_OBJECTS,
    LedgerRow,
    LedgerWorld,
    load_world,
)

__all__ = ["Trace", "TraceError", "TraceStep", "parse_ref", "trace", "trace_customer"]

_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_EXTRA = {
    "stripe": ("subscriptions", "customers"),
    "salesforce": ("Opportunity", "Quote", "Account"),
    "quickbooks": ("Invoice", "Payment", "RefundReceipt", "Deposit", "JournalEntry", "Customer"),
}
_STRIPE_ALIASES = {
    "invoice": "invoices",
    "charge": "charges",
    "refund": "refunds",
    "credit_note": "credit_notes",
    "payout": "payouts",
    "balance_transaction": "balance_transactions",
    "txn": "balance_transactions",
    "subscription": "subscriptions",
    "customer": "customers",
}
_STRIPE_EXPONENTS = {"ISK": 2, "MGA": 0}
"""Currencies Stripe scales differently from ISO 4217 (as in ``mappings/stripe.yaml``)."""
_POSTED_INVOICES = ("open", "paid", "uncollectible")
_BALANCE_SOURCES = {
    "ch": "charges",
    "py": "charges",
    "re": "refunds",
    "pyr": "refunds",
    "po": "payouts",
}
"""Stripe object of a balance transaction's ``source``, by id prefix."""
_PARENT = {
    ("stripe", "refunds"): ("charges", "charge"),
    ("stripe", "charges"): ("invoices", "invoice"),
    ("stripe", "credit_notes"): ("invoices", "invoice"),
    ("salesforce", "Quote"): ("Opportunity", "OpportunityId"),
}
"""Records whose parent in the chain is named by one of their fields: (parent object, field)."""
_APPLICATION = "QuickBooks credit application (Payment)"
"""Step of the zero Payment that applies a credit note's CreditMemo to its invoice."""
QUOTE_KEY = "salesforce_quote_id"
OPPORTUNITY_KEY = "salesforce_opportunity_id"


class TraceError(LookupError):
    """The reference is malformed or names nothing in the store."""


@dataclass
class TraceStep:
    """One record of the chain, or the place where the chain stops.

    Attributes:
        step: what it is (``Stripe invoice``, ``QuickBooks Payment``).
        ref: ``system:object:id`` of the record, or None when it does not exist (yet).
        amount: its amount, when it has one.
        status: its status in its system (``paid``, ``posted``, ``Accepted``).
        problem: why the chain is broken here, or None.
        start: this is the record the trace started from.
        children: the next steps.
    """

    step: str
    ref: str | None
    amount: Money | None = None
    status: str = ""
    problem: str | None = None
    start: bool = False
    children: list[TraceStep] = field(default_factory=list)

    def walk(self) -> Iterator[TraceStep]:
        """This step and every step under it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self) -> dict[str, Any]:
        """JSON form: money as ``{"amount": minor units, "currency": code}``."""
        amount = self.amount
        return {
            "step": self.step,
            "ref": self.ref,
            "amount": None
            if amount is None
            else {"amount": amount.amount, "currency": amount.currency},
            "status": self.status,
            "problem": self.problem,
            "start": self.start,
            "children": [child.as_dict() for child in self.children],
        }


@dataclass(frozen=True)
class Trace:
    """A traced chain: its root step and notes about links above the root that are missing."""

    root: TraceStep
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Every place the chain is broken, top to bottom."""
        return [step.problem for step in self.root.walk() if step.problem]

    def as_dict(self) -> dict[str, Any]:
        """JSON form of the whole trace."""
        return {"root": self.root.as_dict(), "notes": list(self.notes), "problems": self.problems}


def parse_ref(text: str) -> tuple[str, str, str]:
    """Split ``system:object:id`` (Stripe objects also singular: ``stripe:invoice:in_1``).

    Raises:
        TraceError: not three non-empty parts.
    """
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(parts):
        msg = f"{text!r} is not a reference: write system:object:id, e.g. stripe:invoices:in_123"
        raise TraceError(msg)
    system, obj, ext = (part.strip() for part in parts)
    system = system.lower()
    if system == "stripe":
        obj = _STRIPE_ALIASES.get(obj.lower(), obj.lower())
    return system, obj, ext


def _stripe_money(minor: Any, currency: Any) -> Money | None:
    if minor is None or not currency:
        return None
    code = str(currency).upper()
    try:
        exponent = _STRIPE_EXPONENTS.get(code, get_currency(code).exponent)
        return Money.from_scaled(int(minor), exponent, code, rounding=Rounding.HALF_EVEN)
    except (ValueError, LookupError):
        return None


def _decimal_money(value: Any, currency: Any) -> Money | None:
    if value is None or not currency:
        return None
    try:
        return Money.from_decimal(Decimal(str(value)), str(currency), rounding=Rounding.HALF_EVEN)
    except (InvalidOperation, ValueError, LookupError):
        return None


def _ref_value(node: Any) -> str | None:
    return str(node.get("value")) if isinstance(node, Mapping) and node.get("value") else None


def _quickbooks_total(obj: str, payload: Mapping[str, Any]) -> Decimal | None:
    """A QuickBooks document's total: ``TotalAmt`` once QuickBooks has it, else its lines."""
    if payload.get("TotalAmt") is not None:
        return Decimal(str(payload["TotalAmt"]))
    lines = payload.get("Line") or []
    if not lines:
        return None
    total = Decimal(0)
    for line in lines:
        amount = Decimal(str(line.get("Amount") or 0))
        kind = line.get("DetailType")
        if obj == "JournalEntry":
            posting = (line.get("JournalEntryLineDetail") or {}).get("PostingType")
            total += amount if posting == "Debit" else 0
        elif kind == "DiscountLineDetail":
            total -= amount
        elif kind != "SubTotalLineDetail":
            total += amount
    tax = (payload.get("TxnTaxDetail") or {}).get("TotalTax")
    return total + Decimal(str(tax)) if tax and obj != "JournalEntry" else total


def _applied_credit(payload: Mapping[str, Any]) -> Decimal | None:
    """What a credit application (a zero Payment linking a CreditMemo) applies, else None."""
    applied = [
        line
        for line in payload.get("Line") or []
        if any(link.get("TxnType") == "CreditMemo" for link in line.get("LinkedTxn") or [])
    ]
    if not applied:
        return None
    return sum((Decimal(str(line.get("Amount") or 0)) for line in applied), Decimal(0))


def _document_total(obj: str, payload: Mapping[str, Any]) -> Decimal | None:
    """The amount a QuickBooks document shows: a credit application the credit it applies."""
    applied = _applied_credit(payload) if obj == "Payment" else None
    return applied if applied is not None else _quickbooks_total(obj, payload)


def _refunded(note: Mapping[str, Any], refunds: Mapping[str, Mapping[str, Any]]) -> int | None:
    """What of a credit note Stripe refunded, as the ledger counts it (None: refund not landed)."""
    listed = note.get("refunds") or []
    if listed:
        return sum(int(r.get("amount_refunded") or 0) for r in listed)
    refund_id = note.get("refund")
    if not refund_id:
        return 0
    refund = refunds.get(str(refund_id))
    if refund is None:
        return None
    return min(int(refund.get("amount") or 0), int(note.get("total") or 0))


def _row_state(row: LedgerRow) -> str:
    """Where an outbox row of the ledger stands, in the words of the other steps."""
    if row.status == "failed":
        return (
            f"failed (outbox row {row.id}; see `ledgerlink outbox list`, "
            "retry with `ledgerlink outbox retry`)"
        )
    return f"queued in the outbox (row {row.id}, {row.status})"


class _Tracer:
    """Reads the store once and builds steps from what it holds."""

    def __init__(self, conn: Connection) -> None:
        self.world: LedgerWorld = load_world(conn)
        self.records: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        query = select(
            _SOURCE.c.system, _SOURCE.c.object, _SOURCE.c.external_id, _SOURCE.c.payload
        ).where(_SOURCE.c.deleted_at.is_(None))
        for row in conn.execute(query):
            self.records.setdefault((row.system, row.object), {})[row.external_id] = (
                row.payload or {}
            )
        self.quarantined: dict[str, str] = {
            row.external_id: row.reason
            for row in conn.execute(
                select(_QUARANTINE.c.external_id, _QUARANTINE.c.reason).where(
                    _QUARANTINE.c.system == "stripe",
                    _QUARANTINE.c.stage == "plan",
                    _QUARANTINE.c.resolved_at.is_(None),
                )
            )
        }
        self.stripe_of_quickbooks: dict[tuple[str, str], str] = {
            (obj, qb_id): stripe_id for (obj, stripe_id), qb_id in self.world.in_quickbooks.items()
        }
        for (kind, stripe_id, obj), qb_id in self.world.created.items():
            if kind == DOCUMENT_ENTITY:
                self.stripe_of_quickbooks[obj, qb_id] = stripe_id
        self.payout_of: dict[str, str] = {}
        for payout_id, (txns, _how) in _ties(self.world).items():
            for txn in txns:
                self.payout_of[str(txn["id"])] = payout_id
        self.seen: set[str] = set()
        self.start: str | None = None

    def get(self, system: str, obj: str, ext: str | None) -> Mapping[str, Any] | None:
        if not ext:
            return None
        return self.records.get((system, obj), {}).get(ext)

    def stripe(self, obj: str) -> dict[str, Mapping[str, Any]]:
        return self.records.get(("stripe", obj), {})

    def node(self, step: str, ref: str, **fields: Any) -> TraceStep:
        self.seen.add(ref)
        return TraceStep(step, ref, start=ref == self.start, **fields)

    # -- why a document is not in QuickBooks ---------------------------------------------

    def _customer_wait(self, stripe_customer: Any) -> str | None:
        golden = self.world.customer_of.get(("stripe", "customers", str(stripe_customer)))
        if golden is None:
            return f"waiting for customer: Stripe customer {stripe_customer} is not matched to a customer yet"
        if golden not in self.world.quickbooks_customer:
            return f"waiting for customer: customer {golden} is not in QuickBooks yet"
        return None

    def posted(
        self,
        what: str,
        stripe_id: str,
        obj: str,
        currency: Any,
        wait: str | None = None,
        *,
        label: str | None = None,
    ) -> TraceStep:
        """The QuickBooks document of a Stripe object, or why it is not there."""
        label = label or f"QuickBooks {obj}"
        row = self.world.rows.get((DOCUMENT_ENTITY, stripe_id, obj))
        remote = self.world.remote_id(DOCUMENT_ENTITY, stripe_id, obj)
        if remote is not None:
            landed = self.get("quickbooks", obj, remote)
            payload = landed if landed is not None else (row.payload if row else {})
            total = _document_total(obj, payload)
            code = _ref_value(payload.get("CurrencyRef")) or str(currency or "")
            status = "posted"
            if row is not None and row.status != "done":
                status = f"posted; update {row.status}"
            ref = f"quickbooks:{obj}:{remote}"
            return self.node(label, ref, amount=_decimal_money(total, code), status=status)
        step = TraceStep(label, None, status="not posted")
        if row is not None:
            step.status = row.status
            step.amount = _decimal_money(_document_total(obj, row.payload), currency)
            if row.status == "failed":
                step.problem = (
                    f"{what} {stripe_id}: posting to QuickBooks failed "
                    f"(outbox row {row.id}; see `ledgerlink outbox list`, retry with `ledgerlink outbox retry`)"
                )
            else:
                step.problem = f"{what} {stripe_id} not posted to QuickBooks yet: queued in the outbox (row {row.id}, {row.status})"
            return step
        reason = (
            self.quarantined.get(stripe_id)
            or wait
            or "not planned yet (the next sync cycle plans it)"
        )
        step.problem = f"{what} {stripe_id} not posted to QuickBooks yet: {reason}"
        return step

    # -- Stripe ----------------------------------------------------------------------------

    def payout(self, payout_id: str) -> TraceStep:
        payout = self.stripe("payouts").get(payout_id) or {}
        step = self.node(
            "Stripe payout",
            f"stripe:payouts:{payout_id}",
            amount=_stripe_money(payout.get("amount"), payout.get("currency")),
            status=str(payout.get("status") or ""),
        )
        if payout.get("status") not in ("failed", "canceled"):
            step.children.append(
                self.posted("payout", payout_id, "Deposit", payout.get("currency"))
            )
        return step

    def balance(self, txn_id: str, charge: Mapping[str, Any] | None = None) -> TraceStep:
        txn = self.stripe("balance_transactions").get(txn_id)
        if txn is None:
            return TraceStep(
                "Stripe balance transaction",
                None,
                problem=f"balance transaction {txn_id} not landed yet (the next pull brings it)",
            )
        fee = int(txn.get("fee") or 0)
        category = str(txn.get("reporting_category") or txn.get("type"))
        label, what, amount = {
            "dispute": ("Stripe dispute", "dispute", -int(txn.get("net") or 0)),
            "dispute_reversal": (
                "Stripe dispute won",
                "dispute reversal",
                int(txn.get("net") or 0),
            ),
        }.get(category, ("Stripe fee", "fee", fee))
        step = self.node(
            label,
            f"stripe:balance_transactions:{txn_id}",
            amount=_stripe_money(amount, txn.get("currency")),
            status=str(txn.get("status") or ""),
        )
        if amount > 0:
            step.children.append(self.posted(what, txn_id, "JournalEntry", txn.get("currency")))
        if charge is not None:
            payout_id = self.payout_of.get(txn_id)
            if payout_id is None:
                step.children.append(TraceStep("Stripe payout", None, status="not paid out yet"))
            else:
                step.children.append(self.payout(payout_id))
        return step

    def refund(self, refund_id: str) -> TraceStep:
        refund = self.stripe("refunds").get(refund_id) or {}
        step = self.node(
            "Stripe refund",
            f"stripe:refunds:{refund_id}",
            amount=_stripe_money(refund.get("amount"), refund.get("currency")),
            status=str(refund.get("status") or ""),
        )
        if refund.get("status") == "succeeded":
            charge = self.stripe("charges").get(str(refund.get("charge") or "")) or {}
            wait = self._customer_wait(charge.get("customer")) if charge else None
            step.children.append(
                self.posted("refund", refund_id, "RefundReceipt", refund.get("currency"), wait)
            )
        return step

    def _credit_wait(self, note: Mapping[str, Any]) -> str | None:
        """Why a credit note's CreditMemo waits, as far as the store tells."""
        wait = self._customer_wait(note.get("customer"))
        invoice_id = str(note.get("invoice") or "")
        if wait is None and invoice_id not in self.stripe("invoices"):
            wait = f"waiting for its invoice {invoice_id or '(none named)'} to land (the next pull brings it)"
        return wait

    def credit_note(self, note_id: str) -> TraceStep:
        """A credit note: its CreditMemo for what Stripe did not refund, and on an open invoice
        the zero Payment applying it; a voided one, what undoing it in QuickBooks got to."""
        note = self.stripe("credit_notes").get(note_id) or {}
        status = str(note.get("status") or "")
        currency = note.get("currency")
        step = self.node(
            "Stripe credit note",
            f"stripe:credit_notes:{note_id}",
            amount=_stripe_money(note.get("total"), currency),
            status=status,
        )
        if status == "void":
            step.children.extend(self.voided_credit_note(note_id, currency))
            return step
        if status != "issued":
            return step
        refunded = _refunded(note, self.stripe("refunds"))
        if refunded is None:
            step.children.append(
                TraceStep(
                    "QuickBooks CreditMemo",
                    None,
                    status="not posted",
                    problem=f"credit note {note_id} not posted to QuickBooks yet: waiting for its refund {note.get('refund')} to land (the next pull brings it)",
                )
            )
            return step
        credit = int(note.get("total") or 0) - refunded
        if credit <= 0:
            step.children.append(
                TraceStep(
                    "QuickBooks CreditMemo",
                    None,
                    status="not posted: refunded in full (its refund posts a RefundReceipt)",
                )
            )
            return step
        wait = self._credit_wait(note)
        memo = self.posted("credit note", note_id, "CreditMemo", currency, wait)
        if refunded:
            part = _stripe_money(refunded, currency)
            shown = part.format() if part is not None else str(refunded)
            memo.status += f"; the {shown} refunded posts as its refund's RefundReceipt"
        step.children.append(memo)
        if note.get("type") == "pre_payment":
            # What the application waits for, in the order the ledger checks: the invoice,
            # then the memo (whose customer it takes).
            invoice_id = str(note.get("invoice") or "")
            if invoice_id not in self.stripe("invoices"):
                wait = f"waiting for its invoice {invoice_id} to land (the next pull brings it)"
            elif self.world.remote_id(DOCUMENT_ENTITY, invoice_id, "Invoice") is None:
                wait = f"waiting for invoice {invoice_id} to be in QuickBooks"
            elif memo.ref is None:
                wait = "waiting for its CreditMemo to be in QuickBooks"
            else:
                wait = None
            step.children.append(
                self.posted(
                    "credit application of credit note",
                    note_id,
                    "Payment",
                    currency,
                    wait,
                    label=_APPLICATION,
                )
            )
        return step

    def voided_credit_note(self, note_id: str, currency: Any) -> list[TraceStep]:
        """The CreditMemo of a voided credit note and its application, as far as undone.

        The ledger deletes the application first, then empties the memo ("Voided" before its
        note); until both are done the memo still counts in QuickBooks, and its step says why.
        """
        memo_label = "QuickBooks CreditMemo"
        row = self.world.rows.get((DOCUMENT_ENTITY, note_id, "CreditMemo"))
        remote = self.world.remote_id(DOCUMENT_ENTITY, note_id, "CreditMemo")
        application, removal = self._application_removal(note_id, currency)
        steps = [] if application is None else [application]
        if remote is None:
            if row is None:
                return [
                    TraceStep(memo_label, None, status="not posted (voided before it was posted)")
                ]
            problem = f"credit note {note_id} is void; its CreditMemo is still being posted, then emptied: {_row_state(row)}"
            return [TraceStep(memo_label, None, status=row.status, problem=problem), *steps]
        landed = self.get("quickbooks", "CreditMemo", remote)
        payload = landed if landed is not None else (row.payload if row else {})
        code = _ref_value(payload.get("CurrencyRef")) or str(currency or "")
        memo = self.node(
            memo_label,
            f"quickbooks:CreditMemo:{remote}",
            amount=_decimal_money(_quickbooks_total("CreditMemo", payload), code),
            status="posted",
        )
        emptied = row is not None and str(row.payload.get("PrivateNote") or "").startswith("Voided")
        if ("CreditMemo", note_id) in self.world.voided:
            memo.status = "voided"
        elif emptied and row is not None and row.status == "done":
            # QuickBooks took the emptied memo; a copy landed before that still shows the credit.
            memo.status = "voided"
            total = _quickbooks_total("CreditMemo", row.payload)
            memo.amount = _decimal_money(total, code)
        elif emptied and row is not None:
            memo.status = f"void {row.status}"
            memo.problem = f"credit note {note_id} is void; emptying its CreditMemo {remote} in QuickBooks: {_row_state(row)}"
        else:
            if row is not None and row.status != "done":
                why = f"waiting for its last write ({_row_state(row)})"
            else:
                why = removal or "the next sync cycle empties it"
            memo.problem = f"credit note {note_id} is void but its CreditMemo {remote} is not emptied in QuickBooks yet: {why}"
        return [memo, *steps]

    def _application_removal(
        self, note_id: str, currency: Any
    ) -> tuple[TraceStep | None, str | None]:
        """A voided credit note's application (None if it had none) and what its removal
        waits on (None once it is deleted)."""
        row = self.world.rows.get((DOCUMENT_ENTITY, note_id, "Payment"))
        remote = self.world.remote_id(DOCUMENT_ENTITY, note_id, "Payment")
        if remote is None:
            if row is None:
                return None, None
            return (
                TraceStep(_APPLICATION, None, status=row.status),
                f"its credit application is still being posted, then deleted: {_row_state(row)}",
            )
        ref = f"quickbooks:Payment:{remote}"
        if row is not None and row.action == WriteAction.DELETE.value:
            if row.status == "done":
                return self.node(_APPLICATION, ref, status="deleted"), None
            return (
                self.node(_APPLICATION, ref, status=f"delete {row.status}"),
                f"deleting its credit application {remote} first: {_row_state(row)}",
            )
        if row is not None and row.status != "done":
            return (
                self.node(_APPLICATION, ref, status=f"posted; {row.action} {row.status}"),
                f"waiting for the last write of its credit application ({_row_state(row)})",
            )
        payload = self.get("quickbooks", "Payment", remote) or (row.payload if row else {})
        code = _ref_value(payload.get("CurrencyRef")) or str(currency or "")
        step = self.node(
            _APPLICATION,
            ref,
            amount=_decimal_money(_document_total("Payment", payload), code),
            status="posted",
        )
        return (
            step,
            f"its credit application {remote} is deleted first (the next sync cycle plans it)",
        )

    def charge(self, charge_id: str) -> TraceStep:
        charge = self.stripe("charges").get(charge_id) or {}
        step = self.node(
            "Stripe charge",
            f"stripe:charges:{charge_id}",
            amount=_stripe_money(charge.get("amount"), charge.get("currency")),
            status=str(charge.get("status") or ""),
        )
        if charge.get("status") != "succeeded":
            return step
        invoice_id = str(charge.get("invoice") or "")
        # A charge of an invoice is a Payment applied to it; a one-off charge an unapplied one.
        wait = None
        if invoice_id and self.world.remote_id(DOCUMENT_ENTITY, invoice_id, "Invoice") is None:
            wait = f"waiting for invoice {invoice_id} to be in QuickBooks"
        if invoice_id or charge.get("customer"):
            wait = wait or self._customer_wait(charge.get("customer"))
            step.children.append(
                self.posted("charge", charge_id, "Payment", charge.get("currency"), wait)
            )
        txn_id = charge.get("balance_transaction")
        if txn_id:
            step.children.append(self.balance(str(txn_id), charge))
        else:
            step.children.append(
                TraceStep(
                    "Stripe balance transaction",
                    None,
                    problem=f"charge {charge_id} has no balance transaction yet (Stripe adds it after the charge; the next pull brings it)",
                )
            )
        for refund_id, refund in sorted(self.stripe("refunds").items()):
            if refund.get("charge") == charge_id:
                step.children.append(self.refund(refund_id))
        return step

    def invoice(self, invoice_id: str) -> TraceStep:
        invoice = self.stripe("invoices").get(invoice_id) or {}
        status = str(invoice.get("status") or "")
        step = self.node(
            "Stripe invoice",
            f"stripe:invoices:{invoice_id}",
            amount=_stripe_money(invoice.get("total"), invoice.get("currency")),
            status=status,
        )
        if status in _POSTED_INVOICES and invoice.get("total"):
            wait = self._customer_wait(invoice.get("customer"))
            step.children.append(
                self.posted("invoice", invoice_id, "Invoice", invoice.get("currency"), wait)
            )
        charges = sorted(
            cid
            for cid, charge in self.stripe("charges").items()
            if charge.get("invoice") == invoice_id
        )
        step.children.extend(self.charge(cid) for cid in charges)
        if status == "paid" and not charges and invoice.get("amount_paid"):
            named = invoice.get("charge")
            missing = f"charge {named}" if named else "its charge"
            step.children.append(
                TraceStep(
                    "Stripe charge",
                    None,
                    problem=f"invoice {invoice_id} is paid but {missing} has not landed yet",
                )
            )
        notes = sorted(
            (int(note.get("created") or 0), note_id)
            for note_id, note in self.stripe("credit_notes").items()
            if note.get("invoice") == invoice_id
        )
        step.children.extend(self.credit_note(note_id) for _created, note_id in notes)
        return step

    def subscription(self, sub_id: str) -> TraceStep:
        sub = self.stripe("subscriptions").get(sub_id) or {}
        items = (sub.get("items") or {}).get("data") or []
        per_period = sum(
            int((item.get("price") or {}).get("unit_amount") or 0) * int(item.get("quantity") or 1)
            for item in items
        )
        step = self.node(
            "Stripe subscription",
            f"stripe:subscriptions:{sub_id}",
            amount=_stripe_money(per_period, sub.get("currency")) if items else None,
            status=str(sub.get("status") or ""),
        )
        invoices = sorted(
            self.stripe("invoices").values(),
            key=lambda i: (int(i.get("created") or 0), str(i["id"])),
        )
        step.children.extend(
            self.invoice(str(i["id"])) for i in invoices if i.get("subscription") == sub_id
        )
        return step

    def billed_by(self, key: str, value: str) -> list[TraceStep]:
        """Stripe subscriptions, and invoices outside them, whose metadata names ``value``."""
        steps = [
            self.subscription(sub_id)
            for sub_id, sub in sorted(self.stripe("subscriptions").items())
            if (sub.get("metadata") or {}).get(key) == value
        ]
        for invoice_id, invoice in sorted(self.stripe("invoices").items()):
            if (invoice.get("metadata") or {}).get(
                key
            ) == value and f"stripe:invoices:{invoice_id}" not in self.seen:
                steps.append(self.invoice(invoice_id))
        return steps

    # -- Salesforce ------------------------------------------------------------------------

    def quote(self, quote_id: str) -> TraceStep:
        quote = self.get("salesforce", "Quote", quote_id) or {}
        status = str(quote.get("Status") or "")
        step = self.node(
            "Salesforce Quote",
            f"salesforce:Quote:{quote_id}",
            amount=_decimal_money(quote.get("GrandTotal"), quote.get("CurrencyIsoCode") or "USD"),
            status=status,
        )
        step.children.extend(self.billed_by(QUOTE_KEY, quote_id))
        if not step.children and status == "Accepted":
            step.children.append(
                TraceStep(
                    "Stripe subscription or invoice",
                    None,
                    problem=f"quote {quote_id} is accepted but not billed in Stripe yet (no subscription or invoice has metadata {QUOTE_KEY}={quote_id})",
                )
            )
        return step

    def opportunity(self, opp_id: str) -> TraceStep:
        opp = self.get("salesforce", "Opportunity", opp_id) or {}
        step = self.node(
            "Salesforce Opportunity",
            f"salesforce:Opportunity:{opp_id}",
            amount=_decimal_money(opp.get("Amount"), opp.get("CurrencyIsoCode") or "USD"),
            status=str(opp.get("StageName") or ""),
        )
        for quote_id, quote in sorted(self.records.get(("salesforce", "Quote"), {}).items()):
            if quote.get("OpportunityId") == opp_id:
                step.children.append(self.quote(quote_id))
        step.children.extend(self.billed_by(OPPORTUNITY_KEY, opp_id))
        if not step.children and opp.get("IsWon"):
            step.children.append(
                TraceStep(
                    "Salesforce Quote or Stripe billing",
                    None,
                    problem=f"opportunity {opp_id} is won but has no quote and nothing in Stripe names it ({OPPORTUNITY_KEY})",
                )
            )
        return step

    # -- climbing to the top of the chain --------------------------------------------------

    def _from_quickbooks(self, obj: str, ext: str) -> tuple[str, str]:
        """The Stripe object a QuickBooks document posts, as (Stripe object, id)."""
        stripe_id = self.stripe_of_quickbooks.get((obj, ext))
        if stripe_id is None:
            msg = f"QuickBooks {obj} {ext} was not posted by ledgerlink (no stripe:<id> link to it)"
            raise TraceError(msg)
        for stripe_obj in STRIPE_OBJECTS:
            if stripe_id in self.stripe(stripe_obj):
                return stripe_obj, stripe_id
        msg = f"QuickBooks {obj} {ext} comes from Stripe {stripe_id}, which is not in the store"
        raise TraceError(msg)

    def _above(
        self, system: str, obj: str, record: Mapping[str, Any]
    ) -> tuple[str, str, str] | None:
        """The record one step up the chain, or None at the top."""
        key = (system, obj)
        if key == ("stripe", "balance_transactions"):
            source = str(record.get("source") or "")
            kind = _BALANCE_SOURCES.get(source.split("_", 1)[0])
            return None if kind is None else ("stripe", kind, source)
        if key in _PARENT:
            parent, id_field = _PARENT[key]
            return (system, parent, str(record.get(id_field) or ""))
        if key == ("stripe", "invoices") and record.get("subscription"):
            return ("stripe", "subscriptions", str(record["subscription"]))
        if key in (("stripe", "invoices"), ("stripe", "subscriptions")):
            return self._salesforce_of(record)
        if key in (("stripe", "payouts"), ("salesforce", "Opportunity")):
            return None
        msg = (
            f"{system}:{obj} is not part of a deal's chain: trace a quote, opportunity, "
            "subscription, invoice, charge, refund, credit note, balance transaction, payout or a "
            "QuickBooks document the hub posted"
        )
        raise TraceError(msg)

    def top(self, system: str, obj: str, ext: str, notes: list[str]) -> tuple[str, str]:
        """The highest record of ``ext``'s chain as (kind, id); notes say where climbing stopped."""
        if system == "quickbooks":
            self.start = self.start or f"quickbooks:{obj}:{ext}"
            stripe_obj, stripe_id = self._from_quickbooks(obj, ext)
            return self.top("stripe", stripe_obj, stripe_id, notes)
        record = self.get(system, obj, ext)
        if record is None:
            msg = f"no record {system}:{obj}:{ext} in the store (check the id, or run `ledgerlink sync run`)"
            raise TraceError(msg)
        self.start = self.start or f"{system}:{obj}:{ext}"
        up = self._above(system, obj, record)
        if up is None:
            if obj in ("invoices", "subscriptions"):
                notes.append(
                    f"no Salesforce quote or opportunity is linked to {ext} "
                    f"(Stripe metadata {QUOTE_KEY} or {OPPORTUNITY_KEY})"
                )
            return obj, ext
        if self.get(*up) is None:
            if up[2]:
                notes.append(f"{up[1]} {up[2]} above {ext} is not in the store yet")
            return obj, ext
        return self.top(*up, notes)

    @staticmethod
    def _salesforce_of(record: Mapping[str, Any]) -> tuple[str, str, str] | None:
        metadata = record.get("metadata") or {}
        if metadata.get(QUOTE_KEY):
            return ("salesforce", "Quote", str(metadata[QUOTE_KEY]))
        if metadata.get(OPPORTUNITY_KEY):
            return ("salesforce", "Opportunity", str(metadata[OPPORTUNITY_KEY]))
        return None

    def build(self, kind: str, ext: str) -> TraceStep:
        builders = {
            "Opportunity": self.opportunity,
            "Quote": self.quote,
            "subscriptions": self.subscription,
            "invoices": self.invoice,
            "charges": self.charge,
            "refunds": self.refund,
            "credit_notes": self.credit_note,
            "payouts": self.payout,
            "balance_transactions": self.balance,
        }
        return builders[kind](ext)


def trace(engine: Engine, ref: str) -> Trace:
    """Trace the deal that record ``ref`` (``system:object:id``) belongs to.

    Args:
        engine: the store's engine.
        ref: any record of the chain; QuickBooks documents posted by the hub too.

    Returns:
        The chain from its top record down, with the step of ``ref`` marked ``start``.

    Raises:
        TraceError: ``ref`` is malformed, unknown, or not part of a deal.
    """
    system, obj, ext = parse_ref(ref)
    with engine.connect() as conn:
        tracer = _Tracer(conn)
    notes: list[str] = []
    kind, top_id = tracer.top(system, obj, ext, notes)
    return Trace(tracer.build(kind, top_id), tuple(notes))


def trace_customer(engine: Engine, customer_id: str) -> Trace:
    """Trace every deal of a golden customer: its records in each system, then each chain.

    Raises:
        TraceError: no such customer.
    """
    with engine.connect() as conn:
        tracer = _Tracer(conn)
        found = conn.execute(
            select(_CUSTOMER.c.display_name).where(_CUSTOMER.c.id == customer_id)
        ).first()
    if found is None:
        msg = f"no customer {customer_id!r} (see `ledgerlink customer list`)"
        raise TraceError(msg)
    root = TraceStep("Customer", f"customer:{customer_id}", status=str(found.display_name or ""))
    mine = {key for key, golden in tracer.world.customer_of.items() if golden == customer_id}
    accounts = {ext for system, obj, ext in mine if (system, obj) == ("salesforce", "Account")}
    stripe_customers = {
        ext for system, obj, ext in mine if (system, obj) == ("stripe", "customers")
    }
    for system, obj, ext in sorted(mine):
        root.children.append(TraceStep(f"{system} {obj}", f"{system}:{obj}:{ext}", status="linked"))
    for opp_id, opp in sorted(tracer.records.get(("salesforce", "Opportunity"), {}).items()):
        if opp.get("AccountId") in accounts:
            root.children.append(tracer.opportunity(opp_id))
    for quote_id, quote in sorted(tracer.records.get(("salesforce", "Quote"), {}).items()):
        if quote.get("AccountId") in accounts and f"salesforce:Quote:{quote_id}" not in tracer.seen:
            root.children.append(tracer.quote(quote_id))
    for sub_id, sub in sorted(tracer.stripe("subscriptions").items()):
        if (
            sub.get("customer") in stripe_customers
            and f"stripe:subscriptions:{sub_id}" not in tracer.seen
        ):
            root.children.append(tracer.subscription(sub_id))
    for invoice_id, invoice in sorted(tracer.stripe("invoices").items()):
        if (
            invoice.get("customer") in stripe_customers
            and f"stripe:invoices:{invoice_id}" not in tracer.seen
        ):
            root.children.append(tracer.invoice(invoice_id))
    return Trace(root)
