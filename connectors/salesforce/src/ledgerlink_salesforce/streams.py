"""The Salesforce streams and how each is read: first load, incremental, deletes.

Every stream follows ``SystemModstamp`` (the field Salesforce bumps on any change, system ones
included). Reading from a :class:`~ledgerlink.connector.protocol.Cursor`:

* **First load** (no cursor value): ``SELECT COUNT()`` decides. Up to ``bulk_threshold`` rows
  a REST query ordered by ``SystemModstamp, Id`` pages through ``nextRecordsUrl``; above it a
  Bulk API 2.0 query job streams CSV pages by ``Sforce-Locator``. The job id and locator live
  in the cursor state, so a crash resumes the job where it stopped.
* **Incremental**: one ``queryAll`` with ``SystemModstamp >= cursor - overlap`` ordered by
  ``SystemModstamp, Id``. ``queryAll`` returns deleted rows too (``IsDeleted = true``), landed
  as tombstones, so changes and deletes cost one call per stream. The overlap re-reads records
  committed late or in the same second; the cursor state keeps, for records landed inside the
  overlap window, their SystemModstamp and a digest of their content, and drops exactly those
  versions on re-read: a cycle with nothing new yields no records, while a second edit within
  the same second (same stamp, new content) is still landed.
* **The hub's own writes** are left out of the overlap once settled (``skip_own_writes``):
  ``AND (SystemModstamp >= cursor - timeout OR LastModifiedById != <session user> OR
  LastModifiedDate < cursor - overlap)``. A write of the hub commits before its answer comes
  back, within the client's timeout of its stamp (a write that times out is sent again and
  stamped anew); one stamped more than the timeout before the cursor had therefore committed
  before the read that moved the cursor there began, and the first read to begin after it
  committed had it in its window. Without this, after the hub writes thousands of Accounts
  every read for the next five minutes would page through them again. The last clause keeps
  in the window a record the hub wrote long ago whose stamp a system process moved since
  (``SystemModstamp`` moves, ``LastModifiedById`` stays).

Each page's cursor is valid once the page's records are stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import orjson

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import Cursor, Page, Record, Stream
from ledgerlink_salesforce import soql
from ledgerlink_salesforce.client import SalesforceClient
from ledgerlink_salesforce.settings import SalesforceSettings

__all__ = [
    "DEFAULT_FIELDS",
    "STREAM_ENTITIES",
    "StreamReader",
    "cursor_value",
    "stream_catalog",
]

STREAM_ENTITIES: dict[str, str] = {
    "Account": "party",
    "Contact": "contact",
    "Opportunity": "opportunity",
    "OpportunityLineItem": "opportunity_line",
    "Quote": "quote",
    "QuoteLineItem": "quote_line",
    "Product2": "product",
    "PricebookEntry": "price",
}
_ALWAYS = ("Id", "SystemModstamp", "IsDeleted")
_AUDIT = ("CreatedDate", "LastModifiedDate")
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "Account": (
        "Name",
        "Type",
        "Industry",
        "Website",
        "Phone",
        "BillingStreet",
        "BillingCity",
        "BillingState",
        "BillingPostalCode",
        "BillingCountry",
        "AnnualRevenue",
        "NumberOfEmployees",
        "OwnerId",
    ),
    "Contact": ("AccountId", "FirstName", "LastName", "Email", "Phone", "Title", "MailingCountry"),
    "Opportunity": (
        "AccountId",
        "Name",
        "StageName",
        "CloseDate",
        "Amount",
        "IsWon",
        "IsClosed",
        "Pricebook2Id",
        "Type",
    ),
    "OpportunityLineItem": (
        "OpportunityId",
        "PricebookEntryId",
        "Product2Id",
        "Quantity",
        "UnitPrice",
        "TotalPrice",
        "Description",
    ),
    "Quote": (
        "OpportunityId",
        "AccountId",
        "Name",
        "Status",
        "ExpirationDate",
        "GrandTotal",
        "Pricebook2Id",
    ),
    "QuoteLineItem": (
        "QuoteId",
        "PricebookEntryId",
        "Product2Id",
        "Quantity",
        "UnitPrice",
        "Discount",
        "TotalPrice",
    ),
    "Product2": ("Name", "ProductCode", "Family", "IsActive", "Description"),
    "PricebookEntry": ("Pricebook2Id", "Product2Id", "UnitPrice", "IsActive", "UseStandardPrice"),
}
_BOOLEAN = {"IsDeleted", "IsWon", "IsClosed", "IsActive", "UseStandardPrice"}
_INTEGER = {"NumberOfEmployees"}
_DECIMAL = {
    "AnnualRevenue",
    "Amount",
    "Quantity",
    "UnitPrice",
    "TotalPrice",
    "Discount",
    "GrandTotal",
}
_CSV_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})Z$")
_RECENT_CAP = 10_000


def stream_catalog(overlap: timedelta = timedelta(seconds=300)) -> list[Stream]:
    """Return the description of every Salesforce stream."""
    return [
        Stream(
            name=name,
            entity=entity,
            primary_key="Id",
            cursor_field="SystemModstamp",
            lookback=overlap,
            writable=True,
            supports_deletes=True,
        )
        for name, entity in STREAM_ENTITIES.items()
    ]


def cursor_value(modstamp: str) -> str:
    """Fixed-width UTC form of a ``SystemModstamp`` (``2025-01-31T08:00:00.000Z``)."""
    if len(modstamp) == 28 and modstamp.endswith("+0000"):  # the REST form, already UTC
        return modstamp[:23] + "Z"
    if len(modstamp) == 24 and modstamp.endswith("Z"):  # the Bulk CSV form
        return modstamp
    moment = soql.parse_datetime(modstamp)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _as_text(text: str) -> Any:
    return text or None


def _as_bool(text: str) -> Any:
    return None if text == "" else text.lower() == "true"


def _as_int(text: str) -> Any:
    try:
        return int(float(text)) if text else None
    except ValueError:
        return text


def _as_decimal(text: str) -> Any:
    try:
        return float(text) if text else None
    except ValueError:
        return text


def _as_datetime(text: str) -> Any:
    if not text:
        return None
    match = _CSV_DATETIME.match(text)
    return match.group(1) + "+0000" if match else text


def _converter(name: str) -> Callable[[str], Any]:
    """How a Bulk CSV cell of field ``name`` becomes the value REST would have returned."""
    if name in _BOOLEAN:
        return _as_bool
    if name in _INTEGER:
        return _as_int
    if name in _DECIMAL:
        return _as_decimal
    if name.endswith(("Date", "Modstamp")):
        return _as_datetime
    return _as_text


def _digest(record: Record) -> str:
    """A short digest of a record's content, for telling versions within one second apart.

    Computed for every record of the overlap window on every read (thousands after a large
    write), so with orjson's sorted-key JSON, five times faster than the standard library's;
    what orjson refuses (an integer beyond 64 bits) falls back to the standard library.
    """
    try:
        data = orjson.dumps(record.payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        data = json.dumps(record.payload, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class _Digests:
    """Each record's :func:`_digest`, computed once for a page: a record of the overlap window
    is checked against the cursor, then remembered in it."""

    def __init__(self) -> None:
        self._known: dict[int, str] = {}  # id() of a record the page keeps alive -> digest

    def __call__(self, record: Record) -> str:
        found = self._known.get(id(record))
        if found is None:
            found = self._known[id(record)] = _digest(record)
        return found


class StreamReader:
    """Reads one stream for one connection (stateless between calls)."""

    def __init__(
        self, client: SalesforceClient, settings: SalesforceSettings, object_name: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.object = object_name
        extra = settings.fields.get(object_name, DEFAULT_FIELDS[object_name])
        names: list[str] = []
        for name in (*_ALWAYS, *_AUDIT, *extra):
            if name not in names:
                names.append(name)
        self.fields = names
        self.overlap = timedelta(seconds=settings.overlap_seconds)
        self.settle = timedelta(seconds=math.ceil(settings.timeout_seconds))

    # ----- records ------------------------------------------------------------------------
    def _record(self, row: Mapping[str, Any]) -> Record:
        record_id = str(row["Id"])
        return Record(
            object=self.object,
            id=record_id,
            payload=dict(row),
            deleted=bool(row.get("IsDeleted")),
            cursor_value=cursor_value(str(row["SystemModstamp"])),
        )

    def _csv_records(self, text: str) -> list[Record]:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return []
        prefix = f"/services/data/v{self.settings.api_version}/sobjects/{self.object}/"
        columns = [(name, _converter(name)) for name in header]
        records = []
        for row in reader:
            payload: dict[str, Any] = {"attributes": None}
            for (name, convert), cell in zip(columns, row, strict=True):
                payload[name] = convert(cell)
            payload["attributes"] = {"type": self.object, "url": prefix + str(payload["Id"])}
            records.append(self._record(payload))
        return records

    # ----- cursor -------------------------------------------------------------------------
    def _advance(
        self,
        cursor: Cursor,
        records: Sequence[Record],
        digest: Callable[[Record], str] = _digest,
    ) -> Cursor:
        moved = cursor.observe(records)
        if moved.value is None:
            return moved
        floor = cursor_value(soql.format_datetime(soql.parse_datetime(moved.value) - self.overlap))
        recent: dict[str, str] = {
            k: v for k, v in dict(cursor.state.get("recent") or {}).items() if v >= floor
        }
        for record in records:
            if record.cursor_value is not None and record.cursor_value >= floor:
                recent[record.id] = f"{record.cursor_value}|{digest(record)}"
        if len(recent) > _RECENT_CAP:
            keep = sorted(recent.items(), key=lambda kv: kv[1])[-_RECENT_CAP:]
            recent = dict(keep)
        return moved.with_state(recent=recent or None)

    @staticmethod
    def _seen(cursor: Cursor, record: Record, digest: Callable[[Record], str] = _digest) -> bool:
        """True when this very version (same SystemModstamp and content) already landed.

        SystemModstamp has whole-second precision, so a record edited twice in one second
        keeps its stamp: the content digest tells the second edit from a re-read.
        """
        landed = (cursor.state.get("recent") or {}).get(record.id)
        if landed is not None:
            return bool(landed == f"{record.cursor_value}|{digest(record)}")
        return record.cursor_value == cursor.value and record.id in cursor.boundary_ids

    # ----- reads --------------------------------------------------------------------------
    def incremental_statement(self, cursor: Cursor) -> str | None:
        """The ``queryAll`` statement an incremental read from ``cursor`` runs first, or None
        when ``cursor`` is a first load (or a Bulk job in progress)."""
        if cursor.value is None or cursor.state.get("mode") == "bulk":
            return None
        moved = soql.parse_datetime(cursor.value)
        since = soql.format_datetime(moved - self.overlap)
        where = f"SystemModstamp >= {since}"
        user = self._own_user()
        if user is not None:
            settled = soql.format_datetime(moved - self.settle)
            where += (
                f" AND (SystemModstamp >= {settled} OR LastModifiedById != {soql.quote(user)}"
                f" OR LastModifiedDate < {since})"
            )
        return soql.select(
            self.object, self.fields, where=where, order_by="SystemModstamp ASC, Id ASC"
        )

    def _own_user(self) -> str | None:
        """The user whose settled writes an incremental read leaves out, or None for none.

        None when ``skip_own_writes`` is off, when the timeout is not shorter than the overlap
        (nothing to leave out) or when the session does not say who it is.
        """
        if not self.settings.skip_own_writes or self.settle >= self.overlap:
            return None
        return self.client.auth.session().user_id

    def read(self, cursor: Cursor, first: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Yield the pages of this stream after ``cursor`` (see the module docstring).

        Args:
            cursor: where the last read stopped.
            first: the answer to :meth:`incremental_statement` already fetched (by a
                ``/composite`` call reading several streams at once); None asks Salesforce.

        Raises:
            ConnectorError: as mapped by the client.
        """
        if cursor.state.get("mode") == "bulk":
            yield from self._read_bulk(cursor)
            return
        statement = self.incremental_statement(cursor)
        if statement is None:
            count = self.client.count(f"SELECT COUNT() FROM {self.object}")  # noqa: S608 - object name comes from the stream catalog
            if count > self.settings.bulk_threshold:
                yield from self._read_bulk(cursor)
                return
            statement = soql.select(self.object, self.fields, order_by="SystemModstamp ASC, Id ASC")
            yield from self._read_rest(cursor, statement, include_deleted=False)
            return
        yield from self._read_rest(cursor, statement, include_deleted=True, first=first)

    def _read_rest(
        self,
        cursor: Cursor,
        statement: str,
        *,
        include_deleted: bool,
        first: Mapping[str, Any] | None = None,
    ) -> Iterator[Page]:
        batch = self.settings.query_batch_size
        result = first
        if result is None:
            result = self.client.query(statement, include_deleted=include_deleted, batch_size=batch)
        while True:
            records = [self._record(row) for row in result.get("records", [])]
            digest = _Digests()
            fresh = [r for r in records if not self._seen(cursor, r, digest)]
            cursor = self._advance(cursor, records, digest)
            yield Page(stream=self.object, records=fresh, cursor=cursor)
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            result = self.client.query_more(str(next_url), batch_size=batch)

    def _read_bulk(self, cursor: Cursor) -> Iterator[Page]:
        state = cursor.state
        job_id = str(state.get("job") or "") if state.get("mode") == "bulk" else ""
        locator = str(state.get("locator") or "")
        if job_id:
            try:
                self.client.bulk_wait(self.object, job_id)
            except ConfigurationError:  # the job expired: start the first load again
                cursor, job_id, locator = Cursor(), "", ""
        if not job_id:
            statement = soql.select(self.object, self.fields)
            job_id = self.client.bulk_create_query(self.object, statement)
            self.client.bulk_wait(self.object, job_id)
        while True:
            page = self.client.bulk_results(
                self.object, job_id, locator, self.settings.bulk_page_size
            )
            records = self._csv_records(page.csv_text)
            moved = self._advance(cursor, records)
            if page.locator:
                cursor = moved.with_state(mode="bulk", job=job_id, locator=page.locator)
                locator = page.locator
                del page
                yield Page(stream=self.object, records=records, cursor=cursor)
                del records  # keep at most the consumer's page and the next one alive
                continue
            cursor = moved.with_state(mode=None, job=None, locator=None)
            yield Page(stream=self.object, records=records, cursor=cursor)
            return
