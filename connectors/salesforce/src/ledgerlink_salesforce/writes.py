"""Writing to Salesforce: batched upsert by external id, update by Id, create, delete.

Operations are grouped by object and action into sObject Collections calls of at most 200
records with ``allOrNone=false``, so one bad record never holds back the others; each record's
result or error is mapped back to its :class:`~ledgerlink.connector.protocol.WriteOp`.

* ``UPSERT`` (and ``CREATE`` of an object with an external-id field): ``PATCH
  /composite/sobjects/{Type}/{ExternalIdField}``; the external-id value is the op's
  ``external_id`` or else its idempotency key, which makes a repeated write land on the same
  record. A group of one uses ``PATCH /sobjects/{Type}/{Field}/{value}``, where several
  records sharing the value answer HTTP 300: a :class:`ConflictError` for review, not a guess;
  but only for a value of letters, digits, ``-`` and ``_``: in a URL path Salesforce reads a
  ``/`` (even encoded) as a separator and some endings (``.inc``) as a file format, so any
  other value goes in the body of the collections call.
* ``UPDATE``: ``PATCH /composite/sobjects`` with each record's ``Id``.
* ``DELETE``: ``DELETE /composite/sobjects?ids=...``; an already deleted record counts as done.

Records failing with ``UNABLE_TO_LOCK_ROW`` are sent again, alone, after a backoff. Field
errors become :class:`RecordError` for that op; a call-level error (budget spent, auth) is
given to every op of the call and stops the remaining batches when no further call can work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ledgerlink.connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectorError,
    QuotaExhaustedError,
    RecordError,
    RetryableError,
)
from ledgerlink.connector.protocol import WriteAction, WriteOp, WriteResult
from ledgerlink_salesforce.client import SalesforceClient
from ledgerlink_salesforce.errors import error_from_record
from ledgerlink_salesforce.settings import SalesforceSettings

__all__ = ["COLLECTION_LIMIT", "Writer"]

COLLECTION_LIMIT = 200
_READ_ONLY = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "attributes",
}
_STOP = (QuotaExhaustedError, AuthenticationError, ConfigurationError)
_PATH_SAFE = re.compile(r"[A-Za-z0-9_-]+")
"""External-id values that can travel in a URL path as they are."""


class Writer:
    """Applies write operations for one connection."""

    def __init__(self, client: SalesforceClient, settings: SalesforceSettings) -> None:
        self.client = client
        self.settings = settings

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Yield one :class:`WriteResult` per op, in batches of at most 200 records."""
        stopped: ConnectorError | None = None
        for batch in self._batches(ops):
            if stopped is not None:
                yield from (WriteResult(op.idempotency_key, error=stopped) for op in batch)
                continue
            results = self._send(batch)
            for result in results:
                if isinstance(result.error, _STOP):
                    stopped = result.error
            yield from results

    # ----- batching -----------------------------------------------------------------------
    def _kind(self, op: WriteOp) -> str:
        if op.action in (WriteAction.UPSERT, WriteAction.CREATE):
            return "upsert"
        return op.action.value

    def _external_value(self, op: WriteOp) -> str:
        return op.external_id or op.idempotency_key

    def _batches(self, ops: Sequence[WriteOp]) -> Iterator[list[WriteOp]]:
        groups: dict[tuple[str, str], list[list[WriteOp]]] = {}
        order: list[tuple[str, str]] = []
        for op in ops:
            key = (op.object, self._kind(op))
            if key not in groups:
                groups[key] = [[]]
                order.append(key)
            current = groups[key][-1]
            same_target = key[1] == "upsert" and any(
                self._external_value(o) == self._external_value(op) for o in current
            )
            if len(current) >= COLLECTION_LIMIT or same_target:
                current = []
                groups[key].append(current)
            current.append(op)
        for key in order:
            yield from groups[key]

    # ----- calls --------------------------------------------------------------------------
    def _send(self, batch: list[WriteOp]) -> list[WriteResult]:
        kind = self._kind(batch[0])
        pending = list(range(len(batch)))
        results: dict[int, WriteResult] = {}
        attempt = 0
        while pending:
            attempt += 1
            ops = [batch[i] for i in pending]
            try:
                answers = self._call(kind, ops)
            except ConnectorError as exc:
                for i in pending:
                    results[i] = WriteResult(batch[i].idempotency_key, error=exc)
                break
            retry: list[int] = []
            for i, answer in zip(pending, answers, strict=True):
                if (
                    isinstance(answer.error, RetryableError)
                    and answer.error.vendor_code == "UNABLE_TO_LOCK_ROW"
                    and attempt < self.client.retry.max_attempts
                ):
                    retry.append(i)
                else:
                    results[i] = answer
            pending = retry
            if pending:
                self.client.sleep(self.client.retry.delay_for(attempt, None))
        return [results[i] for i in range(len(batch))]

    def _fields(self, op: WriteOp, drop: str | None = None) -> dict[str, Any]:
        return {k: v for k, v in op.payload.items() if k not in _READ_ONLY and k != drop}

    def _call(self, kind: str, ops: list[WriteOp]) -> list[WriteResult]:
        object_name = ops[0].object
        if kind == "upsert":
            field = self.settings.external_id_for(object_name)
            if len(ops) == 1 and _PATH_SAFE.fullmatch(self._external_value(ops[0])):
                return [self._upsert_one(ops[0], field)]
            records = [
                {
                    "attributes": {"type": object_name},
                    **self._fields(op, field),
                    field: self._external_value(op),
                }
                for op in ops
            ]
            answer = self.client.rest(
                f"composite/sobjects/{object_name}/{field}",
                "PATCH",
                json={"allOrNone": False, "records": records},
            )
            return self._map(ops, answer)
        if kind == "update":
            missing = [op for op in ops if not op.remote_id]
            if missing:
                error = RecordError("update needs the record Id (remote_id)", field="Id")
                return [
                    WriteResult(op.idempotency_key, error=error)
                    if not op.remote_id
                    else self._call("update", [op])[0]
                    for op in ops
                ]
            records = [
                {"attributes": {"type": object_name}, "Id": op.remote_id, **self._fields(op)}
                for op in ops
            ]
            answer = self.client.rest(
                "composite/sobjects", "PATCH", json={"allOrNone": False, "records": records}
            )
            return self._map(ops, answer)
        ids = ",".join(str(op.remote_id) for op in ops)
        answer = self.client.rest(
            "composite/sobjects", "DELETE", params={"ids": ids, "allOrNone": "false"}
        )
        return self._map(ops, answer, deleting=True)

    def _upsert_one(self, op: WriteOp, field: str) -> WriteResult:
        value = quote(self._external_value(op), safe="")
        answer = self.client.rest(
            f"sobjects/{op.object}/{field}/{value}", "PATCH", json=self._fields(op, field)
        )
        if isinstance(answer, Mapping):
            return WriteResult(
                op.idempotency_key,
                remote_id=str(answer.get("id") or "") or None,
                response=dict(answer),
            )
        return WriteResult(op.idempotency_key)

    @staticmethod
    def _map(ops: list[WriteOp], answer: Any, *, deleting: bool = False) -> list[WriteResult]:
        if not isinstance(answer, list) or len(answer) != len(ops):
            error = RetryableError("sObject Collections answer did not match the request")
            return [WriteResult(op.idempotency_key, error=error) for op in ops]
        results = []
        for op, item in zip(ops, answer, strict=True):
            if item.get("success"):
                results.append(
                    WriteResult(op.idempotency_key, remote_id=item.get("id"), response=dict(item))
                )
                continue
            errors = item.get("errors") or []
            codes = {e.get("statusCode") for e in errors}
            if deleting and "ENTITY_IS_DELETED" in codes:
                results.append(
                    WriteResult(
                        op.idempotency_key,
                        remote_id=op.remote_id,
                        replayed=True,
                        response=dict(item),
                    )
                )
                continue
            results.append(
                WriteResult(
                    op.idempotency_key, error=error_from_record(errors), response=dict(item)
                )
            )
        return results
