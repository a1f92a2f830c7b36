"""Money after billing in the sandbox: one-off charges, voids, credit notes and payouts.

What the ledger reads from Stripe once an invoice exists, each change made and announced the
way Stripe does it:

* ``POST /v1/charges``: a one-off charge of a customer, with no invoice (``charge.succeeded``;
  its balance transaction settles like an invoice's charge).
* ``POST /v1/invoices/{id}/void`` and ``/mark_uncollectible``: an open (or uncollectible)
  invoice becomes ``void``, an open one ``uncollectible`` (``invoice.voided``,
  ``invoice.marked_uncollectible``, each with ``invoice.updated``).
* ``POST /v1/credit_notes``: lines (``invoice_line_item`` or ``custom_line_item``) or a bare
  ``amount``. On an open invoice it lowers what is due (``pre_payment``; a credit note of all
  that remains marks the invoice paid). On a paid one (``post_payment``) the amount is split
  into ``refund_amount`` (a real refund of the invoice's charge), ``out_of_band_amount`` and
  ``credit_amount`` (the customer's credit balance), the last taking what the others leave.
  ``POST /v1/credit_notes/{id}/void`` voids one without a refund and undoes its effect.
* Automatic payouts: :meth:`Settlement.automatic_payout` sweeps the balance of a currency into
  a payout (``automatic: true``) and :meth:`Settlement.advance_payout` moves it through
  ``in_transit`` and ``paid`` (or ``failed``). ``GET /v1/balance_transactions?payout=po_...``
  answers which balance transactions an automatic payout paid out, itself included; for a
  manual payout it is Stripe's error. A seeded payout pays out the seeded charges, refunds and
  disputes of its currency created since the seeded payout before it (the seed's payout
  amounts are drawn, not summed, so a seeded payout does not reconcile: messy on purpose).
"""

from __future__ import annotations

import bisect
import copy
from typing import Any

from ledgerlink_stripe.sandbox.billing import (
    DECLINING_METHODS,
    Billing,
    SandboxError,
    merge_metadata,
    missing,
    required,
)
from ledgerlink_stripe.sandbox.data import SeedCatalog
from ledgerlink_stripe.sandbox.store import ObjectStore, new_id

__all__ = ["Settlement"]

JSON = dict[str, Any]
_PAID_OUT = "sandbox.payout_paid_out"
"""Private store: automatic payout id -> the ids of the balance transactions it paid out."""
_PAYOUT_EVENTS = {"paid": "payout.paid", "failed": "payout.failed", "canceled": "payout.canceled"}


def _int(params: JSON, name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value in (None, ""):
        if default is None:
            raise required(name)
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SandboxError(
            400, "invalid_request_error", f"Invalid integer: {value}", param=name
        ) from None


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> SandboxError:
    return SandboxError(400, "invalid_request_error", message, param=param, code=code)


class Settlement:
    """The sandbox's settlement operations, on the state a :class:`Billing` works on."""

    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        self.state = billing.state
        self.state.stores.setdefault(_PAID_OUT, ObjectStore(None, _PAID_OUT))

    # -- one-off charges ---------------------------------------------------------------------
    def create_charge(self, params: JSON) -> JSON:
        """Charge a customer without an invoice (``POST /v1/charges``).

        Raises:
            SandboxError: a missing parameter, an unknown customer, or a declined card (402,
                the failed charge is kept as Stripe keeps it).
        """
        amount = _int(params, "amount")
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise required("currency")
        if amount <= 0:
            raise _invalid("Amount must be at least 1", param="amount", code="amount_too_small")
        customer_id = params.get("customer")
        if customer_id:
            self.billing.get("customer", customer_id, "customer")
        now = self.billing.time_for(customer_id)
        explicit = params.get("payment_method") or params.get("source")
        method = self.billing._payment_method(customer_id, explicit) if customer_id else explicit
        ok = method is not None and method not in DECLINING_METHODS
        billed = {"id": None, "customer": customer_id, "currency": currency, "amount_due": amount}
        intent = self.billing._payment_intent(billed, method, ok, now)
        charge = self.billing._charge(billed, intent, method, ok, now)
        if params.get("description") or params.get("metadata"):
            charge = self.billing.get("charge", charge["id"])
            charge["description"] = params.get("description")
            charge["metadata"] = merge_metadata({}, params.get("metadata"))
            self.billing._put(charge)
        if not ok:
            raise SandboxError(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                extra={"decline_code": "generic_decline", "charge": charge["id"]},
            )
        return self.billing.get("charge", charge["id"])

    # -- invoice status --------------------------------------------------------------------
    def void_invoice(self, invoice_id: str) -> JSON:
        """Void an open or uncollectible invoice (``POST /v1/invoices/{id}/void``)."""
        invoice = self.billing.get("invoice", invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise _invalid(
                f"You can only void invoices that are open or uncollectible; this one is "
                f"{invoice['status']}.",
                code="invoice_not_editable",
            )
        previous = {"status": invoice["status"]}
        invoice["status"] = "void"
        invoice["auto_advance"] = False
        invoice["next_payment_attempt"] = None
        invoice.setdefault("status_transitions", {})["voided_at"] = self.billing.time_for(
            invoice["customer"]
        )
        self.billing._put(invoice)
        self.state.emit("invoice.voided", invoice)
        self.state.emit("invoice.updated", invoice, previous)
        return invoice

    def mark_uncollectible(self, invoice_id: str) -> JSON:
        """Mark an open invoice uncollectible (``POST /v1/invoices/{id}/mark_uncollectible``)."""
        invoice = self.billing.get("invoice", invoice_id)
        if invoice["status"] != "open":
            raise _invalid(
                f"You can only mark open invoices uncollectible; this one is {invoice['status']}.",
                code="invoice_not_editable",
            )
        previous = {"status": "open"}
        invoice["status"] = "uncollectible"
        invoice["next_payment_attempt"] = None
        invoice.setdefault("status_transitions", {})["marked_uncollectible_at"] = (
            self.billing.time_for(invoice["customer"])
        )
        self.billing._put(invoice)
        self.state.emit("invoice.marked_uncollectible", invoice)
        self.state.emit("invoice.updated", invoice, previous)
        return invoice

    # -- credit notes ----------------------------------------------------------------------
    def _credit_lines(self, invoice: JSON, specs: Any, cn_id: str) -> list[JSON]:
        lines: list[JSON] = []
        by_id = {line["id"]: line for line in invoice["lines"]["data"]}
        for index, spec in enumerate(specs or []):
            kind = spec.get("type") or "invoice_line_item"
            quantity = _int(spec, "quantity", 1)
            if kind == "invoice_line_item":
                source = by_id.get(spec.get("invoice_line_item") or "")
                if source is None:
                    raise _invalid(
                        "Invalid invoice_line_item: it is not a line of the credit note's invoice.",
                        param=f"lines[{index}][invoice_line_item]",
                    )
                default = int(source["amount"]) // max(1, int(source.get("quantity") or 1))
                amount = _int(spec, "amount", default * quantity)
                unit = amount // quantity if amount % quantity == 0 else amount
                description = source.get("description")
            elif kind == "custom_line_item":
                unit = _int(spec, "unit_amount")
                amount = unit * quantity
                description = spec.get("description") or required(f"lines[{index}][description]")
                if isinstance(description, SandboxError):
                    raise description
                source = None
            else:
                raise _invalid(f"Invalid line type: {kind}", param=f"lines[{index}][type]")
            lines.append(
                {
                    "id": f"cnli_{cn_id[3:]}{index:02}",
                    "object": "credit_note_line_item",
                    "amount": amount,
                    "description": description,
                    "discount_amount": 0,
                    "discount_amounts": [],
                    "invoice_line_item": None if source is None else source["id"],
                    "livemode": False,
                    "quantity": quantity,
                    "tax_amounts": [],
                    "tax_rates": [],
                    "type": kind,
                    "unit_amount": unit,
                    "unit_amount_decimal": str(unit),
                }
            )
        return lines

    def create_credit_note(self, params: JSON) -> JSON:  # noqa: PLR0912 - Stripe's rules in one pass
        """Issue a credit note on a finalized invoice (``POST /v1/credit_notes``).

        Raises:
            SandboxError: a draft or void invoice, amounts that do not add up, or more than
                the invoice leaves to credit or the charge to refund.
        """
        invoice_id = params.get("invoice")
        if not invoice_id:
            raise required("invoice")
        invoice = self.billing.get("invoice", invoice_id, "invoice")
        if invoice["status"] in ("draft", "void"):
            raise _invalid(
                "Credit notes can only be issued on open, paid or uncollectible invoices.",
                param="invoice",
            )
        cn_id = new_id("cn_")
        lines = self._credit_lines(invoice, params.get("lines"), cn_id)
        amount = sum(line["amount"] for line in lines) if lines else _int(params, "amount")
        if lines and params.get("amount") not in (None, "") and _int(params, "amount") != amount:
            raise _invalid("The amount must equal the sum of the lines.", param="amount")
        credited = sum(
            int(note["total"])
            for note in self.state.store("credit_note").added.values()
            if note and note["invoice"] == invoice_id and note["status"] == "issued"
        )
        if amount <= 0 or amount > int(invoice["total"]) - credited:
            raise _invalid(
                "The credit note amount exceeds what the invoice leaves to credit.", param="amount"
            )
        now = self.billing.time_for(invoice["customer"])
        post_payment = bool(invoice["paid"]) or invoice["status"] == "paid"
        refund_amount = _int(params, "refund_amount", 0)
        out_of_band = _int(params, "out_of_band_amount", 0)
        credit_amount = _int(params, "credit_amount", 0)
        refund: JSON | None = None
        balance_txn: str | None = None
        if post_payment:
            if refund_amount + out_of_band + credit_amount == 0:
                credit_amount = amount  # Stripe credits the customer's balance by default
            if refund_amount + out_of_band + credit_amount != amount:
                raise _invalid(
                    "refund_amount, credit_amount and out_of_band_amount must add up to the "
                    "credit note's amount.",
                    param="amount",
                )
            if refund_amount:
                if not invoice.get("charge"):
                    raise _invalid("The invoice has no charge to refund.", param="refund_amount")
                refund = self.billing.create_refund(
                    {"charge": invoice["charge"], "amount": refund_amount}
                )
            if credit_amount:
                balance_txn = self._credit_balance(invoice["customer"], -credit_amount, cn_id)
        else:
            if refund_amount or out_of_band or credit_amount:
                raise _invalid(
                    "An open invoice's credit note lowers what is due; it cannot refund.",
                    param="refund_amount",
                )
            if amount > int(invoice["amount_remaining"]):
                raise _invalid(
                    "The credit note amount exceeds the invoice's amount remaining.",
                    param="amount",
                )
        note = {
            "id": cn_id,
            "object": "credit_note",
            "created": now,
            "livemode": False,
            "amount": amount,
            "amount_shipping": 0,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "invoice": invoice_id,
            "discount_amount": 0,
            "discount_amounts": [],
            "memo": params.get("memo"),
            "metadata": merge_metadata({}, params.get("metadata")),
            "number": f"{invoice['number']}-CN-{len(self.state.store('credit_note').added) + 1:02}",
            "pdf": f"https://pay.stripe.com/credit_notes/{cn_id}/pdf",
            "reason": params.get("reason"),
            "status": "issued",
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "tax_amounts": [],
            "total": amount,
            "total_excluding_tax": amount,
            "type": "post_payment" if post_payment else "pre_payment",
            "voided_at": None,
            "out_of_band_amount": out_of_band or None,
            "refund": None if refund is None else refund["id"],
            "refunds": []
            if refund is None
            else [
                {
                    "amount_refunded": refund["amount"],
                    "refund": refund["id"],
                    "type": "refund",
                    "payment_record_refund": None,
                }
            ],
            "customer_balance_transaction": balance_txn,
            "effective_at": now,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "url": f"/v1/credit_notes/{cn_id}/lines",
                "total_count": len(lines),
            },
        }
        self.billing._put(note)
        if not post_payment:
            self._lower_due(invoice_id, amount, now)
        self.state.emit("credit_note.created", note)
        return note

    def _credit_balance(self, customer_id: str, amount: int, cn_id: str) -> str:
        customer = self.billing.get("customer", customer_id)
        previous = {"balance": customer.get("balance", 0)}
        customer["balance"] = int(customer.get("balance") or 0) + amount
        self.billing._put(customer)
        self.state.emit("customer.updated", customer, previous)
        return f"cbtxn_{cn_id[3:]}{'c' if amount < 0 else 'd'}"

    def _lower_due(self, invoice_id: str, amount: int, now: int) -> None:
        """A pre-payment credit note lowers the open invoice's amount due (or raises it back)."""
        invoice = self.billing.get("invoice", invoice_id)
        previous = {
            "amount_due": invoice["amount_due"],
            "amount_remaining": invoice["amount_remaining"],
        }
        invoice["amount_due"] -= amount
        invoice["amount_remaining"] -= amount
        invoice["pre_payment_credit_notes_amount"] = (
            int(invoice.get("pre_payment_credit_notes_amount") or 0) + amount
        )
        self.billing._put(invoice)
        self.state.emit("invoice.updated", invoice, previous)
        if invoice["amount_remaining"] == 0 and invoice["status"] == "open":
            invoice.update(status="paid", paid=True, next_payment_attempt=None)
            invoice["status_transitions"]["paid_at"] = now
            self.billing._put(invoice)
            self.state.emit("invoice.paid", invoice)

    def void_credit_note(self, cn_id: str) -> JSON:
        """Void an issued credit note without a refund (``POST /v1/credit_notes/{id}/void``)."""
        note = self.billing.get("credit_note", cn_id)
        if note["status"] != "issued":
            raise _invalid("This credit note is already void.", code="credit_note_voided")
        if note.get("refund") or note.get("refunds"):
            raise _invalid("A credit note with a refund cannot be voided.")
        invoice = self.billing.get("invoice", note["invoice"])
        if note["type"] == "pre_payment" and invoice["status"] != "open":
            raise _invalid("The credit note's invoice is no longer open.")
        now = self.billing.time_for(note["customer"])
        if note["type"] == "pre_payment":
            self._lower_due(note["invoice"], -int(note["total"]), now)
        elif note.get("customer_balance_transaction"):
            credit = int(note["total"]) - int(note.get("out_of_band_amount") or 0)
            self._credit_balance(note["customer"], credit, cn_id)
        note = self.billing.get("credit_note", cn_id)
        note.update(status="void", voided_at=now)
        self.billing._put(note)
        self.state.emit("credit_note.voided", note)
        return note

    # -- payouts ---------------------------------------------------------------------------
    def automatic_payout(self, currency: str, *, status: str = "pending") -> JSON:
        """Pay out the balance of ``currency`` as Stripe's daily automatic payout does.

        Every balance transaction made through the API in that currency and not paid out yet
        goes into the payout (the sandbox holds no funds back until ``available_on``).

        Raises:
            SandboxError: nothing positive to pay out.
        """
        currency = currency.lower()
        taken = {
            txn_id
            for record in self.state.store(_PAID_OUT).added.values()
            if record
            for txn_id in record["balance_transactions"]
        }
        swept = [
            txn
            for txn in self.state.store("balance_transaction").added.values()
            if txn
            and txn["currency"] == currency
            and txn["type"] != "payout"
            and txn["id"] not in taken
        ]
        amount = sum(int(txn["net"]) for txn in swept)
        if amount <= 0:
            raise _invalid(
                f"The {currency.upper()} balance has nothing to pay out.",
                code="balance_insufficient",
            )
        payout = self.billing.store_payout(
            amount, currency, automatic=True, status=status, description="STRIPE PAYOUT"
        )
        members = [txn["id"] for txn in swept] + [payout["balance_transaction"]]
        self.state.store(_PAID_OUT).put({"id": payout["id"], "balance_transactions": members})
        self.state.emit("payout.created", payout)
        return payout

    def advance_payout(self, po_id: str, status: str) -> JSON:
        """Move a payout to ``status`` (``in_transit``, ``paid``, ``failed`` or ``canceled``)."""
        payout = self.billing.get("payout", po_id)
        previous = {"status": payout["status"]}
        payout["status"] = status
        if status == "paid":
            payout["reconciliation_status"] = "completed"
        self.billing._put(payout)
        self.state.emit("payout.updated", payout, previous)
        if status in _PAYOUT_EVENTS:
            self.state.emit(_PAYOUT_EVENTS[status], payout)
        return payout

    def paid_out(self, po_id: str) -> list[JSON]:
        """The balance transactions an automatic payout paid out, newest first.

        Raises:
            SandboxError: an unknown payout (404) or a manual one (400, as Stripe answers).
        """
        payout = self.state.store("payout").get(po_id)
        if payout is None:
            raise missing("payout", po_id, "payout")
        if not payout.get("automatic"):
            raise _invalid(
                "Balance transaction history can only be filtered on automatic transfers, "
                "not manual.",
                param="payout",
            )
        record = self.state.store(_PAID_OUT).get(po_id)
        if record is not None:
            store = self.state.store("balance_transaction")
            found = [store.get(txn_id) for txn_id in record["balance_transactions"]]
            txns = [txn for txn in found if txn is not None]
        else:
            txns = _seeded_paid_out(self.state.catalog, payout)
        return sorted(txns, key=lambda t: (int(t["created"]), t["id"]), reverse=True)


def _seeded_paid_out(catalog: SeedCatalog, payout: JSON) -> list[JSON]:
    """What seeded payout ``p`` paid out: the seed's movements of its currency since ``p - 1``.

    Each seeded segment (charges, refunds, disputes) is in creation order, so the window is
    found by bisection and only its objects are generated.
    """
    index = catalog.kinds["payout"].index_of(str(payout["id"]))
    if index is None:
        return []
    end = int(payout["created"])
    start = int(catalog.kinds["payout"].make(index - 1)["created"]) if index else None  # type: ignore[index]
    counts = catalog.counts
    charges, refunds, payouts = 2 * catalog.size, counts["refund"], counts["payout"]
    make = catalog.kinds["balance_transaction"].make
    segments = (
        (0, charges, lambda k: catalog.kinds["charge"].make(k)["created"]),  # type: ignore[index]
        (charges, refunds, lambda r: catalog.kinds["refund"].make(r)["created"]),  # type: ignore[index]
        (
            charges + refunds + payouts,
            counts["dispute"],
            lambda d: catalog.kinds["dispute"].make(d)["created"],  # type: ignore[index]
        ),
    )
    out: list[JSON] = []
    for offset, count, created in segments:
        low = 0 if start is None else bisect.bisect_right(range(count), start, key=created)
        high = bisect.bisect_right(range(count), end, key=created)
        for position in range(low, high):
            txn = make(offset + position)
            if txn is not None and txn["currency"] == payout["currency"]:
                out.append(copy.deepcopy(txn))
    own = make(charges + refunds + index)
    if own is not None:
        out.append(own)
    return out
