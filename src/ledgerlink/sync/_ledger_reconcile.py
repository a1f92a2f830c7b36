"""Payout reconciliation: what Stripe paid out against what the ledger posted through clearing.

A payout empties Stripe's balance of the balance transactions it pays out. Each of those was
posted to the clearing account by one or two documents (a charge: its Payment in, its fee out;
a refund or a dispute: out). So, per payout, the clearing movements of those documents must add
up to the payout amount, and the payout's own Deposit takes exactly that out of clearing.

Which transactions a payout paid out is Stripe's answer to ``GET /v1/balance_transactions?
payout=po_...``, landed as a ``payout_transactions`` record (:func:`tie_payout`). Without it,
the payout is tied to every transaction of its currency created up to the payout and not
already tied to an earlier one, which is how an automatic payout sweeps the balance; the
report says which rule tied each payout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from ledgerlink.connector.protocol import Record
from ledgerlink.domain.money import Money
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.store.repository import Store
from ledgerlink.sync._ledger_world import DOCUMENT_ENTITY, PAYOUT_TIES, LedgerWorld, load_world
from ledgerlink.sync._packed import PackedPayloads

__all__ = ["PayoutReconciliation", "reconcile", "tie_payout"]

RECONCILED = "reconciled"
DIFFERENCE = "difference"
UNPOSTED = "unposted"


@dataclass(frozen=True, slots=True)
class PayoutReconciliation:
    """One payout: Stripe's amount against the clearing movements the ledger posted.

    Attributes:
        payout_id: the Stripe payout.
        created: when Stripe created it.
        currency: the payout currency.
        expected: the payout amount (what left Stripe's balance).
        stripe_net: the net of the balance transactions tied to it (equals ``expected``
            when the tie is complete).
        posted: what the posted documents of those transactions moved through clearing.
        difference: ``expected - posted``.
        deposit_posted: the payout's own Deposit was sent to QuickBooks.
        transactions: how many balance transactions it pays out.
        unposted: of those, how many still have a document waiting or failed.
        tie: ``stripe`` (Stripe's list for the payout) or ``sweep`` (by currency and time).
        status: ``reconciled``, ``difference`` or ``unposted`` (the Deposit is not sent).
    """

    payout_id: str
    created: datetime
    currency: str
    expected: Money
    stripe_net: Money
    posted: Money
    difference: Money
    deposit_posted: bool
    transactions: int
    unposted: int
    tie: str
    status: str


def tie_payout(
    store: Store, payout_id: str, transactions: Iterable[Mapping[str, Any]], *, now: datetime
) -> None:
    """Land Stripe's list of the balance transactions ``payout_id`` paid out.

    Args:
        store: the store.
        payout_id: the payout (``po_...``).
        transactions: the objects of ``GET /v1/balance_transactions?payout=po_...``
            (the payout's own transaction may be among them).
        now: landing time.
    """
    ids = sorted(str(t["id"]) for t in transactions if t.get("source") != payout_id)
    payload = {"payout": payout_id, "balance_transactions": ids}
    store.land("stripe", [Record(PAYOUT_TIES, payout_id, payload)], now=now)


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def clearing_movement(obj: str, payload: Mapping[str, Any], clearing: str) -> Decimal:
    """What a QuickBooks document moves into (+) or out of (-) the clearing account."""

    def ref(node: Any) -> str | None:
        return None if not isinstance(node, Mapping) else str(node.get("value"))

    lines = payload.get("Line") or []
    if obj == "Payment":
        into = ref(payload.get("DepositToAccountRef")) == clearing
        return _decimal(payload.get("TotalAmt")) if into else Decimal(0)
    if obj == "JournalEntry":
        total = Decimal(0)
        for line in lines:
            detail = line.get("JournalEntryLineDetail") or {}
            if ref(detail.get("AccountRef")) == clearing:
                sign = 1 if detail.get("PostingType") == "Debit" else -1
                total += sign * _decimal(line.get("Amount"))
        return total
    if obj == "RefundReceipt" and ref(payload.get("DepositToAccountRef")) == clearing:
        sales = sum(
            (
                _decimal(x.get("Amount"))
                for x in lines
                if x.get("DetailType") != "DiscountLineDetail"
            ),
            Decimal(0),
        )
        tax = _decimal((payload.get("TxnTaxDetail") or {}).get("TotalTax"))
        return -(sales + tax)
    if obj == "Deposit":
        total = Decimal(0)
        for line in lines:
            if ref((line.get("DepositLineDetail") or {}).get("AccountRef")) == clearing:
                total -= _decimal(line.get("Amount"))
        if ref(payload.get("DepositToAccountRef")) == clearing:
            total += sum((_decimal(x.get("Amount")) for x in lines), Decimal(0))
        return total
    return Decimal(0)


def _documents(txn: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (Stripe id, QuickBooks object) of the documents that post ``txn`` to clearing."""
    source = str(txn.get("source") or "")
    category = txn.get("reporting_category") or txn.get("type")
    if category == "dispute":
        return [(str(txn["id"]), "JournalEntry")]
    if txn.get("type") == "charge":
        return [(source, "Payment"), (str(txn["id"]), "JournalEntry")]
    if txn.get("type") == "refund":
        return [(source, "RefundReceipt")]
    return [(str(txn["id"]), "JournalEntry")]


def _ties(world: LedgerWorld) -> dict[str, tuple[list[Mapping[str, Any]], str]]:
    txns = world.stripe.get("balance_transactions") or PackedPayloads()
    payouts = world.stripe.get("payouts") or PackedPayloads()
    taken = {t for ids in world.ties.values() for t in ids}
    ties: dict[str, tuple[list[Mapping[str, Any]], str]] = {}
    ordered: list[Mapping[str, Any]] | None = None
    for payout in payouts.by_created():
        payout_id = str(payout["id"])
        if payout_id in world.ties:
            ties[payout_id] = ([txns[t] for t in world.ties[payout_id] if t in txns], "stripe")
            continue
        if ordered is None:
            ordered = list(txns.by_created())
        swept = [
            t
            for t in ordered
            if t["id"] not in taken
            and t.get("type") != "payout"
            and str(t.get("currency")).lower() == str(payout["currency"]).lower()
            and int(t.get("created") or 0) <= int(payout.get("created") or 0)
        ]
        taken.update(str(t["id"]) for t in swept)
        ties[payout_id] = (swept, "sweep")
    return ties


def reconcile(
    store: Store | Engine,
    mappings: MappingSet,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[PayoutReconciliation]:
    """Reconcile every landed payout created in ``[start, end)`` with the posted documents.

    Args:
        store: the store (or its engine).
        mappings: the mappings (the clearing account's name).
        start: first creation time included (None: the first payout).
        end: creation time excluded (None: now).

    Returns:
        One line per payout, oldest first.
    """
    engine = store.engine if isinstance(store, Store) else store
    with engine.connect() as conn:
        world = load_world(conn)
    clearing = world.accounts.get(mappings.account("clearing").name.strip().lower(), "")
    lines: list[PayoutReconciliation] = []
    for payout_id, (tied, tie) in _ties(world).items():
        payout = world.stripe["payouts"][payout_id]
        created = datetime.fromtimestamp(int(payout.get("created") or 0), UTC)
        if (start is not None and created < start) or (end is not None and created >= end):
            continue
        currency = str(payout["currency"]).upper()
        posted = Decimal(0)
        unposted = 0
        for txn in tied:
            for stripe_id, obj in _documents(txn):
                if (
                    obj == "JournalEntry"
                    and not int(txn.get("fee") or 0)
                    and txn.get("type") == "charge"
                ):
                    continue  # a charge without a fee has no fee entry
                row = world.rows.get((DOCUMENT_ENTITY, stripe_id, obj))
                if row is None or row.status != "done":
                    unposted += 1
                    continue
                posted += clearing_movement(obj, row.payload, clearing)
        deposit = world.rows.get((DOCUMENT_ENTITY, payout_id, "Deposit"))
        deposit_posted = deposit is not None and deposit.status == "done"
        expected = Money(int(payout["amount"]), currency)
        posted_money = Money.from_decimal(posted, currency)
        net = Money(sum(int(t.get("net") or 0) for t in tied), currency)
        difference = expected - posted_money
        if not deposit_posted:
            status = UNPOSTED
        elif difference.is_zero and unposted == 0:
            status = RECONCILED
        else:
            status = DIFFERENCE
        lines.append(
            PayoutReconciliation(
                payout_id=payout_id,
                created=created,
                currency=currency,
                expected=expected,
                stripe_net=net,
                posted=posted_money,
                difference=difference,
                deposit_posted=deposit_posted,
                transactions=len(tied),
                unposted=unposted,
                tie=tie,
                status=status,
            )
        )
    return sorted(lines, key=lambda line: (line.created, line.payout_id))


def statuses() -> Sequence[str]:
    """Every status a reconciliation line can have."""
    return (RECONCILED, DIFFERENCE, UNPOSTED)
