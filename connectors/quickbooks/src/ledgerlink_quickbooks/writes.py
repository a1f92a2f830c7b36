"""Writing to QuickBooks: create, sparse update with SyncToken, delete, batched by 30.

Every call carries ``requestid`` derived from the outbox idempotency key
(:func:`requestid_for`), so a resend after a timeout returns the first answer instead of a
second invoice. Several operations go to ``/batch`` (at most 30 per call), whose per-item
``bId`` answers are mapped back to their operations; a single operation goes to the entity
endpoint. An update without a ``SyncToken`` in its payload gets the current one from one
query per entity. A stale SyncToken (5010) refetches the record, re-applies only the hub's
own fields as a sparse update and retries once under a derived requestid. A void
(``operation=void``, invoices only) sends ``Id`` and ``SyncToken`` alone, one request each to
the entity endpoint: the form Intuit documents for a void.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ledgerlink.connector.errors import (
    ConfigurationError,
    ConnectorError,
    FatalError,
    RetryableError,
    StaleVersionError,
)
from ledgerlink.connector.protocol import WriteAction, WriteOp, WriteResult
from ledgerlink_quickbooks import qbql
from ledgerlink_quickbooks.errors import error_from_fault, fault_of
from ledgerlink_quickbooks.streams import WRITERS

if TYPE_CHECKING:
    from ledgerlink_quickbooks.connector import QuickBooksConnector

__all__ = ["MAX_REQUESTID", "requestid_for", "write_ops"]

MAX_REQUESTID = 50
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,50}$")
JSON = dict[str, Any]


def requestid_for(key: str) -> str:
    """The ``requestid`` for idempotency key ``key``: itself if short and URL-safe, else a hash.

    The hash is deterministic (``h-`` + 48 hex digits of SHA-256), so a retry of the same
    outbox row always sends the same requestid.
    """
    if _SAFE.match(key):
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[: MAX_REQUESTID - 2]


def _writer_error(op: WriteOp) -> ConnectorError | None:
    spec = next((w for w in WRITERS if w.object.lower() == op.object.lower()), None)
    if spec is None:
        return ConfigurationError(f"QuickBooks cannot write {op.object!r}")
    if op.action not in spec.actions:
        return FatalError(f"QuickBooks cannot {op.action.value} {spec.object}")
    if op.action in {WriteAction.UPDATE, WriteAction.DELETE, WriteAction.VOID} and not (
        op.remote_id
    ):
        return FatalError(f"{op.action.value} of {spec.object} needs remote_id")
    return None


def _entity(op: WriteOp) -> str:
    return next(w.object for w in WRITERS if w.object.lower() == op.object.lower())


def _body(op: WriteOp, sync_token: str | None) -> JSON:
    body = {k: v for k, v in op.payload.items() if k not in {"Id", "sparse"}}
    if op.action == WriteAction.CREATE:
        return body
    body["Id"] = op.remote_id
    if sync_token is not None:
        body["SyncToken"] = sync_token
    if op.action in {WriteAction.DELETE, WriteAction.VOID}:
        return {"Id": op.remote_id, "SyncToken": body.get("SyncToken")}
    body["sparse"] = True
    return body


def _result(op: WriteOp, answer: JSON, entity: str) -> WriteResult:
    fault = fault_of(answer)
    if fault is not None:
        return WriteResult(op.idempotency_key, error=error_from_fault(fault))
    record = answer.get(entity)
    if not isinstance(record, dict):
        error = RetryableError(f"QuickBooks answer without {entity}")
        return WriteResult(op.idempotency_key, error=error)
    return WriteResult(op.idempotency_key, remote_id=str(record.get("Id")), response=record)


def _sync_tokens(conn: QuickBooksConnector, ops: Sequence[WriteOp]) -> dict[tuple[str, str], str]:
    """Current SyncTokens for updates/deletes that did not bring one: one query per entity."""
    wanted: dict[str, set[str]] = {}
    for op in ops:
        if op.action != WriteAction.CREATE and "SyncToken" not in op.payload and op.remote_id:
            wanted.setdefault(_entity(op), set()).add(op.remote_id)
    tokens: dict[tuple[str, str], str] = {}
    for entity, ids in wanted.items():
        listed = ", ".join(qbql.quote(i) for i in sorted(ids))
        answer = conn.query(qbql.select(entity, [f"Id IN ({listed})"]))
        for row in (answer.get("QueryResponse") or {}).get(entity) or []:
            tokens[(entity, str(row["Id"]))] = str(row["SyncToken"])
    return tokens


def _send_one(conn: QuickBooksConnector, op: WriteOp, body: JSON, requestid: str) -> WriteResult:
    entity = _entity(op)
    operation = {
        WriteAction.DELETE: "delete",
        WriteAction.UPDATE: "update",
        WriteAction.VOID: "void",
    }.get(op.action)
    try:
        answer = conn.post_json(entity.lower(), body, requestid=requestid, operation=operation)
    except ConnectorError as exc:
        return WriteResult(op.idempotency_key, error=exc)
    return _result(op, answer, entity)


def _retry_stale(conn: QuickBooksConnector, op: WriteOp) -> WriteResult:
    """Refetch the record and re-apply only the hub's fields with its current SyncToken."""
    entity = _entity(op)
    try:
        current = conn.get_json(f"{entity.lower()}/{op.remote_id}")[entity]
    except ConnectorError as exc:
        return WriteResult(op.idempotency_key, error=exc)
    fresh = WriteOp(
        op.idempotency_key,
        op.object,
        op.action,
        {k: v for k, v in op.payload.items() if k != "SyncToken"},
        remote_id=op.remote_id,
    )
    body = _body(fresh, str(current["SyncToken"]))
    return _send_one(conn, fresh, body, requestid_for(f"{op.idempotency_key}#stale-retry"))


def _send_chunk(conn: QuickBooksConnector, ops: Sequence[WriteOp]) -> list[WriteResult]:
    try:
        tokens = _sync_tokens(conn, ops)
    except ConnectorError as exc:
        return [WriteResult(op.idempotency_key, error=exc) for op in ops]
    bodies = [
        _body(op, op.payload.get("SyncToken") or tokens.get((_entity(op), op.remote_id or "")))
        for op in ops
    ]
    if len(ops) == 1 or any(op.action == WriteAction.VOID for op in ops):
        results = [
            _send_one(conn, op, body, requestid_for(op.idempotency_key))
            for op, body in zip(ops, bodies, strict=True)
        ]
    else:
        items = [
            {"bId": str(index), "operation": op.action.value, _entity(op): body}
            for index, (op, body) in enumerate(zip(ops, bodies, strict=True))
        ]
        batch_key = "batch|" + "|".join(op.idempotency_key for op in ops)
        try:
            answer = conn.post_json(
                "batch", {"BatchItemRequest": items}, requestid=requestid_for(batch_key), batch=True
            )
        except ConnectorError as exc:
            return [WriteResult(op.idempotency_key, error=exc) for op in ops]
        by_bid = {str(item.get("bId")): item for item in answer.get("BatchItemResponse") or []}
        results = []
        for index, op in enumerate(ops):
            item = by_bid.get(str(index))
            if item is None:
                error = RetryableError(f"QuickBooks batch answer lacks item {index}")
                results.append(WriteResult(op.idempotency_key, error=error))
            else:
                results.append(_result(op, item, _entity(op)))
    for index, (op, result) in enumerate(zip(ops, results, strict=True)):
        if isinstance(result.error, StaleVersionError) and op.action == WriteAction.UPDATE:
            results[index] = _retry_stale(conn, op)
    return results


def write_ops(conn: QuickBooksConnector, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
    """Apply ``ops`` through ``conn``, yielding one result per op, in order.

    Args:
        conn: the connection.
        ops: operations with their idempotency keys.

    Yields:
        One :class:`WriteResult` per op (errors as the core's error classes).
    """
    size = conn.settings.batch_size
    for start in range(0, len(ops), size):
        chunk = list(ops[start : start + size])
        errors = {i: _writer_error(op) for i, op in enumerate(chunk)}
        valid = [op for i, op in enumerate(chunk) if errors[i] is None]
        sent = iter(_send_chunk(conn, valid) if valid else [])
        for i, op in enumerate(chunk):
            error = errors[i]
            yield WriteResult(op.idempotency_key, error=error) if error else next(sent)
