"""Writes to Stripe: customers, subscriptions and invoices from an accepted quote.

Every POST carries an idempotency key derived from the outbox row's key, so a write retried
after a crash (the response lost) replays Stripe's saved response instead of creating a
second object. A write made of several calls (an invoice: the draft, one item per quote line,
finalisation) derives one key per call from the row's key (``<key>:invoice``,
``<key>:line:<n>``, ``<key>:finalize``), so a retry resumes wherever it stopped.

Payload conventions (the hub's names; everything else passes through in Stripe's names):

``customers``      ``golden_customer_id`` and ``salesforce_account_id`` move into
                   ``metadata[ledgerlink_customer_id]`` and ``metadata[salesforce_account_id]``.
``subscriptions``  Stripe's subscription parameters (``customer``, ``items``, ``metadata``...).
``invoices``       ``customer``, ``currency``, ``lines`` (each ``price`` + ``quantity``, or
                   ``unit_amount`` + ``quantity`` + ``description``), optional
                   ``collection_method``, ``days_until_due``, ``metadata``, ``description``
                   and ``finalize`` (default true).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ledgerlink.connector.errors import ConnectorError, RecordError
from ledgerlink.connector.protocol import WriteAction, WriteOp, WriteResult, WriterSpec
from ledgerlink_stripe.client import StripeApi, WriteAnswer

__all__ = ["WRITERS", "StripeWriter", "customer_params"]

JSON = dict[str, Any]

#: Rows the push worker claims at once. Stripe has no batch API: ``write`` still makes one call
#: per row, each under its own ``Idempotency-Key``, so a group resent after a crash replays
#: each call; claiming them together saves the store two transactions per call.
CLAIM_GROUP = 25

WRITERS: tuple[WriterSpec, ...] = (
    WriterSpec("customers", frozenset({WriteAction.CREATE, WriteAction.UPDATE}), CLAIM_GROUP),
    WriterSpec("subscriptions", frozenset({WriteAction.CREATE, WriteAction.UPDATE}), CLAIM_GROUP),
    WriterSpec("invoices", frozenset({WriteAction.CREATE}), CLAIM_GROUP),
)
_HUB_METADATA = {
    "golden_customer_id": "ledgerlink_customer_id",
    "salesforce_account_id": "salesforce_account_id",
}


def customer_params(payload: Mapping[str, Any]) -> JSON:
    """Return Stripe customer parameters with the hub's cross-reference ids in metadata."""
    params = {k: v for k, v in payload.items() if k not in _HUB_METADATA}
    metadata = dict(params.get("metadata") or {})
    for field, key in _HUB_METADATA.items():
        if payload.get(field):
            metadata[key] = str(payload[field])
    if metadata:
        params["metadata"] = metadata
    return params


class StripeWriter:
    """Applies write operations, one result per operation."""

    def __init__(self, api: StripeApi) -> None:
        self.api = api

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Apply ``ops`` in order (Stripe has no batch API), yielding one result each."""
        for op in ops:
            try:
                answer = self._apply(op)
            except ConnectorError as error:
                yield WriteResult(op.idempotency_key, remote_id=op.remote_id, error=error)
                continue
            yield WriteResult(
                op.idempotency_key,
                remote_id=str(answer.body["id"]),
                replayed=answer.replayed,
                response=answer.body,
            )

    def _apply(self, op: WriteOp) -> WriteAnswer:
        key = op.idempotency_key
        supported = {spec.object: spec.actions for spec in WRITERS}
        if op.action not in supported.get(op.object, frozenset()):
            msg = f"Stripe connector cannot {op.action.value} {op.object}"
            raise RecordError(msg, vendor_code="unsupported_write")
        if op.action is WriteAction.UPDATE and not op.remote_id:
            msg = f"update of {op.object} needs remote_id"
            raise RecordError(msg, vendor_code="missing_remote_id")
        if op.object == "customers":
            params = customer_params(op.payload)
            path = f"/v1/customers/{op.remote_id}" if op.remote_id else "/v1/customers"
            return self.api.post(path, params, key)
        if op.object == "subscriptions":
            path = f"/v1/subscriptions/{op.remote_id}" if op.remote_id else "/v1/subscriptions"
            return self.api.post(path, dict(op.payload), key)
        return self._invoice_from_quote(op)

    def _invoice_from_quote(self, op: WriteOp) -> WriteAnswer:
        payload = dict(op.payload)
        lines: list[Mapping[str, Any]] = list(payload.pop("lines", []) or [])
        finalize = bool(payload.pop("finalize", True))
        if not lines:
            msg = "an invoice from a quote needs at least one line"
            raise RecordError(msg, vendor_code="no_lines", field="lines")
        key = op.idempotency_key
        draft = self.api.post("/v1/invoices", payload, f"{key}:invoice")
        invoice_id = str(draft.body["id"])
        for number, line in enumerate(lines):
            params: JSON = {"customer": payload["customer"], "invoice": invoice_id, **line}
            if "price" in params:
                # Since 2025-03-31 an invoice item names its price as pricing[price]; the
                # top-level price parameter is refused by the pinned API version.
                params["pricing"] = {"price": params.pop("price")}
            elif "currency" not in line and payload.get("currency"):
                params["currency"] = payload["currency"]
            self.api.post("/v1/invoiceitems", params, f"{key}:line:{number}")
        if not finalize:
            return WriteAnswer(self.api.get(f"/v1/invoices/{invoice_id}"), draft.replayed)
        final = self.api.post(f"/v1/invoices/{invoice_id}/finalize", {}, f"{key}:finalize")
        return WriteAnswer(final.body, draft.replayed)
