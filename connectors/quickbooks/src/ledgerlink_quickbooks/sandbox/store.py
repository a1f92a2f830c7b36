"""The sandbox company: entity tables, validation, SyncToken locking, CDC and a ledger.

One :class:`Company` is one QuickBooks realm. Each entity lives in an :class:`EntityTable`
that combines lazily generated seed records (see :mod:`.data`) with an overlay of records
created or changed through the API and the tombstones of deleted ones. Every accepted
transaction posts to a small double-entry ledger (computed on demand from the documents), so
tests can ask for a trial balance and the receivable per customer.

Validation failures raise :class:`QboFault`, which the app renders as the real
``{"Fault": {"Error": [...], "type": ...}}`` body.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledgerlink.connector.sandbox import pack_record, unpack_record
from ledgerlink_quickbooks.sandbox import data
from ledgerlink_quickbooks.sandbox.qbql import Condition, ParsedQuery

__all__ = ["CDC_ENTITIES", "ENTITIES", "Clock", "Company", "EntityTable", "QboFault"]

JSON = dict[str, Any]

ENTITIES = (
    "Customer",
    "Item",
    "Account",
    "Invoice",
    "Payment",
    "CreditMemo",
    "RefundReceipt",
    "Deposit",
    "JournalEntry",
    "TaxCode",
    "Currency",
)
CDC_ENTITIES = frozenset(ENTITIES) - {"TaxCode"}
TRANSACTIONS = frozenset(
    {"Invoice", "Payment", "CreditMemo", "RefundReceipt", "Deposit", "JournalEntry"}
)
NAME_LISTS = frozenset({"Customer", "Item", "Account"})
CDC_WINDOW = dt.timedelta(days=30)
CDC_MAX_OBJECTS = 1000
STALE_DETAIL = (
    "Stale Object Error : You and Jane Bookkeeper were working on this at the same time. "
    "Jane Bookkeeper finished before you did, so your work was not saved."
)


class QboFault(Exception):  # noqa: N818 - named after the vendor's Fault element
    """A fault the sandbox answers with, in QuickBooks' shape."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        fault_type: str = "ValidationFault",
        element: str = "",
        status: int = 400,
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.detail = detail
        self.fault_type = fault_type
        self.element = element
        self.status = status

    def body(self) -> JSON:
        """The ``Fault`` element."""
        error = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element:
            error["element"] = self.element
        return {"Error": [error], "type": self.fault_type}


class Clock:
    """The sandbox's time: wall clock plus an offset tests can move forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        """Current sandbox time (aware UTC)."""
        with self._lock:
            return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        """Move time forward by ``delta``."""
        with self._lock:
            self.offset += delta


pack = pack_record
"""Kept records' form (see :func:`ledgerlink.connector.sandbox.pack_record`)."""
unpack = unpack_record


@dataclass
class EntityTable:
    """Records of one entity: ``generated`` seed records, an overlay and tombstones.

    Generated records have ids ``1..generated`` and non-decreasing LastUpdatedTime; every API
    change lands in ``overlay`` in time order (insertion order), so a LastUpdatedTime scan is
    a binary search into the seed plus a walk over the overlay. Overlay records are kept
    packed (see :func:`pack`), about a fifth of the dicts' size; every read decodes a fresh copy.
    """

    name: str
    generated: int = 0
    make: Callable[[int], JSON] | None = None
    time_of: Callable[[int], dt.datetime] | None = None
    overlay: dict[int, bytes | JSON] = field(default_factory=dict)
    overlay_time: dict[int, dt.datetime] = field(default_factory=dict)
    deleted: dict[int, dt.datetime] = field(default_factory=dict)
    next_id: int = 0
    # Every put in order: its time and id, and each id's latest entry. A LastUpdatedTime scan
    # bisects into it instead of walking the whole overlay: a client paging a million records
    # a thousand at a time would otherwise make the scan quadratic. Only while puts come in
    # time order (the company's stamps never go backwards); otherwise the walk is used.
    _log_times: list[dt.datetime] = field(default_factory=list, repr=False)
    _log_ids: list[int] = field(default_factory=list, repr=False)
    _latest: dict[int, int] = field(default_factory=dict, repr=False)
    _log_ordered: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        self.next_id = max(self.next_id, self.generated + 1)

    def get(self, rid: int) -> JSON | None:
        """The current record ``rid`` or None (deleted or unknown)."""
        if rid in self.deleted:
            return None
        stored = self.overlay.get(rid)
        if stored is not None:
            return unpack(stored)
        if 1 <= rid <= self.generated and self.make is not None:
            return self.make(rid)
        return None

    def put(self, rid: int, record: JSON, when: dt.datetime) -> None:
        """Store ``record`` as the newest change."""
        self.overlay.pop(rid, None)
        self.overlay_time.pop(rid, None)
        self.overlay[rid] = pack(record)
        self.overlay_time[rid] = when
        if self._log_times and when < self._log_times[-1]:
            self._log_ordered = False
        self._latest[rid] = len(self._log_ids)
        self._log_times.append(when)
        self._log_ids.append(rid)

    def delete(self, rid: int, when: dt.datetime) -> None:
        """Turn ``rid`` into a tombstone."""
        self.overlay.pop(rid, None)
        self.overlay_time.pop(rid, None)
        self._latest.pop(rid, None)
        self.deleted[rid] = when

    def allocate_id(self) -> int:
        """A fresh id."""
        rid = self.next_id
        self.next_id += 1
        return rid

    def by_id(self) -> Iterator[JSON]:
        """Every live record in Id order."""
        for rid in range(1, self.next_id):
            record = self.get(rid)
            if record is not None:
                yield record

    def by_time(self, since: dt.datetime | None = None) -> Iterator[JSON]:
        """Live records with LastUpdatedTime >= ``since`` in time order."""
        start = 1
        if since is not None and self.time_of is not None and self.generated:
            start = 1 + bisect.bisect_left(range(1, self.generated + 1), since, key=self.time_of)
        if self.make is not None:
            for rid in range(start, self.generated + 1):
                if rid not in self.overlay and rid not in self.deleted:
                    yield self.make(rid)
        if since is None or not self._log_ordered:
            for rid, stored in list(self.overlay.items()):
                if since is None or self.overlay_time[rid] >= since:
                    yield unpack(stored)
            return
        ids, end = self._log_ids, len(self._log_ids)
        for position in range(bisect.bisect_left(self._log_times, since, hi=end), end):
            rid = ids[position]
            if self._latest.get(rid) == position:
                yield unpack(self.overlay[rid])

    def deleted_since(self, since: dt.datetime) -> Iterator[tuple[int, dt.datetime]]:
        """Tombstones at or after ``since``."""
        for rid, when in list(self.deleted.items()):
            if when >= since:
                yield rid, when


def _get_path(record: JSON, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, str) and isinstance(right, str) and "T" in right and ":" in right:
        try:
            return data.parse_time(left), data.parse_time(right)
        except ValueError:
            return left, right
    if isinstance(left, str) and isinstance(right, int | float) and not isinstance(right, bool):
        try:
            return float(left), float(right)
        except ValueError:
            return left, right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left), float(right)
    return left, right


def _matches(record: JSON, cond: Condition) -> bool:  # noqa: PLR0911 - one return per operator
    value = _get_path(record, cond.field)
    if cond.op == "IN":
        return any(_coerce(value, v)[0] == _coerce(value, v)[1] for v in cond.value)
    if value is None:
        return False
    if cond.op == "LIKE":
        pattern = str(cond.value)
        text = str(value)
        if pattern.startswith("%") and pattern.endswith("%"):
            return pattern.strip("%") in text
        if pattern.endswith("%"):
            return text.startswith(pattern[:-1])
        if pattern.startswith("%"):
            return text.endswith(pattern[1:])
        return text == pattern
    left, right = _coerce(value, cond.value)
    try:
        return bool(
            {
                "=": left == right,
                "!=": left != right,
                "<": left < right,
                ">": left > right,
                "<=": left <= right,
                ">=": left >= right,
            }[cond.op]
        )
    except TypeError:
        return False


def _named_ids(table: EntityTable, conditions: Sequence[Condition]) -> list[int] | None:
    """The ids an ``Id = ..`` or ``Id IN (..)`` condition names, ascending; None if none does.

    Looking those records up is what QuickBooks' own index does; the other conditions are
    still applied to them. TaxCode ids are not numbers (see :meth:`Company.find`).
    """
    if table.name == "TaxCode":
        return None
    for cond in conditions:
        if cond.field != "Id" or cond.op not in ("=", "IN"):
            continue
        values = cond.value if cond.op == "IN" else [cond.value]
        if not all(isinstance(v, str | int) and str(v).isdigit() for v in values):
            return None
        return sorted({int(v) for v in values if 0 < int(v) < table.next_id})
    return None


def _dec(value: Any) -> Decimal:
    return Decimal(str(value or 0))


@dataclass
class Idempotency:
    """First answers by requestid: ``(status, body)``.

    A batch answer holds up to 30 whole records and is read again only if the client repeats
    its requestid, so answers are kept packed like records (see :func:`pack`).
    """

    answers: dict[str, tuple[int, bytes | JSON]] = field(default_factory=dict)

    def get(self, requestid: str) -> tuple[int, JSON] | None:
        """The first answer to ``requestid``, or None."""
        saved = self.answers.get(requestid)
        return None if saved is None else (saved[0], unpack(saved[1]))

    def setdefault(self, requestid: str, status: int, body: JSON) -> tuple[int, JSON]:
        """Save ``(status, body)`` unless ``requestid`` has an answer; return the first one."""
        if requestid not in self.answers:
            self.answers[requestid] = (status, pack(body))
            return status, body
        saved = self.get(requestid)
        assert saved is not None  # just checked
        return saved


class Company:
    """One realm's books.

    Args:
        realm_id: the company id in paths.
        seed: data seed.
        size: number of generated customers (invoices = size, payments = size // 2).
        clock: shared sandbox clock.
    """

    def __init__(
        self,
        realm_id: str,
        seed: int,
        size: int,
        clock: Clock,
        *,
        customers: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if customers is not None:
            # A shared roster fixes the customers; invoices and payments follow their number.
            size = len(customers)
        self.realm_id = realm_id
        self.seed = seed
        self.size = size
        self.clock = clock
        self.lock = threading.RLock()
        self.idempotency = Idempotency()
        self._last_stamp = dt.datetime.min.replace(tzinfo=dt.UTC)
        n_cust, n_inv, n_pay = size, size, size // 2
        self.tables: dict[str, EntityTable] = {
            "Customer": EntityTable(
                "Customer",
                n_cust,
                self._customer_factory(seed, n_cust, customers),
                lambda i: data.customer_time(n_cust, i),
            ),
            "Invoice": EntityTable(
                "Invoice",
                n_inv,
                lambda i: data.invoice(seed, n_cust, n_inv, i),
                lambda i: data.invoice_time(n_inv, i),
            ),
            "Payment": EntityTable(
                "Payment",
                n_pay,
                lambda k: data.payment(seed, n_cust, n_inv, n_pay, k),
                lambda k: data.payment_time(n_pay, k),
            ),
        }
        for name in ENTITIES:
            self.tables.setdefault(name, EntityTable(name))
        self._seed_name_lists()
        self._customer_names: dict[str, int] | None = None

    # -- seeding ---------------------------------------------------------------------------

    @staticmethod
    def _customer_factory(
        seed: int, n_cust: int, rows: Sequence[Mapping[str, Any]] | None
    ) -> Callable[[int], JSON]:
        """Generated customers, or the roster's when ``rows`` is given (customer ``i`` is
        ``rows[i - 1]``)."""
        if rows is None:
            return lambda i: data.customer(seed, n_cust, i)
        names = data.unique_display_names(rows)
        return lambda i: data.roster_customer(seed, n_cust, i, rows[i - 1], names[i - 1])

    def _seed_name_lists(self) -> None:
        seeded = data.DATA_EPOCH - dt.timedelta(days=400)
        meta = {"CreateTime": data.qbo_time(seeded), "LastUpdatedTime": data.qbo_time(seeded)}
        for acc_id, name, acc_type, sub_type, classification in data.ACCOUNTS:
            self._seed(
                "Account",
                int(acc_id),
                {
                    "Id": acc_id,
                    "Name": name,
                    "AccountType": acc_type,
                    "AccountSubType": sub_type,
                    "Classification": classification,
                    "FullyQualifiedName": name,
                    "Active": True,
                    "CurrentBalance": 0,
                    "CurrencyRef": {"value": "USD"},
                    "SyncToken": "0",
                    "domain": "QBO",
                    "sparse": False,
                    "MetaData": dict(meta),
                },
                seeded,
            )
        for item_id, name, price, income in data.ITEMS:
            self._seed(
                "Item",
                int(item_id),
                {
                    "Id": item_id,
                    "Name": name,
                    "FullyQualifiedName": name,
                    "Type": "Service",
                    "UnitPrice": float(Decimal(price) / 100),
                    "Active": True,
                    "Taxable": False,
                    "IncomeAccountRef": {"value": income},
                    "SyncToken": "0",
                    "domain": "QBO",
                    "sparse": False,
                    "MetaData": dict(meta),
                },
                seeded,
            )
        for index, (code_id, name, taxable) in enumerate(data.TAX_CODES, start=1):
            self._seed(
                "TaxCode",
                index,
                {
                    "Id": code_id,
                    "Name": name,
                    "Description": name,
                    "Active": True,
                    "Taxable": taxable,
                    "TaxGroup": False,
                    "SyncToken": "0",
                    "domain": "QBO",
                    "sparse": False,
                    "MetaData": dict(meta),
                },
                seeded,
            )
        for cur_id, code, name in data.CURRENCIES:
            self._seed(
                "Currency",
                int(cur_id),
                {
                    "Id": cur_id,
                    "Code": code,
                    "Name": name,
                    "Active": True,
                    "SyncToken": "0",
                    "domain": "QBO",
                    "sparse": False,
                    "MetaData": dict(meta),
                },
                seeded,
            )

    def _seed(self, entity: str, rid: int, record: JSON, when: dt.datetime) -> None:
        table = self.tables[entity]
        table.put(rid, record, when)
        table.next_id = max(table.next_id, rid + 1)

    # -- time ------------------------------------------------------------------------------

    def stamp(self) -> dt.datetime:
        """A record time: sandbox now at seconds precision, never going backwards."""
        now = self.clock.now().replace(microsecond=0)
        self._last_stamp = max(now, self._last_stamp)
        return self._last_stamp

    # -- lookups ---------------------------------------------------------------------------

    def table(self, entity: str) -> EntityTable:
        """The table of ``entity``.

        Raises:
            QboFault: unknown entity.
        """
        for name, table in self.tables.items():
            if name.lower() == entity.lower():
                return table
        raise QboFault("4000", "Error parsing query", f"QueryParserError: Invalid entity {entity}")

    @staticmethod
    def _ref_id(ref: Any) -> str:
        rid = ref.get("value") if isinstance(ref, dict) else None
        if rid is None:
            return ""
        return str(rid)

    def find(self, entity: str, rid: str) -> JSON | None:
        """Record ``rid`` of ``entity`` or None."""
        table = self.table(entity)
        if entity == "TaxCode":
            return next((r for r in table.by_id() if r["Id"] == rid), None)
        try:
            return table.get(int(rid))
        except ValueError:
            return None

    def read(self, entity: str, rid: str) -> JSON:
        """Record ``rid`` of ``entity``.

        Raises:
            QboFault: 610 Object Not Found.
        """
        record = self.find(entity, rid)
        if record is None:
            raise QboFault(
                "610",
                "Object Not Found",
                f"Object Not Found : Something you're trying to use has been made inactive "
                f"or deleted. Check the fields with {entity} Id {rid}.",
            )
        return copy.deepcopy(record)

    # -- query and CDC ---------------------------------------------------------------------

    def query(self, parsed: ParsedQuery) -> tuple[str, list[JSON], int | None]:
        """Run ``parsed``; returns the entity name, the page and totalCount (COUNT only)."""
        table = self.table(parsed.entity)
        since: dt.datetime | None = None
        for cond in parsed.conditions:
            if cond.field == "MetaData.LastUpdatedTime" and cond.op in {">", ">="}:
                since = data.parse_time(str(cond.value))
        by_time = parsed.order_by == "MetaData.LastUpdatedTime"
        source = (
            table.by_time(since) if by_time or (since and not parsed.order_by) else (table.by_id())
        )
        if not (by_time or (since and not parsed.order_by)):
            named = _named_ids(table, parsed.conditions)
            if named is not None:
                # What by_id() would yield for these ids, without walking every record.
                source = (r for r in (table.get(rid) for rid in named) if r is not None)
        conditions = parsed.conditions
        if table.name in NAME_LISTS and not any(c.field == "Active" for c in conditions):
            # Like QuickBooks, a name-list query without an Active filter hides inactive ones.
            conditions = (*conditions, Condition("Active", "=", True))
        matching = (r for r in source if all(_matches(r, c) for c in conditions))
        if parsed.count:
            return table.name, [], sum(1 for _ in matching)
        if parsed.order_by and not by_time:
            key = parsed.order_by

            def sort_key(record: JSON) -> tuple[int, Any]:
                value = _get_path(record, key)
                if key == "Id":
                    return (0, int(value))
                return (0 if value is not None else 1, str(value or ""))

            rows = sorted(matching, key=sort_key, reverse=parsed.descending)
            page = rows[parsed.start_position - 1 : parsed.start_position - 1 + parsed.max_results]
        elif parsed.descending:
            rows = list(matching)[::-1]
            page = rows[parsed.start_position - 1 : parsed.start_position - 1 + parsed.max_results]
        else:
            page = list(
                itertools.islice(
                    matching,
                    parsed.start_position - 1,
                    parsed.start_position - 1 + parsed.max_results,
                )
            )
        return table.name, [copy.deepcopy(r) for r in page], None

    def cdc(self, entities: list[str], since: dt.datetime) -> list[tuple[str, list[JSON]]]:
        """Changes per entity since ``since`` (at most 1,000 objects in all).

        Raises:
            QboFault: an entity without CDC support, or ``since`` beyond the 30-day window.
        """
        now = self.clock.now()
        if since < now - CDC_WINDOW:
            raise QboFault(
                "2010",
                "Request has invalid or unsupported property",
                "Property Name:changedSince specified is unsupported or invalid: "
                "changes are kept for 30 days only",
                element="changedSince",
            )
        out: list[tuple[str, list[JSON]]] = []
        budget = CDC_MAX_OBJECTS
        for name in entities:
            table = self.table(name)
            if table.name not in CDC_ENTITIES:
                raise QboFault(
                    "10000",
                    "An application error has occurred while processing your request",
                    f"System Failure Error: CDC is not supported for {table.name}",
                )
            changed: list[tuple[dt.datetime, JSON]] = []
            for rid, when in table.deleted_since(since):
                changed.append(
                    (
                        when,
                        {
                            "domain": "QBO",
                            "status": "Deleted",
                            "Id": str(rid),
                            "MetaData": {"LastUpdatedTime": data.qbo_time(when)},
                        },
                    )
                )
            changed.extend(
                (data.parse_time(record["MetaData"]["LastUpdatedTime"]), record)
                for record in table.by_time(since)
            )
            changed.sort(key=lambda pair: pair[0])
            taken = [copy.deepcopy(r) for _, r in changed[:budget]]
            budget -= len(taken)
            out.append((table.name, taken))
        return out

    # -- writes ----------------------------------------------------------------------------

    def create(self, entity: str, body: JSON) -> JSON:
        """Create ``entity`` from ``body`` and return the stored record.

        Raises:
            QboFault: validation failed.
        """
        with self.lock:
            table = self.table(entity)
            if body.get("Id"):
                return self.update(entity, body)
            record = {k: copy.deepcopy(v) for k, v in body.items() if k != "sparse"}
            self._validate(table.name, record, None)
            rid = table.allocate_id()
            when = self.stamp()
            record.update(
                Id=str(rid),
                SyncToken="0",
                domain="QBO",
                sparse=False,
                MetaData={
                    "CreateTime": data.qbo_time(when),
                    "LastUpdatedTime": data.qbo_time(when),
                },
            )
            self._after_write(table.name, record, None, when)
            table.put(rid, record, when)
            return copy.deepcopy(record)

    def update(self, entity: str, body: JSON) -> JSON:
        """Update with SyncToken check; sparse when ``body['sparse']`` is true.

        Raises:
            QboFault: 610 unknown id, 5010 stale SyncToken, or validation failed.
        """
        with self.lock:
            table = self.table(entity)
            current = self.read(table.name, str(body.get("Id")))
            if str(body.get("SyncToken")) != current["SyncToken"]:
                raise QboFault("5010", "Stale Object Error", STALE_DETAIL)
            if body.get("sparse"):
                record = copy.deepcopy(current)
                record.update({k: copy.deepcopy(v) for k, v in body.items() if k != "sparse"})
            else:
                record = {k: copy.deepcopy(v) for k, v in body.items() if k != "sparse"}
                record["MetaData"] = current["MetaData"]
            self._validate(table.name, record, current)
            when = self.stamp()
            record["SyncToken"] = str(int(current["SyncToken"]) + 1)
            record["domain"] = "QBO"
            record["sparse"] = False
            record["MetaData"] = {
                "CreateTime": current["MetaData"]["CreateTime"],
                "LastUpdatedTime": data.qbo_time(when),
            }
            self._after_write(table.name, record, current, when)
            table.put(int(record["Id"]), record, when)
            return copy.deepcopy(record)

    def delete(self, entity: str, body: JSON) -> JSON:
        """Delete a transaction (name-list entities can only be made inactive).

        Raises:
            QboFault: not a transaction, unknown id or stale SyncToken.
        """
        with self.lock:
            table = self.table(entity)
            if table.name not in TRANSACTIONS:
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {table.name} cannot be deleted; "
                    "make it inactive instead.",
                )
            current = self.read(table.name, str(body.get("Id")))
            if str(body.get("SyncToken")) != current["SyncToken"]:
                raise QboFault("5010", "Stale Object Error", STALE_DETAIL)
            when = self.stamp()
            if table.name == "Payment":
                self._apply_payment(current, sign=Decimal(1), when=when)
            table.delete(int(current["Id"]), when)
            return {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}

    def void(self, entity: str, body: JSON) -> JSON:
        """Void an invoice as QuickBooks does: it keeps its Id and number, its amounts and
        quantities become 0 and ``PrivateNote`` starts with "Voided".

        Raises:
            QboFault: an entity without the void operation, unknown id, stale SyncToken, or an
                invoice a payment is still applied to.
        """
        with self.lock:
            table = self.table(entity)
            if table.name != "Invoice":
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Operation void is not supported for {table.name}",
                )
            current = self.read(table.name, str(body.get("Id")))
            if str(body.get("SyncToken")) != current["SyncToken"]:
                raise QboFault("5010", "Stale Object Error", STALE_DETAIL)
            if self.linked_payments("Invoice", current["Id"]):
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: this invoice has payments applied to it; "
                    "remove them before voiding it",
                )
            when = self.stamp()
            record = copy.deepcopy(current)
            for line in record.get("Line") or []:
                line["Amount"] = 0
                detail = line.get("SalesItemLineDetail")
                if isinstance(detail, dict):
                    detail["Qty"] = 0
                    detail["UnitPrice"] = 0
            record["TxnTaxDetail"] = {"TotalTax": 0}
            record.update(TotalAmt=0, Balance=0, LinkedTxn=[])
            note = str(current.get("PrivateNote") or "")
            record["PrivateNote"] = f"Voided {note}".strip()
            record["SyncToken"] = str(int(current["SyncToken"]) + 1)
            record["MetaData"] = {
                "CreateTime": current["MetaData"]["CreateTime"],
                "LastUpdatedTime": data.qbo_time(when),
            }
            table.put(int(record["Id"]), record, when)
            return copy.deepcopy(record)

    # -- validation ------------------------------------------------------------------------

    def _require(self, record: JSON, name: str) -> None:
        if record.get(name) in (None, "", [], {}):
            raise QboFault(
                "2020",
                "Required param missing, need to supply the required value for the API",
                f"Required parameter {name} is missing in the request",
                element=name,
            )

    def _check_ref(self, entity: str, ref: Any, element: str) -> JSON:
        rid = self._ref_id(ref)
        target = self.find(entity, rid) if rid else None
        if target is None:
            raise QboFault(
                "2500",
                "Invalid Reference Id",
                f"Invalid Reference Id : {entity} assigned to this transaction has been "
                f"deleted or does not exist: Id {rid}",
                element=element,
            )
        return target

    def _customer_index(self) -> dict[str, int]:
        if self._customer_names is None:
            self._customer_names = {
                r["DisplayName"].strip().lower(): int(r["Id"])
                for r in self.tables["Customer"].by_id()
            }
        return self._customer_names

    def _validate(  # noqa: PLR0912, PLR0915 - one block of rules per entity
        self, entity: str, record: JSON, current: JSON | None
    ) -> None:
        if entity == "Customer":
            if not record.get("DisplayName"):
                parts = [record.get("GivenName"), record.get("FamilyName")]
                name = " ".join(p for p in parts if p) or record.get("CompanyName")
                if not name:
                    raise QboFault(
                        "2020",
                        "Required param missing, need to supply the required value for the API",
                        "Required parameter DisplayName or Name is missing in the request",
                        element="DisplayName",
                    )
                record["DisplayName"] = name
            key = str(record["DisplayName"]).strip().lower()
            owner = self._customer_index().get(key)
            if owner is not None and (current is None or str(owner) != current["Id"]):
                raise QboFault(
                    "6240",
                    "Duplicate Name Exists Error",
                    "The name supplied already exists. : Another customer, vendor or employee "
                    "is already using this name. Please use a different name.",
                    element="DisplayName",
                )
            record.setdefault("Active", True)
            record.setdefault("Balance", 0)
            record.setdefault("CurrencyRef", {"value": "USD", "name": "United States Dollar"})
            return
        if entity in {"Item", "Account"}:
            self._require(record, "Name")
            if entity == "Item":
                self._check_ref("Account", record.get("IncomeAccountRef"), "IncomeAccountRef")
            record.setdefault("Active", True)
            return
        if entity in {"TaxCode", "Currency"}:
            raise QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: {entity} is read-only through this API",
            )
        if entity in {"Invoice", "CreditMemo", "RefundReceipt"}:
            self._require(record, "CustomerRef")
            customer = self._check_ref("Customer", record.get("CustomerRef"), "CustomerRef")
            _same_currency(record, customer)
            self._require(record, "Line")
            if entity == "RefundReceipt":
                self._require(record, "DepositToAccountRef")
                self._check_ref("Account", record.get("DepositToAccountRef"), "DepositToAccountRef")
            self._sales_totals(record, entity)
        elif entity == "Payment":
            self._require(record, "CustomerRef")
            customer = self._check_ref("Customer", record.get("CustomerRef"), "CustomerRef")
            _same_currency(record, customer)
            self._require(record, "TotalAmt")
            record.setdefault("DepositToAccountRef", {"value": data.UNDEPOSITED_FUNDS})
            self._check_ref("Account", record.get("DepositToAccountRef"), "DepositToAccountRef")
            applied = Decimal(0)
            for line in record.get("Line") or []:
                applied += self._linked_amount(record, line, current)
            if applied > _dec(record["TotalAmt"]):
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: applied amount exceeds the payment amount",
                )
            record["UnappliedAmt"] = float(_dec(record["TotalAmt"]) - applied)
        elif entity == "Deposit":
            self._require(record, "DepositToAccountRef")
            self._check_ref("Account", record.get("DepositToAccountRef"), "DepositToAccountRef")
            self._require(record, "Line")
            total = Decimal(0)
            for line in record["Line"]:
                detail = line.get("DepositLineDetail") or {}
                if not line.get("LinkedTxn"):
                    self._check_ref("Account", detail.get("AccountRef"), "AccountRef")
                total += _dec(line.get("Amount"))
            record["TotalAmt"] = float(total)
        elif entity == "JournalEntry":
            self._require(record, "Line")
            debit = credit = Decimal(0)
            for line in record["Line"]:
                detail = line.get("JournalEntryLineDetail") or {}
                self._check_ref("Account", detail.get("AccountRef"), "AccountRef")
                if detail.get("PostingType") == "Debit":
                    debit += _dec(line.get("Amount"))
                else:
                    credit += _dec(line.get("Amount"))
            if debit != credit:
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: You must balance the debits and credits of "
                    "the journal entry.",
                )
            record["TotalAmt"] = float(debit)

    def _linked_amount(self, payment: JSON, line: JSON, current: JSON | None) -> Decimal:
        """What one Payment line applies: + to an Invoice, - from a CreditMemo's credit.

        A line linked to a CreditMemo uses the customer's credit instead of money, which is how
        a zero Payment applies a credit memo to an invoice.
        """
        sign = Decimal(0)
        for link in line.get("LinkedTxn") or []:
            kind = "CreditMemo" if link.get("TxnType") == "CreditMemo" else "Invoice"
            target = self._check_ref(kind, {"value": link.get("TxnId")}, "LinkedTxn")
            if target["CustomerRef"]["value"] != payment["CustomerRef"]["value"]:
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    f"Business Validation Error: the linked {kind.lower()} belongs to another "
                    "customer",
                    element="LinkedTxn",
                )
            left = target["Balance"] if kind == "Invoice" else target.get("RemainingCredit", 0)
            if current is None and _dec(line.get("Amount")) > _dec(left):
                what = "open balance" if kind == "Invoice" else "remaining credit"
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    f"Business Validation Error: the payment applies more than the {what} of "
                    f"{kind} {target['Id']}",
                    element="Line.Amount",
                )
            sign = Decimal(-1) if kind == "CreditMemo" else Decimal(1)
        return sign * _dec(line.get("Amount"))

    def _sales_totals(self, record: JSON, entity: str) -> None:
        subtotal = Decimal(0)
        discount = Decimal(0)
        for line in record["Line"]:
            kind = line.get("DetailType")
            amount = _dec(line.get("Amount"))
            if kind == "SalesItemLineDetail":
                detail = line.get("SalesItemLineDetail") or {}
                self._check_ref("Item", detail.get("ItemRef"), "ItemRef")
                if "Qty" in detail and "UnitPrice" in detail:
                    expected = data.quantize(_dec(detail["Qty"]) * _dec(detail["UnitPrice"]))
                    if expected != amount:
                        raise QboFault(
                            "6070",
                            "Amount is not equal to UnitPrice * Qty",
                            f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                            element="Line.Amount",
                        )
                tax_ref = detail.get("TaxCodeRef")
                if tax_ref is not None:
                    self._check_ref("TaxCode", tax_ref, "TaxCodeRef")
                subtotal += amount
            elif kind == "DiscountLineDetail":
                discount += amount
            elif kind == "SubTotalLineDetail":
                continue
            else:
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:DetailType specified is unsupported or invalid: {kind}",
                    element="Line.DetailType",
                )
        tax = _dec((record.get("TxnTaxDetail") or {}).get("TotalTax"))
        total = subtotal - discount + tax
        record["TotalAmt"] = float(total)
        if entity == "Invoice":
            record["Balance"] = float(total)
        if entity == "CreditMemo":
            record["RemainingCredit"] = float(total)
        del entity

    def _after_write(
        self, entity: str, record: JSON, current: JSON | None, when: dt.datetime
    ) -> None:
        if entity == "Customer" and self._customer_names is not None:
            if current is not None:
                self._customer_names.pop(str(current["DisplayName"]).strip().lower(), None)
            self._customer_names[str(record["DisplayName"]).strip().lower()] = int(record["Id"])
        if entity == "Invoice" and current is not None:
            paid = _dec(current["TotalAmt"]) - _dec(current["Balance"])
            record["Balance"] = float(_dec(record["TotalAmt"]) - paid)
        if entity == "CreditMemo" and current is not None:
            used = _dec(current["TotalAmt"]) - _dec(current.get("RemainingCredit", 0))
            if used > _dec(record["TotalAmt"]):
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {used} of this credit memo is applied to "
                    "invoices; remove those payments first",
                )
            record["RemainingCredit"] = float(_dec(record["TotalAmt"]) - used)
        if entity == "Payment" and current is None:
            self._apply_payment(record, sign=Decimal(-1), when=when)

    def _apply_payment(self, payment: JSON, *, sign: Decimal, when: dt.datetime) -> None:
        """Lower (sign -1) or restore (+1) the open balance of the invoices a payment links and
        the remaining credit of the credit memos it uses."""
        for line in payment.get("Line") or []:
            for link in line.get("LinkedTxn") or []:
                kind = "CreditMemo" if link.get("TxnType") == "CreditMemo" else "Invoice"
                field = "RemainingCredit" if kind == "CreditMemo" else "Balance"
                table = self.tables[kind]
                target = table.get(int(link["TxnId"]))
                if target is None:
                    continue
                target = copy.deepcopy(target)
                target[field] = float(_dec(target.get(field)) + sign * _dec(line["Amount"]))
                target["SyncToken"] = str(int(target["SyncToken"]) + 1)
                target["MetaData"]["LastUpdatedTime"] = data.qbo_time(when)
                table.put(int(target["Id"]), target, when)

    def linked_payments(self, entity: str, rid: str) -> list[JSON]:
        """The payments with a line linked to transaction ``rid`` of ``entity``."""
        return [
            payment
            for payment in self.tables["Payment"].by_id()
            if any(
                str(link.get("TxnId")) == rid and (link.get("TxnType") or "Invoice") == entity
                for line in payment.get("Line") or []
                for link in line.get("LinkedTxn") or []
            )
        ]

    # -- ledger ----------------------------------------------------------------------------

    def postings(self) -> Iterator[tuple[str, str | None, Decimal]]:
        """Every ledger posting ``(account id, customer id, home amount; debit > 0)``."""
        for entity in sorted(TRANSACTIONS):
            for doc in self.tables[entity].by_id():
                yield from _postings(entity, doc, self)

    def trial_balance(self) -> dict[str, Decimal]:
        """Balance per account id in the home currency (debits positive)."""
        balances: dict[str, Decimal] = {}
        for account, _customer, amount in self.postings():
            balances[account] = balances.get(account, Decimal(0)) + amount
        return balances

    def receivable_by_customer(self) -> dict[str, Decimal]:
        """Accounts receivable per customer id in the home currency (non-zero only)."""
        out: dict[str, Decimal] = {}
        for account, customer, amount in self.postings():
            if account == data.AR_ACCOUNT and customer is not None:
                out[customer] = out.get(customer, Decimal(0)) + amount
        return {k: v for k, v in out.items() if v != 0}


def _same_currency(document: JSON, customer: JSON) -> None:
    """QuickBooks keeps one currency per customer: a document must be in it.

    A document without ``CurrencyRef`` takes the customer's currency.

    Raises:
        QboFault: the document's ``CurrencyRef`` is not the customer's currency.
    """
    theirs = ((customer.get("CurrencyRef") or {}).get("value")) or data.HOME_CURRENCY
    mine = (document.get("CurrencyRef") or {}).get("value")
    if mine is None:
        document["CurrencyRef"] = {"value": theirs}
    elif mine != theirs:
        raise QboFault(
            "6000",
            "A business validation error has occurred while processing your request",
            f"Business Validation Error: the transaction is in {mine} but customer "
            f"{customer['Id']} is in {theirs}; a customer's transactions are in its currency",
            element="CurrencyRef",
        )


def _postings(  # noqa: PLR0912 - one block of postings per transaction type
    entity: str, doc: JSON, company: Company
) -> Iterator[tuple[str, str | None, Decimal]]:
    rate = _dec(doc.get("ExchangeRate") or 1)

    def home(value: Any) -> Decimal:
        return data.quantize(_dec(value) * rate)

    customer = (doc.get("CustomerRef") or {}).get("value")
    if entity in {"Invoice", "CreditMemo", "RefundReceipt"}:
        sign = Decimal(1) if entity == "Invoice" else Decimal(-1)
        lines: list[tuple[str, Decimal]] = []
        for line in doc.get("Line") or []:
            kind = line.get("DetailType")
            if kind == "SalesItemLineDetail":
                item = company.find("Item", line["SalesItemLineDetail"]["ItemRef"]["value"]) or {}
                income = (item.get("IncomeAccountRef") or {}).get("value", "5")
                lines.append((income, -sign * home(line["Amount"])))
            elif kind == "DiscountLineDetail":
                detail = line.get("DiscountLineDetail") or {}
                account = (detail.get("DiscountAccountRef") or {}).get(
                    "value", data.DISCOUNTS_GIVEN
                )
                lines.append((account, sign * home(line["Amount"])))
        tax = home((doc.get("TxnTaxDetail") or {}).get("TotalTax"))
        if tax:
            lines.append((data.SALES_TAX_PAYABLE, -sign * tax))
        for account, amount in lines:
            yield account, None, amount
        offset = -sum((amount for _, amount in lines), Decimal(0))
        if entity == "RefundReceipt":
            yield doc["DepositToAccountRef"]["value"], None, offset
        else:
            yield data.AR_ACCOUNT, customer, offset
    elif entity == "Payment":
        amount = home(doc["TotalAmt"])
        yield doc["DepositToAccountRef"]["value"], None, amount
        yield data.AR_ACCOUNT, customer, -amount
    elif entity == "Deposit":
        total = Decimal(0)
        for line in doc.get("Line") or []:
            amount = home(line.get("Amount"))
            total += amount
            if line.get("LinkedTxn"):
                yield data.UNDEPOSITED_FUNDS, None, -amount
            else:
                yield line["DepositLineDetail"]["AccountRef"]["value"], None, -amount
        yield doc["DepositToAccountRef"]["value"], None, total
    elif entity == "JournalEntry":
        for line in doc.get("Line") or []:
            detail = line["JournalEntryLineDetail"]
            amount = home(line["Amount"])
            entity_ref = ((detail.get("Entity") or {}).get("EntityRef") or {}).get("value")
            signed = amount if detail.get("PostingType") == "Debit" else -amount
            yield detail["AccountRef"]["value"], entity_ref, signed
