"""The sandbox org's records: lazily generated, seeded, realistically messy, cheap at any size.

Base records are never stored: record ``i`` of an object is a pure function of the seed and
``i``, and its ``SystemModstamp`` grows with ``i`` (several records share a second), so a scan
in ``(SystemModstamp, Id)`` order starts by binary search and walks the index. Records created,
changed or deleted later (through the API or the test hooks) live in ``overrides`` and are
merged into every scan in order; a time-ordered index of them makes a scan from a
``SystemModstamp`` cost what changed since, not every override. A million accounts therefore
cost no memory until read.

Ids are 15 characters (key prefix, a pod code, the index in base 62 so that string order is
index order) plus Salesforce's real 3-character case-safe checksum.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

__all__ = [
    "API_USER_ID",
    "FIELD_TYPES",
    "HUB_ACCOUNT_FIELDS",
    "HUB_DEAL_FIELDS",
    "OBJECTS",
    "ORG_ID",
    "PEOPLE_IDS",
    "SYSTEM_FIELDS",
    "ObjectSpec",
    "Org",
    "Table",
    "case_safe_id",
    "format_sf_datetime",
    "salesforce_id",
    "seed_accounts",
]

T = TypeVar("T")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE_START = datetime(2025, 1, 1, tzinfo=UTC)
_BASE_EPOCH = int(_BASE_START.timestamp())
_BASE_SPAN = int(timedelta(days=300).total_seconds())
SYSTEM_FIELDS: frozenset[str] = frozenset(
    {
        "Id",
        "IsDeleted",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
    }
)
"""Fields every record has that the org sets: a write naming one is refused, ``describe``
marks them neither createable nor updateable."""
_COMMON = (*sorted(SYSTEM_FIELDS), "Ledgerlink_Id__c")


def format_sf_datetime(moment: datetime) -> str:
    """Format like Salesforce's REST API: ``2025-01-31T08:00:00.000+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _format_epoch(seconds: int) -> str:
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d}.000+0000"
    )


def salesforce_id(prefix: str, index: int) -> str:
    """Return the 18-character Id of record ``index`` with key ``prefix`` (``001`` ...)."""
    digits = []
    n = index
    for _ in range(10):
        digits.append(_B62[n % 62])
        n //= 62
    return case_safe_id(prefix + "Hs" + "".join(reversed(digits)))


def case_safe_id(short: str) -> str:
    """Return the 18-character case-safe form of a 15-character Salesforce Id.

    Each 5-character chunk gives one suffix character: bit ``i`` is set when character ``i``
    is an upper-case letter, and the 5-bit value indexes ``A..Z0..5``.
    """
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, ch in enumerate(short[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << pos
        suffix += _CHECKSUM[bits]
    return short + suffix


def index_of(record_id: str) -> int | None:
    """Return the index encoded in a sandbox Id, or None when it is not one."""
    if len(record_id) not in (15, 18) or record_id[3:5] != "Hs":
        return None
    n = 0
    for ch in record_id[5:15]:
        pos = _B62.find(ch)
        if pos < 0:
            return None
        n = n * 62 + pos
    return n


API_USER_ID = salesforce_id("005", 1)
"""The org's integration user: every session the sandbox issues is this user's, so every
write through the API is stamped ``LastModifiedById`` = this Id (the token answer's identity
URL ends with it)."""
ORG_ID = salesforce_id("00D", 1)
PEOPLE_IDS: tuple[str, ...] = tuple(salesforce_id("005", n) for n in (2, 3, 4))
"""The org's people: the base records' creators and last editors, and who the test hooks
(:meth:`Org.touch`, :meth:`Org.insert`) edit as unless told otherwise."""

HUB_ACCOUNT_FIELDS: tuple[str, ...] = (
    "QuickBooks_Customer_Id__c",
    "Billing_Status__c",
    "Last_Invoice_Date__c",
    "Last_Payment_Date__c",
    "Open_Balance__c",
    "MRR__c",
    "ARR__c",
)
"""Custom Account fields the hub writes back (``mappings/salesforce.yaml``); an org must
create them, as this sandbox org has (with ``Stripe_Customer_Id__c``)."""

HUB_DEAL_FIELDS: tuple[str, ...] = ("Invoiced__c", "Paid__c")
"""Custom Quote and Opportunity checkboxes the hub writes back (billing status of the deal)."""

FIELD_TYPES: dict[str, str] = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
    "CreatedById": "reference",
    "LastModifiedById": "reference",
    "AccountId": "reference",
    "OpportunityId": "reference",
    "QuoteId": "reference",
    "OwnerId": "reference",
    "Pricebook2Id": "reference",
    "PricebookEntryId": "reference",
    "Product2Id": "reference",
    "Website": "url",
    "Phone": "phone",
    "Email": "email",
    "BillingStreet": "textarea",
    "Description": "textarea",
    "AnnualRevenue": "currency",
    "Amount": "currency",
    "UnitPrice": "currency",
    "TotalPrice": "currency",
    "GrandTotal": "currency",
    "Open_Balance__c": "currency",
    "MRR__c": "currency",
    "ARR__c": "currency",
    "NumberOfEmployees": "int",
    "Quantity": "double",
    "Discount": "percent",
    "CloseDate": "date",
    "ExpirationDate": "date",
    "Last_Invoice_Date__c": "date",
    "Last_Payment_Date__c": "date",
    "IsWon": "boolean",
    "Invoiced__c": "boolean",
    "Paid__c": "boolean",
    "IsClosed": "boolean",
    "IsActive": "boolean",
    "UseStandardPrice": "boolean",
    "StageName": "picklist",
    "Status": "picklist",
    "Type": "picklist",
    "Industry": "picklist",
    "CurrencyIsoCode": "picklist",
}
"""Field types that ``describe`` reports (``string`` for any field not listed)."""


@dataclass(frozen=True)
class ObjectSpec:
    """What the sandbox knows about one sObject type."""

    name: str
    prefix: str
    fields: tuple[str, ...]
    required: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    external_ids: tuple[str, ...] = ("Ledgerlink_Id__c",)
    per_account: float = 1.0

    @property
    def field_set(self) -> set[str]:
        """All field names, standard ones included."""
        return set(self.fields) | set(_COMMON)


OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "Account",
            "001",
            (
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
                "CurrencyIsoCode",
                "Description",
                "Stripe_Customer_Id__c",
                "OwnerId",
                *HUB_ACCOUNT_FIELDS,
            ),
            required=("Name",),
            unique=("Stripe_Customer_Id__c",),
        ),
        ObjectSpec(
            "Contact",
            "003",
            ("AccountId", "FirstName", "LastName", "Email", "Phone", "Title", "MailingCountry"),
            required=("LastName",),
            per_account=2.0,
        ),
        ObjectSpec(
            "Opportunity",
            "006",
            (
                "AccountId",
                "Name",
                "StageName",
                "CloseDate",
                "Amount",
                "CurrencyIsoCode",
                "IsWon",
                "IsClosed",
                "Pricebook2Id",
                "Type",
                *HUB_DEAL_FIELDS,
            ),
            required=("Name", "StageName", "CloseDate"),
        ),
        ObjectSpec(
            "OpportunityLineItem",
            "00k",
            (
                "OpportunityId",
                "PricebookEntryId",
                "Product2Id",
                "Quantity",
                "UnitPrice",
                "TotalPrice",
                "Description",
            ),
            required=("OpportunityId", "Quantity"),
            per_account=2.0,
        ),
        ObjectSpec(
            "Quote",
            "0Q0",
            (
                "OpportunityId",
                "AccountId",
                "Name",
                "Status",
                "ExpirationDate",
                "GrandTotal",
                "CurrencyIsoCode",
                "Pricebook2Id",
                *HUB_DEAL_FIELDS,
            ),
            required=("Name", "OpportunityId"),
            per_account=0.5,
        ),
        ObjectSpec(
            "QuoteLineItem",
            "0QL",
            (
                "QuoteId",
                "PricebookEntryId",
                "Product2Id",
                "Quantity",
                "UnitPrice",
                "Discount",
                "TotalPrice",
            ),
            required=("QuoteId", "Quantity"),
            per_account=1.0,
        ),
        ObjectSpec(
            "Product2",
            "01t",
            ("Name", "ProductCode", "Family", "IsActive", "Description"),
            required=("Name",),
            per_account=0.0,
        ),
        ObjectSpec(
            "PricebookEntry",
            "01u",
            (
                "Pricebook2Id",
                "Product2Id",
                "UnitPrice",
                "CurrencyIsoCode",
                "IsActive",
                "UseStandardPrice",
            ),
            required=("Pricebook2Id", "Product2Id", "UnitPrice"),
            per_account=0.0,
        ),
    )
}

_PRODUCTS = [
    ("Starter", "STR-M", "Subscription", 4900),
    ("Pro", "PRO-M", "Subscription", 19900),
    ("Pro (annual)", "PRO-Y", "Subscription", 199000),
    ("Enterprise", "ENT-Y", "Subscription", 1200000),
    ("Seat add-on", "SEAT", "Add-on", 1500),
    ("API overage", "API-OVR", "Usage", 1),
    ("Onboarding", "ONB", "Services", 250000),
    ("Premium support", "SUP-P", "Add-on", 49900),
    ("Storage 100 GB", "STO-100", "Add-on", 900),
    ("Training day", "TRN", "Services", 150000),
    ("Légacy Plan", "LEG", "Subscription", 2900),
    ("SSO", "SSO", "Add-on", 9900),
]
_PRICEBOOK_ID = "01sHs0000000001AAA"
_STEMS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Industries",
    "Wayne Enterprises",
    "Müller & Söhne",
    "Société Générale Conseil",
    "Café Olé",
    "Nordlicht",
    "Björk Design",
    "São Paulo Logística",
    "Zürich Analytics",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Pied Piper",
    "Vandelay Industries",
    "Dunder Mifflin",
    "Łódź Software",
    "O'Brien & Sons",
    "Señor Tacos",
]
_SUFFIXES = [
    "Inc",
    "Inc.",
    "Incorporated",
    "LLC",
    "Ltd",
    "Ltd.",
    "Limited",
    "GmbH",
    "S.A.",
    "SARL",
    "Corp.",
    "Corporation",
    "",
    "",
    "",
    "AG",
    "B.V.",
    "plc",
]
_COUNTRIES = [
    "US",
    "USA",
    "United States",
    "United States of America",
    "DE",
    "Germany",
    "France",
    "FR",
    "United Kingdom",
    "UK",
    "GB",
    "Brazil",
    "Switzerland",
    None,
]
_INDUSTRIES = ["Technology", "Retail", "Manufacturing", "Finance", "Healthcare", None]
_STAGES = [
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Won",
    "Closed Lost",
]
_FIRST = ["Ana", "Jürgen", "Émilie", "John", "Priya", "Wei", "Olga", "Seán", "María", None]
_LAST = ["Smith", "Müller", "Dubois", "O'Neil", "Nguyen", "García", "Kowalski", "Rossi"]


_MASK = (1 << 64) - 1


class Draw:
    """A tiny deterministic random stream (64-bit LCG): cheap to create per record.

    ``Draw`` costs microseconds to seed; seeding one per generated record would make
    a million-account sandbox slow. Quality needs are modest: varied, reproducible fake data.
    """

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK

    def _next(self) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & _MASK
        return self.state >> 33

    def random(self) -> float:
        """A float in [0, 1)."""
        return self._next() / 2147483648.0

    def randrange(self, start: int, stop: int) -> int:
        """An int in [start, stop)."""
        return start + self._next() % (stop - start)

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        return options[self._next() % len(options)]


def _typo(rnd: Draw, text: str) -> str:
    if len(text) < 4:
        return text
    pos = rnd.randrange(1, len(text) - 2)
    return text[:pos] + text[pos + 1] + text[pos] + text[pos + 2 :]


class Table:
    """One sObject type: lazily generated base records plus stored overrides."""

    def __init__(
        self,
        spec: ObjectSpec,
        base_count: int,
        seed: int,
        generate: Callable[[Table, int, Draw], dict[str, Any]],
    ) -> None:
        self.spec = spec
        self.base_count = base_count
        self.seed = seed
        self._generate = generate
        self.overrides: dict[str, dict[str, Any]] = {}
        self.lookup: dict[tuple[str, str], set[str]] = {}
        self.next_index = base_count
        # (SystemModstamp, Id) of every stored version, sorted; an entry is current while
        # ``_stamp_of`` holds its stamp for that id (older versions are skipped, then dropped).
        self._by_stamp: list[tuple[str, str]] = []
        self._stamp_of: dict[str, str] = {}
        self._overridden_base: list[int] = []
        """Sorted indexes of the base records that have an override."""

    def base_seconds(self, index: int) -> int:
        """Seconds after the base start of record ``index``'s SystemModstamp (monotonic)."""
        step = (index // 3) * 3
        return step * _BASE_SPAN // max(self.base_count, 1)

    def id_for(self, index: int) -> str:
        """Id of record ``index``."""
        return salesforce_id(self.spec.prefix, index)

    def generate(self, index: int) -> dict[str, Any]:
        """Build base record ``index`` (pure function of seed and index)."""
        rnd = Draw(self.seed * 1_000_003 + index * 7919 + len(self.spec.name))
        modstamp = _BASE_EPOCH + self.base_seconds(index)
        created = modstamp - rnd.randrange(0, 400) * 86400 - rnd.randrange(0, 3600)
        record: dict[str, Any] = dict.fromkeys(self.spec.fields)
        record.update(self._generate(self, index, rnd))
        record["Id"] = self.id_for(index)
        record["IsDeleted"] = False
        record["CreatedDate"] = _format_epoch(created)
        record["LastModifiedDate"] = _format_epoch(modstamp - rnd.choice((0, 0, 0, 2, 40)))
        record["SystemModstamp"] = _format_epoch(modstamp)
        record["CreatedById"] = PEOPLE_IDS[index % len(PEOPLE_IDS)]
        record["LastModifiedById"] = PEOPLE_IDS[(index // 2) % len(PEOPLE_IDS)]
        record.setdefault("Ledgerlink_Id__c", None)
        return record

    def get(self, record_id: str) -> dict[str, Any] | None:
        """Return the current record with ``record_id`` (deleted ones included) or None."""
        index = index_of(record_id)
        if index is None or record_id[:3] != self.spec.prefix:
            return None
        full = self.id_for(index)
        if len(record_id) == 18 and record_id != full:
            return None
        stored = self.overrides.get(full)
        if stored is not None:
            return stored
        if index >= self.base_count:
            return None
        return self.generate(index)

    def store(self, record: dict[str, Any]) -> None:
        """Save ``record`` as an override and keep the lookup index of key fields current."""
        record_id = str(record["Id"])
        old = self.overrides.get(record_id)
        for name in (*self.spec.external_ids, *self.spec.unique):
            if old is not None and old.get(name) is not None:
                self.lookup.get((name, str(old[name]).lower()), set()).discard(record_id)
            if record.get(name) is not None and not record.get("IsDeleted"):
                self.lookup.setdefault((name, str(record[name]).lower()), set()).add(record_id)
        self.overrides[record_id] = record
        stamp = str(record["SystemModstamp"])
        before = self._stamp_of.get(record_id)
        if before != stamp:
            self._stamp_of[record_id] = stamp
            bisect.insort(self._by_stamp, (stamp, record_id))
            if len(self._by_stamp) > 2 * len(self._stamp_of) + 64:
                self._by_stamp = sorted((st, rid) for rid, st in self._stamp_of.items())
        if old is None:
            index = index_of(record_id)
            if index is not None and index < self.base_count:
                bisect.insort(self._overridden_base, index)

    def _changed_since(self, since_text: str | None) -> list[dict[str, Any]]:
        """The overrides with ``SystemModstamp`` at or after ``since_text``, in (stamp, Id)
        order (every override when None)."""
        start = 0 if since_text is None else bisect.bisect_left(self._by_stamp, (since_text,))
        return [
            self.overrides[record_id]
            for stamp, record_id in self._by_stamp[start:]
            if self._stamp_of.get(record_id) == stamp
        ]

    def find(self, field_name: str, value: str) -> list[str]:
        """Ids of live records whose external-id or unique ``field_name`` equals ``value``."""
        return sorted(self.lookup.get((field_name, value.lower()), set()))

    def full_id(self, record_id: str) -> str | None:
        """Return the 18-character form of ``record_id`` if such a record exists."""
        record = self.get(record_id)
        return None if record is None else str(record["Id"])

    def first_index_at(self, moment: datetime) -> int:
        """Index of the first base record whose SystemModstamp is at or after ``moment``."""
        target = int((moment - _BASE_START).total_seconds())
        if (moment - _BASE_START).total_seconds() > target:
            target += 1
        return bisect.bisect_left(range(self.base_count), target, key=self.base_seconds)

    def scan(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record (deleted ones too) in (SystemModstamp, Id) order from ``since``."""
        start = 0 if since is None else self.first_index_at(since)
        since_text = None if since is None else format_sf_datetime(since)
        overridden = set(self.overrides)
        extra = self._changed_since(since_text)

        def base() -> Iterator[dict[str, Any]]:
            for index in range(start, self.base_count):
                if overridden and self.id_for(index) in overridden:
                    continue
                yield self.generate(index)

        yield from heapq.merge(base(), extra, key=lambda r: (r["SystemModstamp"], r["Id"]))

    def count_since(self, since: datetime | None, *, include_deleted: bool) -> int:
        """Count records from ``since`` without generating base records."""
        start = 0 if since is None else self.first_index_at(since)
        since_text = None if since is None else format_sf_datetime(since)
        overridden = len(self._overridden_base) - bisect.bisect_left(self._overridden_base, start)
        count = self.base_count - start - overridden
        for record in self._changed_since(since_text):
            if include_deleted or not record["IsDeleted"]:
                count += 1
        return count

    def new_id(self) -> str:
        """Allocate the Id of a new record."""
        record_id = self.id_for(self.next_index)
        self.next_index += 1
        return record_id


def _account(table: Table, index: int, rnd: Draw) -> dict[str, Any]:
    company = index // 2 if index % 7 == 3 else index  # some accounts duplicate a neighbour
    crnd = Draw(table.seed * 31 + company)
    stem = crnd.choice(_STEMS)
    suffix = rnd.choice(_SUFFIXES)
    name = f"{stem} {company}" if company % 5 else stem
    if rnd.random() < 0.08:
        name = _typo(rnd, name)
    if rnd.random() < 0.05:
        name = name.upper()
    if suffix:
        name = f"{name}{',' if rnd.random() < 0.2 else ''} {suffix}"
    domain = stem.lower().replace(" ", "").replace("'", "").replace("&", "")
    return {
        "Name": name if rnd.random() > 0.03 else f"  {name} ",
        "Type": rnd.choice(["Customer - Direct", "Customer - Channel", "Prospect", None]),
        "Industry": rnd.choice(_INDUSTRIES),
        "Website": None
        if rnd.random() < 0.25
        else rnd.choice([f"https://www.{domain}.com", f"{domain}.com", f"http://{domain}.io/"]),
        "Phone": None
        if rnd.random() < 0.3
        else rnd.choice(
            [
                f"+1 415 555 {index % 10000:04d}",
                f"(415) 555-{index % 10000:04d}",
                f"+49 30 {index % 1000000:06d}",
            ]
        ),
        "BillingStreet": None if rnd.random() < 0.2 else f"{rnd.randrange(1, 999)} Main St",
        "BillingCity": rnd.choice(["San Francisco", "Berlin", "Paris", "São Paulo", None]),
        "BillingState": rnd.choice(["CA", "NY", None, None]),
        "BillingPostalCode": None if rnd.random() < 0.2 else f"{rnd.randrange(10000, 99999)}",
        "BillingCountry": rnd.choice(_COUNTRIES),
        "AnnualRevenue": None if rnd.random() < 0.5 else float(rnd.randrange(1, 500) * 100000),
        "NumberOfEmployees": None if rnd.random() < 0.4 else rnd.randrange(1, 5000),
        "CurrencyIsoCode": rnd.choice(["USD", "USD", "EUR", "GBP"]),
        "Description": None,
        "Stripe_Customer_Id__c": None,
        "OwnerId": PEOPLE_IDS[0],
    }


def _contact(_table: Table, index: int, rnd: Draw) -> dict[str, Any]:
    account = index // 2
    first = rnd.choice(_FIRST)
    last = rnd.choice(_LAST)
    email = None if rnd.random() < 0.2 else f"{(first or 'info').lower()}.{index}@example.com"
    return {
        "AccountId": None if index % 11 == 10 else salesforce_id("001", account),
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Phone": None if rnd.random() < 0.5 else f"+1 212 555 {index % 10000:04d}",
        "Title": rnd.choice(["CFO", "Finance Manager", "CTO", None]),
        "MailingCountry": rnd.choice(_COUNTRIES),
    }


def _opportunity(_table: Table, index: int, rnd: Draw) -> dict[str, Any]:
    stage = rnd.choice(_STAGES)
    close = _BASE_START + timedelta(days=rnd.randrange(0, 400))
    return {
        "AccountId": salesforce_id("001", index),
        "Name": f"Deal {index}",
        "StageName": stage,
        "CloseDate": close.date().isoformat(),
        "Amount": None if rnd.random() < 0.1 else float(rnd.randrange(10, 5000) * 100),
        "CurrencyIsoCode": "USD",
        "IsWon": stage == "Closed Won",
        "IsClosed": stage.startswith("Closed"),
        "Pricebook2Id": _PRICEBOOK_ID,
        "Type": rnd.choice(["New Business", "Existing Business", None]),
    }


def _line(parent_field: str, parent_prefix: str) -> Callable[[Table, int, Draw], dict[str, Any]]:
    def build(_table: Table, index: int, rnd: Draw) -> dict[str, Any]:
        product = rnd.randrange(0, len(_PRODUCTS))
        price = _PRODUCTS[product][3] / 100
        quantity = float(rnd.choice((1, 1, 2, 5, 10)))
        record = {
            parent_field: salesforce_id(parent_prefix, index // 2),
            "PricebookEntryId": salesforce_id("01u", product),
            "Product2Id": salesforce_id("01t", product),
            "Quantity": quantity,
            "UnitPrice": price,
            "TotalPrice": round(price * quantity, 2),
        }
        if parent_field == "QuoteId":
            record["Discount"] = rnd.choice((None, 0.0, 10.0))
        return record

    return build


def _quote(_table: Table, index: int, rnd: Draw) -> dict[str, Any]:
    return {
        "OpportunityId": salesforce_id("006", index * 2),
        "AccountId": salesforce_id("001", index * 2),
        "Name": f"Q-{index:06d}",
        "Status": rnd.choice(["Draft", "Presented", "Accepted", "Denied"]),
        "ExpirationDate": (_BASE_START + timedelta(days=rnd.randrange(30, 400))).date().isoformat(),
        "GrandTotal": float(rnd.randrange(1, 900) * 100),
        "CurrencyIsoCode": "USD",
        "Pricebook2Id": _PRICEBOOK_ID,
    }


def _product(_table: Table, index: int, _rnd: Draw) -> dict[str, Any]:
    name, code, family, _price = _PRODUCTS[index]
    return {
        "Name": name,
        "ProductCode": code,
        "Family": family,
        "IsActive": index != 10,
        "Description": None,
    }


def _pricebook_entry(_table: Table, index: int, _rnd: Draw) -> dict[str, Any]:
    return {
        "Pricebook2Id": _PRICEBOOK_ID,
        "Product2Id": salesforce_id("01t", index),
        "UnitPrice": _PRODUCTS[index][3] / 100,
        "CurrencyIsoCode": "USD",
        "IsActive": index != 10,
        "UseStandardPrice": False,
    }


_ROSTER_ACCOUNT_FIELDS = (
    "Name",
    "Website",
    "Phone",
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountry",
)


def seed_accounts(org: Org, accounts: Sequence[Mapping[str, Any]]) -> None:
    """Make ``accounts`` (a shared roster's Account rows) the org's seeded Accounts, in order.

    The company fields (name, website, phone, billing address) come from the rows; the rest
    (type, industry, currency, owner) and the timestamps are generated as for any Account, so
    that contacts, opportunities and quotes keep pointing at Accounts by position.

    Raises:
        ValueError: a row's ``Id`` is not the Id this org gives that position.
    """
    rows = tuple(accounts)
    table = org.tables["Account"]
    for index, row in enumerate(rows):
        if row.get("Id") != table.id_for(index):
            msg = f"roster Account {index} has Id {row.get('Id')!r}, not {table.id_for(index)!r}"
            raise ValueError(msg)

    def build(table: Table, index: int, rnd: Draw) -> dict[str, Any]:
        record = _account(table, index, rnd)
        record.update({name: rows[index].get(name) for name in _ROSTER_ACCOUNT_FIELDS})
        return record

    org.tables["Account"] = Table(table.spec, len(rows), org.seed, build)


_GENERATORS: dict[str, Callable[[Table, int, Draw], dict[str, Any]]] = {
    "Account": _account,
    "Contact": _contact,
    "Opportunity": _opportunity,
    "OpportunityLineItem": _line("OpportunityId", "006"),
    "Quote": _quote,
    "QuoteLineItem": _line("QuoteId", "0Q0"),
    "Product2": _product,
    "PricebookEntry": _pricebook_entry,
}


@dataclass
class Org:
    """The whole fake org: tables, sessions, API budget and test hooks."""

    seed: int = 7
    size: int = 50
    api_max: int = 100_000
    api_used: int = 0
    tables: dict[str, Table] = field(default_factory=dict)
    locks: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        for name, spec in OBJECTS.items():
            count = len(_PRODUCTS) if spec.per_account == 0 else int(self.size * spec.per_account)
            self.tables[name] = Table(spec, count, self.seed, _GENERATORS[name])

    def table(self, name: str) -> Table | None:
        """Return the table of sObject ``name`` (case-insensitive) or None."""
        for key, table in self.tables.items():
            if key.lower() == name.lower():
                return table
        return None

    def now(self) -> datetime:
        """Current server time, whole seconds (SystemModstamp has second precision)."""
        return datetime.now(UTC).replace(microsecond=0)

    # ----- test hooks -------------------------------------------------------------------
    def touch(
        self,
        object_name: str,
        record_id: str,
        at: datetime | None = None,
        *,
        by: str = PEOPLE_IDS[0],
        **changes: Any,
    ) -> dict[str, Any]:
        """Change a record as user ``by`` (default one of the org's people), stamping ``at``
        (default now) as its ``LastModifiedDate`` and ``SystemModstamp``.

        Raises:
            KeyError: no such record.
        """
        with self.lock:
            table = self._table(object_name)
            record = table.get(record_id)
            if record is None:
                raise KeyError(record_id)
            stamp = format_sf_datetime(at or self.now())
            updated = {
                **record,
                **changes,
                "LastModifiedDate": stamp,
                "LastModifiedById": by,
                "SystemModstamp": stamp,
            }
            table.store(updated)
            return updated

    def delete(
        self,
        object_name: str,
        record_id: str,
        at: datetime | None = None,
        *,
        by: str = PEOPLE_IDS[0],
    ) -> None:
        """Move a record to the recycle bin (``IsDeleted = true``) as user ``by``, stamped
        ``at``.

        Raises:
            KeyError: no such record.
        """
        self.touch(object_name, record_id, at=at, by=by, IsDeleted=True)

    def insert(
        self,
        object_name: str,
        fields: dict[str, Any],
        at: datetime | None = None,
        *,
        by: str = PEOPLE_IDS[0],
    ) -> dict[str, Any]:
        """Create a record directly as user ``by`` (no validation) and return it."""
        with self.lock:
            table = self._table(object_name)
            stamp = format_sf_datetime(at or self.now())
            record: dict[str, Any] = dict.fromkeys(table.spec.fields)
            record.update(fields)
            record.update(
                {
                    "Id": table.new_id(),
                    "IsDeleted": False,
                    "CreatedDate": stamp,
                    "CreatedById": by,
                    "LastModifiedDate": stamp,
                    "LastModifiedById": by,
                    "SystemModstamp": stamp,
                }
            )
            record.setdefault("Ledgerlink_Id__c", None)
            table.store(record)
            return record

    def lock_rows(self, record_ids: list[str], times: int = 1) -> None:
        """Make the next ``times`` writes to each record fail with ``UNABLE_TO_LOCK_ROW``."""
        with self.lock:
            for record_id in record_ids:
                self.locks[record_id[:15]] = times

    def _table(self, name: str) -> Table:
        table = self.table(name)
        if table is None:
            raise KeyError(name)
        return table
