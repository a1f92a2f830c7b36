"""The QuickBooks streams: which entities the hub reads and how each is read.

Every stream pages its first load with queries ordered by ``MetaData.LastUpdatedTime``.
Afterwards the Change Data Capture entities share one ``/cdc`` call per cycle; TaxCode has no
CDC support and stays on LastUpdatedTime queries.
"""

from __future__ import annotations

from ledgerlink.connector.protocol import Stream, WriteAction, WriterSpec

__all__ = ["CDC_ENTITIES", "STREAMS", "WRITERS", "stream_named"]

CURSOR_FIELD = "MetaData.LastUpdatedTime"

_TRANSACTIONS = ("Invoice", "Payment", "CreditMemo", "RefundReceipt", "Deposit", "JournalEntry")

STREAMS: tuple[Stream, ...] = (
    Stream("Customer", "party", "Id", CURSOR_FIELD, writable=True, supports_deletes=False),
    Stream("Item", "product", "Id", CURSOR_FIELD, writable=True, supports_deletes=False),
    Stream("Account", "ledger_account", "Id", CURSOR_FIELD, supports_deletes=False),
    Stream("Invoice", "invoice", "Id", CURSOR_FIELD, writable=True),
    Stream("Payment", "payment", "Id", CURSOR_FIELD, writable=True),
    Stream("CreditMemo", "credit_note", "Id", CURSOR_FIELD, writable=True),
    Stream("RefundReceipt", "refund", "Id", CURSOR_FIELD, writable=True),
    Stream("Deposit", "payout", "Id", CURSOR_FIELD, writable=True),
    Stream("JournalEntry", "journal_entry", "Id", CURSOR_FIELD, writable=True),
    Stream("TaxCode", "tax_code", "Id", CURSOR_FIELD, supports_deletes=False),
    Stream("Currency", "currency", "Id", CURSOR_FIELD, supports_deletes=False),
)

CDC_ENTITIES: tuple[str, ...] = tuple(s.name for s in STREAMS if s.name != "TaxCode")
"""Entities read through one shared ``/cdc`` call (TaxCode has no CDC support)."""

_WRITE_ACTIONS = frozenset({WriteAction.CREATE, WriteAction.UPDATE})
_VOIDABLE = frozenset({"Invoice"})
"""Entities the API voids (``operation=void``); a CreditMemo, for one, cannot be voided."""
WRITERS: tuple[WriterSpec, ...] = tuple(
    WriterSpec(
        s.name,
        _WRITE_ACTIONS
        | ({WriteAction.DELETE} if s.name in _TRANSACTIONS else set())
        | ({WriteAction.VOID} if s.name in _VOIDABLE else set()),
        batch_size=30,
    )
    for s in STREAMS
    if s.writable
)


def stream_named(name: str) -> Stream | None:
    """The stream called ``name`` (case-insensitive), or None."""
    lowered = name.lower()
    return next((s for s in STREAMS if s.name.lower() == lowered), None)
