"""Seeded, lazily generated company data for the QuickBooks sandbox.

Every record is a pure function of ``(seed, entity, index)``, so a sandbox of a million
customers costs nothing until a page of them is asked for, and the same seed always gives
the same company. The data is deliberately messy the way real books are: DisplayName variants
of one company ("Acme Labs", "ACME LABS", "Acme Labs Inc."), duplicates a bookkeeper created
by hand, missing e-mail addresses, phone numbers in every format, a few customers billed in
EUR. Name-list entities (accounts, items, tax codes, currencies) are small fixed lists.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "ACCOUNTS",
    "CURRENCIES",
    "DATA_EPOCH",
    "EUR_RATE",
    "HOME_CURRENCY",
    "ITEMS",
    "PACIFIC",
    "TAX_CODES",
    "customer",
    "customer_time",
    "invoice",
    "invoice_time",
    "parse_time",
    "payment",
    "payment_time",
    "qbo_time",
    "quantize",
    "roster_customer",
    "unique_display_names",
]

PACIFIC = dt.timezone(dt.timedelta(hours=-7))
"""QuickBooks stamps times in the company's zone; the sandbox company lives in UTC-07:00."""

DATA_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""The newest seeded record is stamped just before this instant."""

EUR_RATE = Decimal("1.1")
HOME_CURRENCY = "USD"
"""The sandbox company's home currency: a customer or document without ``CurrencyRef`` is in it."""

JSON = dict[str, Any]


def qbo_time(when: dt.datetime) -> str:
    """Render ``when`` the way QuickBooks does: seconds precision, company offset."""
    return when.astimezone(PACIFIC).replace(microsecond=0).isoformat()


def parse_time(text: str) -> dt.datetime:
    """Parse a QuickBooks date-time (offset or ``Z``) into an aware UTC datetime."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=PACIFIC)
    return value.astimezone(dt.UTC)


def quantize(amount: Decimal) -> Decimal:
    """Round to cents, half up, like QuickBooks."""
    return amount.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


def _meta(created: dt.datetime, updated: dt.datetime) -> JSON:
    return {"CreateTime": qbo_time(created), "LastUpdatedTime": qbo_time(updated)}


ACCOUNTS: list[tuple[str, str, str, str, str]] = [  # Id, Name, Type, SubType, Classification
    ("1", "Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable", "Asset"),
    ("2", "Checking", "Bank", "Checking", "Asset"),
    ("3", "Stripe Clearing", "Bank", "CashOnHand", "Asset"),
    ("4", "Stripe Fees", "Expense", "BankCharges", "Expense"),
    ("5", "Subscription Income", "Income", "ServiceFeeIncome", "Revenue"),
    ("6", "Services Income", "Income", "ServiceFeeIncome", "Revenue"),
    ("7", "Undeposited Funds", "Other Current Asset", "UndepositedFunds", "Asset"),
    ("8", "Sales Tax Payable", "Other Current Liability", "SalesTaxPayable", "Liability"),
    ("9", "Discounts given", "Income", "DiscountsRefundsGiven", "Revenue"),
    ("10", "Opening Balance Equity", "Equity", "OpeningBalanceEquity", "Equity"),
]
AR_ACCOUNT = "1"
UNDEPOSITED_FUNDS = "7"
SALES_TAX_PAYABLE = "8"
DISCOUNTS_GIVEN = "9"

# Items: (Id, Name, UnitPrice in cents, income account)
ITEMS: list[tuple[str, str, int, str]] = [
    ("1", "Pro plan", 200_000, "5"),
    ("2", "Starter plan", 4_900, "5"),
    ("3", "Additional seat", 1_500, "5"),
    ("4", "Setup fee", 50_000, "6"),
    ("5", "Usage overage", 10, "5"),
    ("6", "Premium support", 25_000, "6"),
]
TAX_CODES: list[tuple[str, str, bool]] = [("TAX", "TAX", True), ("NON", "NON", False)]
CURRENCIES: list[tuple[str, str, str]] = [
    ("1", "USD", "United States Dollar"),
    ("2", "EUR", "Euro"),
    ("3", "GBP", "British Pound Sterling"),
]

_ADJECTIVES = [
    "Blue",
    "Northern",
    "Silver",
    "Rapid",
    "Quiet",
    "Golden",
    "Bright",
    "Red",
    "Iron",
    "Green",
    "Summit",
    "Coastal",
    "Prairie",
    "Urban",
    "Stellar",
    "Granite",
    "Harbor",
    "Maple",
    "Cedar",
    "Atlas",
    "Polar",
    "Crimson",
    "Lunar",
    "Solar",
    "Swift",
    "Noble",
    "Vivid",
    "Alpine",
    "Delta",
    "Echo",
]
_NOUNS = [
    "Harbor",
    "Peak",
    "River",
    "Forge",
    "Labs",
    "Works",
    "Logic",
    "Systems",
    "Analytics",
    "Bakery",
    "Freight",
    "Health",
    "Robotics",
    "Studio",
    "Partners",
    "Dental",
    "Media",
    "Foods",
    "Energy",
    "Capital",
    "Cloud",
    "Data",
    "Design",
    "Motors",
    "Textiles",
    "Supply",
    "Networks",
    "Ventures",
    "Apparel",
    "Pharma",
]
_SUFFIXES = ["", "Inc", "LLC", "Ltd", "GmbH", "Co", "Group", "Corp"]
_CITIES = [
    "Austin",
    "Berlin",
    "Boston",
    "Denver",
    "Dublin",
    "Lyon",
    "Madrid",
    "Oslo",
    "Portland",
    "Seattle",
    "Toronto",
    "Vienna",
    "Zurich",
    "Leeds",
    "Chicago",
    "Munich",
    "Milan",
    "Porto",
    "Utrecht",
    "Ghent",
]
_COMBOS = len(_ADJECTIVES) * len(_NOUNS) * len(_SUFFIXES)


def _root_name(i: int) -> tuple[str, str]:
    """Unique company name for index ``i`` and its city."""
    n = (i - 1) * 7919 % _COMBOS if i <= _COMBOS * len(_CITIES) else (i - 1) % _COMBOS
    adjective = _ADJECTIVES[n % len(_ADJECTIVES)]
    noun = _NOUNS[(n // len(_ADJECTIVES)) % len(_NOUNS)]
    suffix = _SUFFIXES[n // (len(_ADJECTIVES) * len(_NOUNS))]
    base = f"{adjective} {noun}" + (f" {suffix}" if suffix else "")
    round_ = (i - 1) // _COMBOS
    city = _CITIES[round_ % len(_CITIES)]
    if round_ == 0:
        return base, city
    if round_ < len(_CITIES):
        return f"{base} ({city})", city
    return f"{base} ({city} {round_})", city


def _is_duplicate(seed: int, i: int) -> bool:
    rng = random.Random(f"{seed}:dup:{i}")  # noqa: S311 - seeded test data
    return i > 5 and rng.random() < 0.07


def _variant(name: str, style: int) -> str:
    if style == 0:
        return name.upper()
    if style == 1:
        return f"{name} Inc."
    if style == 2:
        return name.lower()
    if style == 3:
        return f"{name}, LLC"
    return f"{name} (old)"


def customer_time(n: int, i: int) -> dt.datetime:
    """LastUpdatedTime of generated customer ``i`` of ``n``: ascending, pairs share a second."""
    return DATA_EPOCH - dt.timedelta(minutes=(n - i) // 2 + 1)


def customer(seed: int, n: int, i: int) -> JSON:
    """Return generated customer ``i`` (1-based) of a company with ``n`` customers."""
    rng = random.Random(f"{seed}:Customer:{i}")  # noqa: S311 - seeded test data
    if _is_duplicate(seed, i):
        base = i - 1 - (i % 3)
        root, city = _root_name(base)
        display = _variant(root, i % 5)
        company = root
    else:
        root, city = _root_name(i)
        display = root
        company = rng.choice([root, root, root.split(" (")[0]])
    domain = "".join(ch for ch in company.lower().split(" (")[0] if ch.isalnum()) + ".example"
    first = rng.choice(["Ana", "Ben", "Chloe", "Dmitri", "Ewa", "Farid", "Grace", "Hiro"])
    last = rng.choice(["Ng", "Smith", "Okafor", "Müller", "García", "O'Brien", "Rossi"])
    updated = customer_time(n, i)
    created = updated - dt.timedelta(days=rng.randrange(0, 400))
    record: JSON = {
        "Id": str(i),
        "SyncToken": str(rng.randrange(0, 4)),
        "domain": "QBO",
        "sparse": False,
        "DisplayName": display,
        "CompanyName": company,
        "GivenName": first,
        "FamilyName": last,
        "PrintOnCheckName": company,
        "Active": rng.random() > 0.03,
        "Taxable": rng.random() < 0.3,
        "Job": False,
        "BillWithParent": False,
        "Balance": 0,
        "BalanceWithJobs": 0,
        "PreferredDeliveryMethod": "Email",
        "BillAddr": {
            "Id": str(10_000 + i),
            "Line1": f"{rng.randrange(1, 999)} "
            + rng.choice(["Main St", "High Street", "Rue Neuve"]),
            "City": city,
            "CountrySubDivisionCode": rng.choice(["CA", "WA", "TX", "", "NY"]),
            "PostalCode": f"{rng.randrange(10000, 99999)}",
        },
        "MetaData": _meta(created, updated),
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
    }
    if rng.random() < 0.1:
        record["CurrencyRef"] = {"value": "EUR", "name": "Euro"}
    if rng.random() > 0.2:
        local = rng.choice(
            [first.lower(), "billing", "accounts", "ap", f"{first[0]}.{last}".lower()]
        )
        record["PrimaryEmailAddr"] = {"Address": f"{local}@{domain}"}
    if rng.random() > 0.3:
        digits = f"{rng.randrange(200, 999)}{rng.randrange(100, 999)}{rng.randrange(1000, 9999)}"
        style = rng.randrange(4)
        phone = [
            f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
            f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
            f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
            digits,
        ][style]
        record["PrimaryPhone"] = {"FreeFormNumber": phone}
    return record


_ROSTER_FIELDS = ("CompanyName", "PrimaryEmailAddr", "PrimaryPhone", "WebAddr")


def unique_display_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """DisplayNames for roster ``rows``: QuickBooks refuses a name already used, so a repeat
    (ignoring case) gets `` (2)``, `` (3)``... the way a bookkeeper would tell them apart."""
    seen: dict[str, int] = {}
    names: list[str] = []
    for row in rows:
        name = str(row.get("DisplayName") or row.get("CompanyName") or "Customer").strip()
        count = seen.get(name.lower(), 0) + 1
        seen[name.lower()] = count
        names.append(name if count == 1 else f"{name} ({count})")
    return names


def roster_customer(seed: int, n: int, i: int, row: Mapping[str, Any], display_name: str) -> JSON:
    """Return customer ``i`` (1-based) with the company fields of a shared roster's ``row``.

    Id, SyncToken, currency and timestamps are generated as for any customer, so invoices and
    payments keep pointing at customers by number; name, e-mail, phone, website and billing
    address come from the row (absent there, absent here).
    """
    record = customer(seed, n, i)
    for name in _ROSTER_FIELDS:
        record.pop(name, None)
        if row.get(name) is not None:
            record[name] = copy.deepcopy(row[name])
    record["DisplayName"] = display_name
    record["PrintOnCheckName"] = record.get("CompanyName") or display_name
    record["Active"] = True
    address = dict(row.get("BillAddr") or {})
    record["BillAddr"] = {"Id": str(10_000 + i), **address}
    return record


def invoice_time(n: int, i: int) -> dt.datetime:
    """LastUpdatedTime of generated invoice ``i`` of ``n``."""
    return DATA_EPOCH - dt.timedelta(minutes=3 * (n - i) + 2)


def invoice(seed: int, n_customers: int, n: int, i: int) -> JSON:
    """Return generated invoice ``i`` (1-based), unpaid unless a generated payment pays it."""
    rng = random.Random(f"{seed}:Invoice:{i}")  # noqa: S311 - seeded test data
    customer_id = (i * 7) % n_customers + 1
    cust = customer(seed, n_customers, customer_id)
    currency = cust["CurrencyRef"]["value"]
    lines: list[JSON] = []
    total = Decimal(0)
    for number in range(1, rng.randrange(1, 4) + 1):
        item_id, item_name, price, _ = ITEMS[rng.randrange(len(ITEMS))]
        qty = rng.choice([1, 1, 1, 2, 5, 10])
        unit = Decimal(price) / 100
        amount = quantize(unit * qty)
        total += amount
        lines.append(
            {
                "Id": str(number),
                "LineNum": number,
                "Amount": float(amount),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": item_id, "name": item_name},
                    "Qty": qty,
                    "UnitPrice": float(unit),
                    "TaxCodeRef": {"value": "NON"},
                },
            }
        )
    updated = invoice_time(n, i)
    paid = i % 2 == 0
    record: JSON = {
        "Id": str(i),
        "SyncToken": "0",
        "domain": "QBO",
        "sparse": False,
        "DocNumber": f"{1000 + i}",
        "TxnDate": (updated - dt.timedelta(days=1)).date().isoformat(),
        "DueDate": (updated + dt.timedelta(days=29)).date().isoformat(),
        "CustomerRef": {"value": cust["Id"], "name": cust["DisplayName"]},
        "CurrencyRef": dict(cust["CurrencyRef"]),
        "Line": lines,
        "TxnTaxDetail": {"TotalTax": 0},
        "TotalAmt": float(total),
        "Balance": 0 if paid else float(total),
        "MetaData": _meta(updated, updated),
    }
    if currency != "USD":
        record["ExchangeRate"] = float(EUR_RATE)
    return record


def payment_time(n: int, k: int) -> dt.datetime:
    """LastUpdatedTime of generated payment ``k`` of ``n``."""
    return DATA_EPOCH - dt.timedelta(minutes=6 * (n - k) + 1)


def payment(seed: int, n_customers: int, n_invoices: int, n: int, k: int) -> JSON:
    """Return generated payment ``k``: it pays generated invoice ``2k`` in full."""
    inv = invoice(seed, n_customers, n_invoices, 2 * k)
    updated = payment_time(n, k)
    record: JSON = {
        "Id": str(k),
        "SyncToken": "0",
        "domain": "QBO",
        "sparse": False,
        "TxnDate": updated.date().isoformat(),
        "CustomerRef": dict(inv["CustomerRef"]),
        "CurrencyRef": dict(inv["CurrencyRef"]),
        "DepositToAccountRef": {"value": UNDEPOSITED_FUNDS},
        "TotalAmt": inv["TotalAmt"],
        "UnappliedAmt": 0,
        "Line": [
            {
                "Amount": inv["TotalAmt"],
                "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}],
            }
        ],
        "MetaData": _meta(updated, updated),
    }
    if "ExchangeRate" in inv:
        record["ExchangeRate"] = inv["ExchangeRate"]
    return record
