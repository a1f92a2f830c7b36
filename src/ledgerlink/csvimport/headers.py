"""CSV column headers -> vendor API field paths, and cell text -> the API's JSON values.

This module owns what ledgerlink knows about each vendor's export files:

* the objects a CSV import can land, under the names the connectors land them (Stripe
  ``customers``, Salesforce ``Account``, QuickBooks ``Customer``) and the field holding the id;
* the common export headers of each vendor (Stripe dashboard exports such as ``Address Line1``,
  ``Created (UTC)`` and ``key (metadata)``; Salesforce report labels such as ``Account Name``
  and Data Loader's upper-case API names; QuickBooks customer list headers such as
  ``Customer``, ``Company name`` and ``Billing address``);
* nested API fields written with an underscore or a dot (``address_line1``,
  ``shipping.address.city``, ``BillAddr_City``, ``PrimaryEmailAddr``), resolved to paths;
* how a cell becomes the JSON value the API returns: integers (Stripe amounts are integer minor
  units), booleans, Stripe unix timestamps, Salesforce date-times. Decimal amounts (Salesforce,
  QuickBooks) stay exact decimal text and are never turned into floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "SYSTEMS",
    "CellError",
    "Column",
    "ObjectSpec",
    "SystemSpec",
    "UnknownObjectError",
    "UnknownSystemError",
    "object_spec",
    "resolve_columns",
]

Path = tuple[str, ...]
Converter = Callable[[str], Any]


class UnknownSystemError(ValueError):
    """The system is not one ledgerlink imports; the message lists the known ones."""


class UnknownObjectError(ValueError):
    """The object is not one the system's connector lands; the message lists the known ones."""


class CellError(ValueError):
    """A cell's text is not a valid value for its field (the message says what was expected)."""


# -- converters ------------------------------------------------------------------------------

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_COMPACT_OFFSET = re.compile(r".*T.*[+-]\d{4}")


def text(cell: str) -> Any:
    """Keep a cell as text."""
    return cell


def boolean(cell: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0, any case) as a JSON boolean."""
    key = cell.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise CellError(f"expected true or false, got {cell!r}")


def integer(cell: str) -> int:
    """A whole number (``1,200`` accepted) as a JSON integer; never via float."""
    raw = cell.strip().replace(",", "") if _GROUPED.fullmatch(cell.strip()) else cell.strip()
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise CellError(f"expected a whole number, got {cell!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise CellError(f"expected a whole number, got {cell!r}")
    return int(number)


def decimal_text(cell: str) -> str:
    """An exact decimal amount kept as its canonical text (``1,250.50`` -> ``1250.50``)."""
    raw = cell.strip().replace(",", "") if _GROUPED.fullmatch(cell.strip()) else cell.strip()
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise CellError(f"expected a decimal number, got {cell!r}") from None
    if not number.is_finite():
        raise CellError(f"expected a decimal number, got {cell!r}")
    return str(number)


def _parse_moment(cell: str) -> datetime:
    raw = cell.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    if _COMPACT_OFFSET.fullmatch(raw):  # Salesforce's +0000 offset form
        raw = raw[:-2] + ":" + raw[-2:]
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise CellError(f"expected a date-time such as 2024-01-15 10:00:00, got {cell!r}") from None
    if moment.tzinfo is None:  # export columns such as "Created (UTC)" are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def unix_seconds(cell: str) -> int:
    """A Stripe timestamp: unix seconds as given, or a UTC date-time turned into unix seconds."""
    raw = cell.strip()
    if raw.isdigit():
        return int(raw)
    return int(_parse_moment(raw).timestamp())


def sf_datetime(cell: str) -> str:
    """A Salesforce date-time in the REST form ``2024-01-15T10:00:00.000+0000`` (UTC)."""
    moment = _parse_moment(cell)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


# -- objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """What the import knows about one object of a system.

    Attributes:
        name: the object name the connector lands records under.
        id_field: the payload field holding the record's id.
        aliases: export header (lower case, single spaces) -> API field path.
        containers: dotted paths of nested JSON objects, for ``a_b`` header resolution.
        converters: API field path -> how a cell becomes its JSON value (default: text).
        fields: known top-level API names, for case-insensitive matching (Data Loader).
        cursor_field: the field the connector derives the record's cursor value from.
    """

    name: str
    id_field: str
    aliases: Mapping[str, Path] = field(default_factory=dict)
    containers: frozenset[Path] = frozenset()
    converters: Mapping[Path, Converter] = field(default_factory=dict)
    fields: frozenset[str] = frozenset()
    cursor_field: Path | None = None


@dataclass(frozen=True)
class SystemSpec:
    """A system's importable objects, by every name a user may give (``customer``, ``customers``).

    Attributes:
        name: ``salesforce``, ``stripe`` or ``quickbooks``.
        objects: the object specs by the name the connector lands them under.
        api_objects: landed name -> the API's object name where they differ (Stripe stream
            ``customers`` holds ``customer`` objects); both are accepted, case-insensitively.
        empty_as_null: whether empty cells are JSON null (Stripe, Salesforce) or left out
            (QuickBooks omits fields without a value).
    """

    name: str
    objects: Mapping[str, ObjectSpec]
    api_objects: Mapping[str, str]
    empty_as_null: bool


def _p(dotted: str) -> Path:
    return tuple(dotted.split("."))


def _aliases(pairs: Mapping[str, str]) -> dict[str, Path]:
    return {label: _p(path) for label, path in pairs.items()}


# Stripe ------------------------------------------------------------------------------------

_STRIPE_ADDRESS = ("line1", "line2", "city", "state", "postal_code", "country")
_STRIPE_CUSTOMER_ALIASES = {
    "id": "id",
    "customer id": "id",
    "email": "email",
    "name": "name",
    "description": "description",
    "phone": "phone",
    "created (utc)": "created",
    "created": "created",
    "currency": "currency",
    "balance": "balance",
    "delinquent": "delinquent",
    "tax exempt": "tax_exempt",
    "invoice prefix": "invoice_prefix",
    "address zip": "address.postal_code",
    "address postal code": "address.postal_code",
    "shipping name": "shipping.name",
    "shipping phone": "shipping.phone",
    "shipping address zip": "shipping.address.postal_code",
    "shipping address postal code": "shipping.address.postal_code",
    **{f"address {part.replace('_', ' ')}": f"address.{part}" for part in _STRIPE_ADDRESS},
    **{
        f"shipping address {part.replace('_', ' ')}": f"shipping.address.{part}"
        for part in _STRIPE_ADDRESS
    },
}
_STRIPE_CONTAINERS = frozenset(
    _p(path)
    for path in (
        "address",
        "shipping",
        "shipping.address",
        "metadata",
        "invoice_settings",
        "recurring",
        "status_transitions",
        "billing_details",
        "billing_details.address",
    )
)
_STRIPE_INTEGERS = (
    "balance",
    "amount",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "amount_captured",
    "amount_refunded",
    "amount_received",
    "unit_amount",
    "subtotal",
    "total",
    "tax",
    "fee",
    "net",
    "quantity",
    "attempt_count",
    "recurring.interval_count",
)
_STRIPE_BOOLEANS = (
    "delinquent",
    "livemode",
    "active",
    "paid",
    "refunded",
    "captured",
    "disputed",
    "cancel_at_period_end",
    "automatic",
)
_STRIPE_TIMES = (
    "created",
    "arrival_date",
    "period_start",
    "period_end",
    "current_period_start",
    "current_period_end",
    "canceled_at",
    "cancel_at",
    "start_date",
    "ended_at",
    "due_date",
    "available_on",
    "trial_start",
    "trial_end",
    "status_transitions.paid_at",
    "status_transitions.finalized_at",
)
_STRIPE_CONVERTERS: dict[Path, Converter] = {
    **{_p(name): integer for name in _STRIPE_INTEGERS},
    **{_p(name): boolean for name in _STRIPE_BOOLEANS},
    **{_p(name): unix_seconds for name in _STRIPE_TIMES},
}
_STRIPE_STREAMS = {
    "customers": "customer",
    "products": "product",
    "prices": "price",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "credit_notes": "credit_note",
    "disputes": "dispute",
    "payouts": "payout",
    "balance_transactions": "balance_transaction",
}
_STRIPE_COMMON = {"id": "id", "created (utc)": "created", "description": "description"}


def _stripe() -> SystemSpec:
    objects = {
        stream: ObjectSpec(
            name=stream,
            id_field="id",
            aliases=_aliases(_STRIPE_CUSTOMER_ALIASES if stream == "customers" else _STRIPE_COMMON),
            containers=_STRIPE_CONTAINERS,
            converters=_STRIPE_CONVERTERS,
            cursor_field=("created",),
        )
        for stream in _STRIPE_STREAMS
    }
    return SystemSpec("stripe", objects, dict(_STRIPE_STREAMS.items()), empty_as_null=True)


# Salesforce --------------------------------------------------------------------------------

_SF_ACCOUNT_ALIASES = {
    "account id": "Id",
    "account name": "Name",
    "account type": "Type",
    "type": "Type",
    "industry": "Industry",
    "website": "Website",
    "phone": "Phone",
    "billing street": "BillingStreet",
    "billing address line 1": "BillingStreet",
    "billing city": "BillingCity",
    "billing state/province": "BillingState",
    "billing state": "BillingState",
    "billing zip/postal code": "BillingPostalCode",
    "billing postal code": "BillingPostalCode",
    "billing country": "BillingCountry",
    "shipping street": "ShippingStreet",
    "shipping city": "ShippingCity",
    "shipping state/province": "ShippingState",
    "shipping state": "ShippingState",
    "shipping zip/postal code": "ShippingPostalCode",
    "shipping postal code": "ShippingPostalCode",
    "shipping country": "ShippingCountry",
    "annual revenue": "AnnualRevenue",
    "employees": "NumberOfEmployees",
    "account currency": "CurrencyIsoCode",
    "account owner id": "OwnerId",
    "created date": "CreatedDate",
    "last modified date": "LastModifiedDate",
}
_SF_CONTACT_ALIASES = {
    "contact id": "Id",
    "account id": "AccountId",
    "first name": "FirstName",
    "last name": "LastName",
    "email": "Email",
    "phone": "Phone",
    "title": "Title",
    "mailing country": "MailingCountry",
    "created date": "CreatedDate",
    "last modified date": "LastModifiedDate",
}
_SF_FIELDS = {
    "Account": (
        "Id Name Type Industry Website Phone BillingStreet BillingCity BillingState "
        "BillingPostalCode BillingCountry ShippingStreet ShippingCity ShippingState "
        "ShippingPostalCode ShippingCountry AnnualRevenue NumberOfEmployees OwnerId "
        "CurrencyIsoCode Stripe_Customer_Id__c QuickBooks_Customer_Id__c"
    ),
    "Contact": "Id AccountId FirstName LastName Email Phone Title MailingCountry",
    "Opportunity": "Id AccountId Name StageName CloseDate Amount IsWon IsClosed Pricebook2Id Type",
    "OpportunityLineItem": (
        "Id OpportunityId PricebookEntryId Product2Id Quantity UnitPrice TotalPrice Description"
    ),
    "Quote": "Id OpportunityId AccountId Name Status ExpirationDate GrandTotal Pricebook2Id",
    "QuoteLineItem": (
        "Id QuoteId PricebookEntryId Product2Id Quantity UnitPrice Discount TotalPrice"
    ),
    "Product2": "Id Name ProductCode Family IsActive Description",
    "PricebookEntry": "Id Pricebook2Id Product2Id UnitPrice IsActive UseStandardPrice",
}
_SF_AUDIT = " SystemModstamp IsDeleted CreatedDate LastModifiedDate"
_SF_BOOLEAN = ("IsDeleted", "IsWon", "IsClosed", "IsActive", "UseStandardPrice")
_SF_DECIMAL = (
    "AnnualRevenue",
    "Amount",
    "Quantity",
    "UnitPrice",
    "TotalPrice",
    "Discount",
    "GrandTotal",
)
_SF_DATETIME = ("CreatedDate", "LastModifiedDate", "SystemModstamp")
_SF_CONVERTERS: dict[Path, Converter] = {
    **{(name,): boolean for name in _SF_BOOLEAN},
    **{(name,): decimal_text for name in _SF_DECIMAL},
    **{(name,): sf_datetime for name in _SF_DATETIME},
    ("NumberOfEmployees",): integer,
}


def _salesforce() -> SystemSpec:
    labels = {"Account": _SF_ACCOUNT_ALIASES, "Contact": _SF_CONTACT_ALIASES}
    objects = {
        name: ObjectSpec(
            name=name,
            id_field="Id",
            aliases=_aliases(labels.get(name, {})),
            converters=_SF_CONVERTERS,
            fields=frozenset((names + _SF_AUDIT).split()),
            cursor_field=("SystemModstamp",),
        )
        for name, names in _SF_FIELDS.items()
    }
    return SystemSpec("salesforce", objects, {}, empty_as_null=True)


# QuickBooks --------------------------------------------------------------------------------

_QB_ADDRESS = {
    "street": "Line1",
    "address": "Line1",
    "city": "City",
    "state": "CountrySubDivisionCode",
    "zip": "PostalCode",
    "zip code": "PostalCode",
    "postal code": "PostalCode",
    "country": "Country",
}
_QB_CUSTOMER_ALIASES = {
    "id": "Id",
    "customer": "DisplayName",
    "customer full name": "FullyQualifiedName",
    "display name": "DisplayName",
    "name": "DisplayName",
    "company name": "CompanyName",
    "company": "CompanyName",
    "first name": "GivenName",
    "last name": "FamilyName",
    "email": "PrimaryEmailAddr.Address",
    "phone": "PrimaryPhone.FreeFormNumber",
    "phone numbers": "PrimaryPhone.FreeFormNumber",
    "mobile": "Mobile.FreeFormNumber",
    "fax": "Fax.FreeFormNumber",
    "website": "WebAddr.URI",
    "billing address": "BillAddr.Line1",
    "shipping address": "ShipAddr.Line1",
    "open balance": "Balance",
    "balance": "Balance",
    "notes": "Notes",
    "currency": "CurrencyRef.value",
    "active": "Active",
    **{f"billing {label}": f"BillAddr.{name}" for label, name in _QB_ADDRESS.items()},
    **{f"shipping {label}": f"ShipAddr.{name}" for label, name in _QB_ADDRESS.items()},
}
_QB_CONTAINERS = frozenset(
    _p(path)
    for path in (
        "BillAddr",
        "ShipAddr",
        "PrimaryEmailAddr",
        "PrimaryPhone",
        "Mobile",
        "Fax",
        "WebAddr",
        "CurrencyRef",
        "MetaData",
        "ParentRef",
        "CustomerRef",
        "SalesTermRef",
        "ItemRef",
        "IncomeAccountRef",
        "DepositToAccountRef",
    )
)
# A bare container header holds the field the API nests in it: PrimaryEmailAddr -> .Address.
_QB_LEAVES = {
    "PrimaryEmailAddr": "Address",
    "PrimaryPhone": "FreeFormNumber",
    "Mobile": "FreeFormNumber",
    "Fax": "FreeFormNumber",
    "WebAddr": "URI",
    "CurrencyRef": "value",
    "ParentRef": "value",
    "CustomerRef": "value",
    "SalesTermRef": "value",
    "ItemRef": "value",
}
_QB_CONVERTERS: dict[Path, Converter] = {
    **{
        (name,): decimal_text
        for name in ("Balance", "BalanceWithJobs", "TotalAmt", "UnitPrice", "Amount")
    },
    **{(name,): boolean for name in ("Active", "Job", "Taxable", "BillWithParent")},
}
_QB_OBJECTS = (
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


def _quickbooks() -> SystemSpec:
    objects = {
        name: ObjectSpec(
            name=name,
            id_field="Id",
            aliases=_aliases(_QB_CUSTOMER_ALIASES if name == "Customer" else {"id": "Id"}),
            containers=_QB_CONTAINERS,
            converters=_QB_CONVERTERS,
            cursor_field=("MetaData", "LastUpdatedTime"),
        )
        for name in _QB_OBJECTS
    }
    return SystemSpec("quickbooks", objects, {}, empty_as_null=False)


SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec for spec in (_stripe(), _salesforce(), _quickbooks())
}
"""Every importable system by name."""


def object_spec(system: str, object_name: str) -> ObjectSpec:
    """Return the spec of ``object_name`` of ``system`` (object names are case-insensitive).

    Args:
        system: ``salesforce``, ``stripe`` or ``quickbooks``.
        object_name: the landed name (``customers``, ``Account``) or the API object name
            (Stripe ``customer``).

    Raises:
        UnknownSystemError: the system is not known (the message lists the known ones).
        UnknownObjectError: the object is not known (the message lists the known ones).
    """
    spec = SYSTEMS.get(system.strip().lower())
    if spec is None:
        raise UnknownSystemError(
            f"unknown system {system!r}; known systems: {', '.join(sorted(SYSTEMS))}"
        )
    wanted = object_name.strip().lower()
    for name, obj in spec.objects.items():
        if name.lower() == wanted:
            return obj
    for name, api_object in spec.api_objects.items():
        if api_object.lower() == wanted:
            return spec.objects[name]
    raise UnknownObjectError(
        f"unknown {spec.name} object {object_name!r}; known objects: {', '.join(spec.objects)}"
    )


# -- header resolution -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: its header, the API field path it fills, and its value converter."""

    index: int
    header: str
    path: Path
    convert: Converter


def _label(header: str) -> str:
    return " ".join(header.strip().lower().split())


_METADATA = re.compile(r"^(.+?)\s*\(metadata\)$", re.IGNORECASE)


def _split_underscores(name: str, containers: frozenset[Path]) -> Path:
    """Split ``address_line1`` into ``(address, line1)`` where ``address`` is a container."""
    tokens = name.split("_")
    path: list[str] = []
    start = 0
    while start < len(tokens):
        for end in range(start + 1, len(tokens)):
            candidate = (*path, "_".join(tokens[start:end]))
            if candidate in containers:
                path = list(candidate)
                start = end
                break
        else:
            path.append("_".join(tokens[start:]))
            break
    return tuple(path)


def _api_path(system: SystemSpec, spec: ObjectSpec, header: str) -> Path:
    """The API field path a header names, written with dots or underscores."""
    name = header.strip()
    if "." in name:
        path = tuple(part for part in name.split(".") if part)
    else:
        path = _split_underscores(name, spec.containers)
        if len(path) == 1 and spec.fields:
            lowered = {f.lower(): f for f in spec.fields}
            path = (lowered.get(path[0].lower(), path[0]),)
    if system.name == "quickbooks" and len(path) == 1 and path[0] in _QB_LEAVES:
        path = (path[0], _QB_LEAVES[path[0]])
    return path


def resolve_columns(
    system: str,
    object_name: str,
    headers: list[str],
    overrides: Mapping[str, str] | None = None,
) -> list[Column]:
    """Resolve every header of a file to the API field path it fills.

    Order: ``--map`` overrides (by exact header, then case-insensitively), the vendor's export
    labels, a Stripe ``key (metadata)`` column, then the header as an API field name with
    nesting written by ``_`` or ``.``.

    Args:
        system: the system name.
        object_name: the object name (see :func:`object_spec`).
        headers: the file's header row.
        overrides: ``{header: api_field}`` from ``--map col=field``.

    Returns:
        One :class:`Column` per header, in file order.

    Raises:
        UnknownSystemError, UnknownObjectError: see :func:`object_spec`.
    """
    spec = object_spec(system, object_name)
    system_spec = SYSTEMS[system.strip().lower()]
    mapped = {_label(key): value for key, value in (overrides or {}).items()}
    columns = []
    for index, header in enumerate(headers):
        label = _label(header)
        target: Path
        if header in (overrides or {}):
            target = _api_path(system_spec, spec, (overrides or {})[header])
        elif label in mapped:
            target = _api_path(system_spec, spec, mapped[label])
        elif label in spec.aliases:
            target = spec.aliases[label]
        elif system_spec.name == "stripe" and (match := _METADATA.match(header.strip())):
            target = ("metadata", match.group(1))
        else:
            target = _api_path(system_spec, spec, header)
        columns.append(Column(index, header, target, spec.converters.get(target, text)))
    return columns
