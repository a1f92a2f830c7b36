"""The shape of mapping files, as pydantic models, and the canonical field paths they name.

Five kinds of file live in a mappings folder (see ``docs/mappings.md``):

* ``<system>.yaml`` (``salesforce.yaml``, ``stripe.yaml``, ``quickbooks.yaml``, or any other
  connector's name): :class:`SystemFile`, how each source object of that system becomes a
  canonical entity (``objects.<object>.fields``) and which of that system's fields the hub may
  write (``objects.<object>.writes``);
* ``shared.yaml``: :class:`SharedFile`, the source of truth of every synced canonical field;
* ``products.yaml``: :class:`ProductsFile`, which QuickBooks item each product and price books
  to;
* ``accounts.yaml``: :class:`AccountsFile`, the ledger accounts the postings use.

Every model refuses unknown keys, so a misspelt key is an error with its line, never ignored.
Checks that need more than one value (a canonical field that does not exist on the entity, a
write to a field the hub does not own, ...) live in :mod:`ledgerlink.mapping.loader`.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from ledgerlink.domain.entities import ENTITY_TYPES, Entity
from ledgerlink.mapping.transforms import (
    ROOT_PREFIX,
    TRANSFORMS,
    PathSyntaxError,
    parse_path,
)

__all__ = [
    "ACCOUNT_ROLES",
    "ACCOUNT_TYPES",
    "FILE_KINDS",
    "HUB_VALUES",
    "AccountSpec",
    "AccountsFile",
    "FieldSpec",
    "ItemSpec",
    "ObjectMapping",
    "ProductsFile",
    "SharedFile",
    "SystemFile",
    "TransformSpecError",
    "TransformStep",
    "TruthRule",
    "check_canonical_path",
    "entity_class",
    "parse_transform",
    "top_field",
]

HUB_VALUES: dict[str, str] = {
    "salesforce_account_id": "the linked Salesforce Account Id",
    "stripe_customer_id": "the linked Stripe customer id",
    "quickbooks_customer_id": "the linked QuickBooks Customer Id",
    "billing_status": "the customer's billing status (active, past_due, canceled, none)",
    "last_invoice_date": "the day of the customer's latest invoice",
    "last_payment_date": "the day of the customer's latest payment",
    "open_balance": "what the customer owes in the ledger",
    "mrr": "monthly recurring revenue",
    "arr": "annual recurring revenue (12 x MRR)",
    "invoiced": "whether the deal has been invoiced",
    "paid": "whether the deal's invoices are paid",
}
"""Values the hub computes itself and may write to any system: ``hub.<name>`` in ``writes``."""

ACCOUNT_ROLES: dict[str, str] = {
    "receivable": "accounts receivable: open customer invoices",
    "revenue": "default income account of items",
    "clearing": "the Stripe balance: charges in, refunds and fees out, payouts out",
    "payouts": "payouts in transit between the Stripe balance and the bank",
    "bank": "the bank account payouts arrive in",
    "fees": "Stripe processing fees",
    "refunds": "refunds paid back to customers",
    "disputes": "disputed amounts and dispute fees",
}
"""The ledger accounts every posting rule refers to, by role; ``accounts.yaml`` names each."""

ACCOUNT_TYPES = (
    "Bank",
    "Accounts Receivable",
    "Other Current Asset",
    "Fixed Asset",
    "Other Asset",
    "Accounts Payable",
    "Credit Card",
    "Other Current Liability",
    "Long Term Liability",
    "Equity",
    "Income",
    "Cost of Goods Sold",
    "Expense",
    "Other Income",
    "Other Expense",
)
"""QuickBooks Online ``Account.AccountType`` values."""

FILE_KINDS = ("shared", "products", "accounts")
"""File names (without ``.yaml``) that are not a system's mapping."""

_CANONICAL_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _File(_Strict):
    version: Literal[1] = 1
    replace: bool = False
    description: str | None = None


# -- transforms ---------------------------------------------------------------------------


class TransformSpecError(ValueError):
    """A transform entry is invalid; ``problems`` holds (location inside it, reason) pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(reason for _, reason in problems))


class TransformStep(_Strict):
    """One validated transform: its name and its parameters (an instance of its model)."""

    name: str
    params: Any


def parse_transform(raw: object) -> TransformStep:
    """Validate one entry of a ``transforms`` list.

    Args:
        raw: ``"strip"`` or ``{"money_minor": {"currency_from": "currency"}}``.

    Returns:
        The transform's name and validated parameters.

    Raises:
        TransformSpecError: the entry is malformed, names no known transform, or its
            parameters are invalid (each problem with its location inside the entry).
    """
    if isinstance(raw, TransformStep):
        return raw
    if isinstance(raw, str):
        name, params = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        name, params = next(iter(raw.items()))
    else:
        reason = "a transform is a name (strip) or a one-key mapping ({default: x})"
        raise TransformSpecError([((), reason)])
    definition = TRANSFORMS.get(name) if isinstance(name, str) else None
    if definition is None:
        known = ", ".join(sorted(TRANSFORMS))
        raise TransformSpecError([((), f"unknown transform {name!r} (known: {known})")])
    if params is None:
        if any(f.is_required() for f in definition.params.model_fields.values()):
            raise TransformSpecError([((), f"transform {name!r} needs parameters")])
        params = {}
    try:
        validated = definition.params.model_validate(params)
    except ValidationError as exc:
        raise TransformSpecError(
            [((name, *error["loc"]), f"{name}: {error['msg']}") for error in exc.errors()]
        ) from None
    except (ValueError, PathSyntaxError) as exc:
        raise TransformSpecError([((name,), f"{name}: {exc}")]) from None
    return TransformStep(name=name, params=validated)


# -- system files -------------------------------------------------------------------------


def _check_source_path(path: str) -> str:
    parse_path(path.removeprefix(ROOT_PREFIX))
    return path


class FieldSpec(_Strict):
    """How one canonical field is computed from a source record.

    Exactly one of ``from`` (a path, or a list of paths for ``concat``), ``const`` (a fixed
    value) or ``each`` (a list in the source whose elements ``fields`` maps, one canonical
    element each) is given. A plain string stands for ``{from: <string>}``.

    Attributes:
        from_: source path(s), written ``from`` in the file.
        const: a fixed value.
        each: source path of a list, for a canonical list of objects (invoice lines).
        where: with ``each``, keep only the elements whose value at each path equals the
            given value (or is one of the given list), e.g. ``{DetailType: SalesItemLineDetail}``.
        fields: per-element field mappings, with ``each``.
        transforms: applied left to right to the value read.
        required: a null result is an error (the record is quarantined) instead of absent.
    """

    from_: str | list[str] | None = Field(default=None, alias="from")
    const: JsonValue = None
    each: str | None = None
    where: dict[str, JsonValue] | None = None
    fields: dict[str, FieldSpec] | None = None
    transforms: list[TransformStep] = Field(default_factory=list)
    required: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data

    @field_validator("from_")
    @classmethod
    def _paths(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                msg = "from needs at least one path"
                raise ValueError(msg)
            return [_check_source_path(path) for path in value]
        return None if value is None else _check_source_path(value)

    @field_validator("each")
    @classmethod
    def _each_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_source_path(value)

    @field_validator("transforms", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [parse_transform(item) for item in value]

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [
            name
            for name, present in (
                ("from", self.from_ is not None),
                ("const", self.const is not None),
                ("each", self.each is not None),
            )
            if present
        ]
        if len(given) != 1:
            msg = "give exactly one of from, const or each"
            if given:
                msg += f" (found {' and '.join(given)})"
            raise ValueError(msg)
        if (self.each is None) != (self.fields is None):
            msg = "each and fields go together: each names the list, fields maps one element"
            raise ValueError(msg)
        if self.where is not None:
            if self.each is None:
                msg = "where filters the elements of each; it needs each"
                raise ValueError(msg)
            for path in self.where:
                _check_source_path(path)
        return self


class ObjectMapping(_Strict):
    """How one source object (``Account``, ``customer``, ``Invoice``) maps to an entity.

    Attributes:
        entity: the canonical entity (``party``, ``contact``, ``invoice``, ...).
        fields: canonical field path -> how to compute it.
        writes: this system's field path -> the canonical field (or ``hub.<value>``) the hub
            writes into it; only fields whose source of truth is another system.
        description: free text for people.
    """

    entity: str
    fields: dict[str, FieldSpec]
    writes: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

    @field_validator("entity")
    @classmethod
    def _known_entity(cls, value: str) -> str:
        if value not in ENTITY_TYPES:
            known = ", ".join(sorted(ENTITY_TYPES))
            msg = f"unknown entity {value!r} (known: {known})"
            raise ValueError(msg)
        return value

    @field_validator("writes")
    @classmethod
    def _target_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value:
            parse_path(target)
        return value


class SystemFile(_File):
    """A system's mapping file: ``salesforce.yaml``, ``stripe.yaml``, ``quickbooks.yaml``.

    Attributes:
        system: the connector name; must equal the file name.
        tables: named lookup tables that ``lookup: {table: <name>}`` refers to.
        objects: source object name -> its mapping.
    """

    system: str = Field(min_length=1)
    tables: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    objects: dict[str, ObjectMapping] = Field(default_factory=dict)


# -- shared.yaml --------------------------------------------------------------------------


class TruthRule(_Strict):
    """Which system is the source of truth for a field, and what a conflict does.

    ``name: salesforce`` is short for ``name: {system: salesforce}``.

    Attributes:
        system: the system whose value wins and that the hub never writes this field to.
        on_conflict: when two systems changed the field since the last cycle,
            ``source_wins`` takes the source of truth's value, ``review`` queues the change
            for a person.
    """

    system: str = Field(min_length=1)
    on_conflict: Literal["source_wins", "review"] = "source_wins"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"system": data} if isinstance(data, str) else data


class SharedFile(_File):
    """``shared.yaml``: the source of truth per canonical entity and field.

    Attributes:
        source_of_truth: entity -> canonical field -> rule.
    """

    source_of_truth: dict[str, dict[str, TruthRule]] = Field(default_factory=dict)


# -- products.yaml and accounts.yaml ------------------------------------------------------


class ItemSpec(_Strict):
    """A QuickBooks item and the products and prices that book to it.

    Attributes:
        name: the QuickBooks ``Item.Name`` (the hub finds or creates the item by name).
        income_account: the role in ``accounts.yaml`` whose account the item's sales credit.
        stripe_products: Stripe product ids (``prod_...``).
        stripe_prices: Stripe price ids (``price_...``).
        stripe_lookup_keys: Stripe price lookup keys.
        salesforce_product_codes: Salesforce ``Product2.ProductCode`` values.
        product_names: product names (any system) to match when no id matches.
    """

    name: str = Field(min_length=1, max_length=100)
    income_account: str = "revenue"
    stripe_products: list[str] = Field(default_factory=list)
    stripe_prices: list[str] = Field(default_factory=list)
    stripe_lookup_keys: list[str] = Field(default_factory=list)
    salesforce_product_codes: list[str] = Field(default_factory=list)
    product_names: list[str] = Field(default_factory=list)


class ProductsFile(_File):
    """``products.yaml``: products and prices -> QuickBooks items.

    Attributes:
        items: key -> item (the key is how overrides and ``default_item`` name it).
        default_item: the item used when no rule matches; without it an unmatched line is
            quarantined.
    """

    items: dict[str, ItemSpec] = Field(default_factory=dict)
    default_item: str | None = None


class AccountSpec(_Strict):
    """A ledger account as QuickBooks knows it.

    Attributes:
        name: ``Account.Name`` (the hub finds or creates the account by name).
        type: ``Account.AccountType``.
        sub_type: ``Account.AccountSubType``, when it matters.
        number: ``Account.AcctNum``, when the chart of accounts uses numbers.
        currency: for a bank or clearing account in another currency than the home one.
    """

    name: str = Field(min_length=1, max_length=100)
    type: Literal[
        "Bank",
        "Accounts Receivable",
        "Other Current Asset",
        "Fixed Asset",
        "Other Asset",
        "Accounts Payable",
        "Credit Card",
        "Other Current Liability",
        "Long Term Liability",
        "Equity",
        "Income",
        "Cost of Goods Sold",
        "Expense",
        "Other Income",
        "Other Expense",
    ]
    sub_type: str | None = None
    number: str | None = None
    currency: str | None = None


class AccountsFile(_File):
    """``accounts.yaml``: role -> ledger account.

    Attributes:
        accounts: every role in :data:`ACCOUNT_ROLES` plus any the user adds for items.
    """

    accounts: dict[str, AccountSpec] = Field(default_factory=dict)

    @field_validator("accounts")
    @classmethod
    def _every_role(cls, value: dict[str, AccountSpec]) -> dict[str, AccountSpec]:
        missing = [role for role in ACCOUNT_ROLES if role not in value]
        if missing:
            msg = f"missing account roles: {', '.join(missing)}"
            raise ValueError(msg)
        return value


# -- canonical paths ----------------------------------------------------------------------


def _core(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``None`` from an annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) == 1:
                annotation = options[0]
                continue
        return annotation


def _element(annotation: Any) -> Any | None:
    """The element type of ``tuple[X, ...]``, or None for anything else."""
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return _core(args[0])
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def top_field(path: str) -> str:
    """Return the top-level field of a canonical path (``addresses[0].city`` -> ``addresses``)."""
    return path.split(".", 1)[0].split("[", 1)[0]


def check_canonical_path(  # noqa: PLR0911 - one return per reason a path is refused
    model: type[BaseModel], path: str, *, each: bool = False
) -> tuple[str | None, type[BaseModel] | None]:
    """Check that ``path`` names a field of ``model`` a mapping may set.

    Paths are field names joined by dots; a tuple field takes an index (``emails[0]``,
    ``addresses[1].city``); ``metadata.<key>`` sets one metadata entry. With ``each`` the
    path must be a tuple of objects without index (``lines``).

    Args:
        model: the entity class (or, inside ``each``, the element class).
        path: the canonical path.
        each: whether the field maps a source list element by element.

    Returns:
        ``(None, element_model)`` when valid (``element_model`` is the element class for
        ``each``, else None), or ``(reason, None)``.
    """
    segments = path.split(".")
    current: Any = model
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if typing.get_origin(current) is dict:
            if not segment or not last:
                return f"{path!r}: metadata takes one key (metadata.<key>)", None
            return None, None
        match = _CANONICAL_SEGMENT.fullmatch(segment)
        if match is None or not _is_model(current):
            return f"{path!r} is not a canonical field path", None
        name, index = match.group(1), match.group(2)
        field = current.model_fields.get(name)
        is_entity = issubclass(current, Entity)
        if name == "source" and is_entity:
            return f"{path!r}: source is set by ledgerlink from the record's key", None
        if field is None:
            known = ", ".join(n for n in current.model_fields if not (is_entity and n == "source"))
            reason = f"{current.__name__} has no field {name!r} (fields: {known})"
            return f"unknown field {path!r}: {reason}", None
        annotation = _core(field.annotation)
        element = _element(annotation)
        if index is not None:
            if element is None:
                return f"{path!r}: {name} is not a list, it takes no [index]", None
            annotation = element
        if last:
            if each:
                if element is None or index is not None or not _is_model(element):
                    return f"{path!r}: each needs a list of objects such as lines", None
                return None, element
            return None, None
        current = annotation
    return None, None  # pragma: no cover - the loop always returns on its last segment


def entity_class(entity: str) -> type[Entity]:
    """Return the entity class for an entity name from a validated mapping."""
    return ENTITY_TYPES[entity]
