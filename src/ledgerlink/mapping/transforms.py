"""The transforms a mapping file may apply to a source value, and the paths that read values.

A field mapping reads one value (or several) from a source payload by dotted path
(``address.line1``, ``BillAddr.City``, ``lines.data[0].amount``) and passes it through a list
of transforms, left to right. Each transform is a name plus validated parameters::

    transforms: [strip, lowercase, {default: "n/a"}, {money_minor: {currency_from: currency}}]

``None`` (a missing or null source value) passes through every transform unchanged except
``default``, so an absent field stays absent instead of failing.

Every transform is registered in :data:`TRANSFORMS` with a pydantic model of its parameters;
the loader validates parameters when it loads a file, so a typo in a parameter is a located
error at start-up, not a failure on the first record. A transform that cannot handle a value
raises :class:`TransformError`; the record is then quarantined with that reason.

Money never passes through a float: ``money_minor`` takes integers, ``money_decimal`` takes
decimal strings, integers or Decimals. A JSON number with a fraction (QuickBooks and Salesforce
send amounts like ``150.25``) arrives from the JSON decoder as a float; ``money_decimal`` and
``decimal`` read it through its shortest decimal representation (``repr``), which is the text
the JSON held for any amount of up to 15 significant digits, and refuse longer ones.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from ledgerlink.domain.currencies import MoneyError, get_currency, normalize_currency_code
from ledgerlink.domain.money import Money, Rounding, RoundingRequiredError

__all__ = [
    "ROOT_PREFIX",
    "TRANSFORMS",
    "PathSyntaxError",
    "TransformContext",
    "TransformDef",
    "TransformError",
    "TransformFn",
    "build_transform",
    "parse_path",
    "read_path",
]

ROOT_PREFIX = "$."
"""Inside ``each``, a path starting with ``$.`` reads from the whole record, not the element."""

_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_MAX_SIGNIFICANT_DIGITS = 15


class TransformError(ValueError):
    """A transform cannot turn this value into the canonical one; the reason says why."""


class PathSyntaxError(ValueError):
    """A source path is not ``name(.name)*`` with optional ``[index]`` suffixes."""


PathPart = str | int


def parse_path(path: str) -> tuple[PathPart, ...]:
    """Split a source path into keys and list indexes.

    Args:
        path: ``address.line1``, ``lines.data[0].amount`` or ``Line[2]``.

    Returns:
        The parts, strings for keys and ints for indexes (``("lines", "data", 0, "amount")``).

    Raises:
        PathSyntaxError: the path is empty or malformed.
    """
    if not path or path.strip() != path:
        msg = f"bad path {path!r}: expected names separated by dots, e.g. address.line1"
        raise PathSyntaxError(msg)
    parts: list[PathPart] = []
    for piece in path.split("."):
        match = _SEGMENT.fullmatch(piece)
        if match is None:
            msg = f"bad path {path!r}: {piece!r} is not a name with optional [index] suffixes"
            raise PathSyntaxError(msg)
        parts.append(match.group(1))
        parts.extend(int(index) for index in _INDEX.findall(match.group(2)))
    return tuple(parts)


def read_path(data: object, parts: Sequence[PathPart]) -> Any:
    """Return the value at ``parts`` inside nested JSON, or None when any step is missing.

    Args:
        data: a decoded JSON value (dicts, lists, scalars).
        parts: from :func:`parse_path`.

    Returns:
        The value, or None when a key is absent, an index is out of range or a step is not
        a container.
    """
    current: Any = data
    for part in parts:
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return None
            current = current[part]
        else:
            # dict first: the ABC check for Mapping is several times slower
            if type(current) is not dict and not isinstance(current, Mapping):
                return None
            current = current.get(part)
        if current is None:
            return None
    return current


@dataclass(frozen=True, slots=True)
class TransformContext:
    """What a transform may look at besides its input value.

    Attributes:
        system: the system the record comes from (the default ``system`` of ``ref``).
        record: the whole source payload.
        element: inside ``each``, the current element; otherwise the record.
        tables: the file's named lookup tables.
    """

    system: str
    record: Mapping[str, Any]
    element: Any = None
    tables: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)

    def read(self, path: str) -> Any:
        """Read ``path`` from the element, or from the record when it starts with ``$.``."""
        if path.startswith(ROOT_PREFIX):
            return read_path(self.record, _parsed(path[len(ROOT_PREFIX) :]))
        base = self.record if self.element is None else self.element
        return read_path(base, _parsed(path))


@functools.lru_cache(maxsize=4096)
def _parsed(path: str) -> tuple[PathPart, ...]:
    """:func:`parse_path`, remembered: mappings read the same few paths for every record."""
    return parse_path(path)


TransformFn = Callable[[Any, TransformContext], Any]
"""A built transform: ``(value, context) -> new value``."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _NoParams(_Params):
    """Transforms without parameters."""


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        msg = f"{name} expects text, got {type(value).__name__} {value!r}"
        raise TransformError(msg)
    return value


def _check_path(value: str | None) -> str | None:
    if value is not None:
        parse_path(value.removeprefix(ROOT_PREFIX))
    return value


# -- text ---------------------------------------------------------------------------------


def _strip(_: _NoParams) -> TransformFn:
    return lambda value, _ctx: None if value is None else _text(value, "strip").strip()


def _lowercase(_: _NoParams) -> TransformFn:
    return lambda value, _ctx: None if value is None else _text(value, "lowercase").lower()


def _uppercase(_: _NoParams) -> TransformFn:
    return lambda value, _ctx: None if value is None else _text(value, "uppercase").upper()


def _collapse_spaces(_: _NoParams) -> TransformFn:
    return lambda value, _ctx: (
        None if value is None else " ".join(_text(value, "collapse_spaces").split())
    )


def _null_if_blank(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    return run


def _string(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool | int | Decimal):
            return str(value).lower() if isinstance(value, bool) else str(value)
        msg = f"string expects text, a number or a boolean, got {type(value).__name__}"
        raise TransformError(msg)

    return run


class _ConcatParams(_Params):
    separator: str = " "


def _concat(params: _ConcatParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        parts = value if isinstance(value, list) else [value]
        texts = [str(part).strip() for part in parts if part is not None and str(part).strip()]
        return params.separator.join(texts) if texts else None

    return run


class _SplitParams(_Params):
    separator: str | None = None
    index: int | None = None
    maxsplit: int = -1

    @field_validator("separator")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value == "":
            msg = "separator must not be empty (leave it out to split on whitespace)"
            raise ValueError(msg)
        return value


def _split(params: _SplitParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        pieces = [p.strip() for p in _text(value, "split").split(params.separator, params.maxsplit)]
        pieces = [p for p in pieces if p]
        if params.index is None:
            return pieces
        if -len(pieces) <= params.index < len(pieces):
            return pieces[params.index]
        return None

    return run


def _first(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if isinstance(value, list):
            return next((item for item in value if item is not None), None)
        return value

    return run


# -- defaults and tables ------------------------------------------------------------------


class _DefaultParams(_Params):
    value: JsonValue

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return data if isinstance(data, dict) and set(data) == {"value"} else {"value": data}


def _default(params: _DefaultParams) -> TransformFn:
    return lambda value, _ctx: params.value if value is None else value


def _key(value: object, ignore_case: bool) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)  # JSON 0.0 looks up as "0.0"
    elif isinstance(value, str | int | Decimal):
        text = str(value)
    else:
        msg = f"cannot look up a {type(value).__name__} value"
        raise TransformError(msg)
    return text.casefold() if ignore_case else text


class _LookupParams(_Params):
    table: dict[str, JsonValue] | str
    default: JsonValue = None
    keep_unknown: bool = False
    ignore_case: bool = False


def _lookup(params: _LookupParams) -> TransformFn:
    def run(value: Any, ctx: TransformContext) -> Any:
        if value is None:
            return None
        table = params.table if isinstance(params.table, dict) else ctx.tables[params.table]
        key = _key(value, params.ignore_case)
        for source, target in table.items():
            if (source.casefold() if params.ignore_case else source) == key:
                return target
        return value if params.keep_unknown else params.default

    return run


class _EnumParams(_Params):
    map: dict[str, JsonValue]
    default: JsonValue = None
    ignore_case: bool = False

    @field_validator("map")
    @classmethod
    def _not_empty(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if not value:
            msg = "map must list at least one value"
            raise ValueError(msg)
        return value


def _enum(params: _EnumParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        key = _key(value, params.ignore_case)
        for source, target in params.map.items():
            if (source.casefold() if params.ignore_case else source) == key:
                return target
        if params.default is not None:
            return params.default
        known = ", ".join(repr(k) for k in params.map)
        msg = f"value {value!r} is not in the enum map (known: {known})"
        raise TransformError(msg)

    return run


# -- numbers ------------------------------------------------------------------------------


def _exact_decimal(value: object, what: str) -> Decimal:
    """Turn a JSON number or decimal text into a Decimal without float arithmetic."""
    if isinstance(value, bool):
        msg = f"{what} expects a number, got a boolean"
        raise TransformError(msg)
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        text = repr(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            msg = f"{what}: {value!r} is not a finite number"
            raise TransformError(msg) from None
        if not number.is_finite() or len(number.as_tuple().digits) > _MAX_SIGNIFICANT_DIGITS:
            msg = f"{what}: {text} has more significant digits than a JSON number keeps exactly"
            raise TransformError(msg)
        return number
    if isinstance(value, str):
        text = value.strip()
        if _GROUPED.fullmatch(text):
            text = text.replace(",", "")  # "1,250.00" as spreadsheets and CRMs write it
        try:
            number = Decimal(text)
        except InvalidOperation:
            msg = f"{what}: {value!r} is not a decimal number"
            raise TransformError(msg) from None
        if not number.is_finite():
            msg = f"{what}: {value!r} is not a finite number"
            raise TransformError(msg)
        return number
    msg = f"{what} expects a number, got {type(value).__name__}"
    raise TransformError(msg)


def _decimal(_: _NoParams) -> TransformFn:
    return lambda value, _ctx: None if value is None else _exact_decimal(value, "decimal")


def _integer(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        number = _exact_decimal(value, "integer")
        if number != number.to_integral_value():
            msg = f"integer: {value!r} has a fraction"
            raise TransformError(msg)
        return int(number)

    return run


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _boolean(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        msg = f"boolean: {value!r} is not true or false"
        raise TransformError(msg)

    return run


# -- time ---------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        raise ValueError(msg) from None


class _DatetimeParams(_Params):
    timezone: str = "UTC"
    format: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value


def _parse_iso(text: str) -> datetime:
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    return datetime.fromisoformat(cleaned)


def _datetime(params: _DatetimeParams) -> TransformFn:
    zone = _zone(params.timezone)

    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = (
                    datetime.strptime(value.strip(), params.format)  # noqa: DTZ007 - zone below
                    if params.format
                    else _parse_iso(value)
                )
            except ValueError:
                expected = params.format or "an ISO 8601 date-time"
                msg = f"datetime: {value!r} is not {expected}"
                raise TransformError(msg) from None
        else:
            msg = f"datetime expects text, got {type(value).__name__} (unix_seconds reads numbers)"
            raise TransformError(msg)
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)

    return run


def _unix_seconds(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"unix_seconds expects whole seconds, got {type(value).__name__} {value!r}"
            raise TransformError(msg)
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            msg = f"unix_seconds: {value} is out of range"
            raise TransformError(msg) from None

    return run


class _DateParams(_Params):
    format: str | None = None


def _date(params: _DateParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value, UTC).date()
            except (OverflowError, OSError, ValueError):
                msg = f"date: {value} is out of range for unix seconds"
                raise TransformError(msg) from None
        text = _text(value, "date").strip()
        try:
            if params.format:
                return datetime.strptime(text, params.format).date()  # noqa: DTZ007 - a day
            return date.fromisoformat(text)
        except ValueError:
            msg = f"date: {value!r} is not {params.format or 'an ISO date (YYYY-MM-DD)'}"
            raise TransformError(msg) from None

    return run


# -- money --------------------------------------------------------------------------------


class _MoneyParams(_Params):
    currency_from: str | None = None
    currency: str | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        return None if value is None else normalize_currency_code(value)

    @field_validator("currency_from")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return _check_path(value)

    @model_validator(mode="after")
    def _some_currency(self) -> _MoneyParams:
        if self.currency_from is None and self.currency is None:
            msg = "give currency_from (a path to the currency field) or currency (a code)"
            raise ValueError(msg)
        return self

    def currency_of(self, ctx: TransformContext) -> str:
        code = ctx.read(self.currency_from) if self.currency_from else None
        if code is None or (isinstance(code, str) and not code.strip()):
            code = self.currency
        if code is None:
            msg = f"no currency: {self.currency_from} is empty and no default currency is set"
            raise TransformError(msg)
        try:
            return get_currency(_text(code, "currency")).code
        except MoneyError as exc:
            raise TransformError(str(exc)) from None


class _MoneyMinorParams(_MoneyParams):
    exponents: dict[str, int] = Field(default_factory=dict)

    @field_validator("exponents")
    @classmethod
    def _codes(cls, value: dict[str, int]) -> dict[str, int]:
        return {normalize_currency_code(code): exponent for code, exponent in value.items()}


def _money_minor(params: _MoneyMinorParams) -> TransformFn:
    def run(value: Any, ctx: TransformContext) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"money_minor expects an integer amount, got {type(value).__name__} {value!r}"
            raise TransformError(msg)
        currency = params.currency_of(ctx)
        exponent = params.exponents.get(currency, get_currency(currency).exponent)
        try:
            return Money.from_scaled(value, exponent, currency)
        except (MoneyError, ValueError) as exc:
            raise TransformError(f"money_minor: {exc}") from None

    return run


class _MoneyDecimalParams(_MoneyParams):
    rounding: Rounding | None = None
    inexact: Literal["error", "null"] = "error"

    @field_validator("rounding", mode="before")
    @classmethod
    def _rounding_name(cls, value: Any) -> Any:
        # Accept the mode's name (half_up) as well as decimal's constant (ROUND_HALF_UP).
        if isinstance(value, str) and value.upper() in Rounding.__members__:
            return Rounding[value.upper()]
        return value


def _money_decimal(params: _MoneyDecimalParams) -> TransformFn:
    def run(value: Any, ctx: TransformContext) -> Any:
        if value is None:
            return None
        amount = _exact_decimal(value, "money_decimal")
        currency = params.currency_of(ctx)
        try:
            return Money.from_decimal(amount, currency, rounding=params.rounding)
        except RoundingRequiredError as exc:
            if params.inexact == "null":
                return None  # e.g. a unit price with more decimals than the currency has
            raise TransformError(f"money_decimal: {exc}") from None
        except (MoneyError, ValueError) as exc:
            raise TransformError(f"money_decimal: {exc}") from None

    return run


def _currency(_: _NoParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        try:
            return normalize_currency_code(_text(value, "currency"))
        except MoneyError as exc:
            raise TransformError(str(exc)) from None

    return run


# -- references and places ----------------------------------------------------------------


class _RefParams(_Params):
    object: str | None = Field(default=None, min_length=1)
    object_by_prefix: dict[str, str] = Field(default_factory=dict)
    system: str | None = None

    @model_validator(mode="after")
    def _some_object(self) -> _RefParams:
        if self.object is None and not self.object_by_prefix:
            msg = "give object (the referenced object type) or object_by_prefix"
            raise ValueError(msg)
        return self


def _ref(params: _RefParams) -> TransformFn:
    def run(value: Any, ctx: TransformContext) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping):
            # Stripe expands a related object in place; QuickBooks refs are {"value", "name"}.
            value = value.get("id", value.get("value"))
            if value is None:
                return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        ref_id = _text(value, "ref").strip()
        if not ref_id:
            return None
        object_name = next(
            (name for prefix, name in params.object_by_prefix.items() if ref_id.startswith(prefix)),
            params.object,
        )
        if object_name is None:
            msg = f"ref: {ref_id!r} has none of the prefixes {', '.join(params.object_by_prefix)}"
            raise TransformError(msg)
        return {"system": params.system or ctx.system, "object": object_name, "id": ref_id}

    return run


_COUNTRY_ALIASES = {
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "deutschland": "DE",
    "south korea": "KR",
    "korea": "KR",
    "russia": "RU",
    "holland": "NL",
    # Names in the country's own language, as CRM and ledger users type them.
    "the netherlands": "NL",
    "nederland": "NL",
    "españa": "ES",
    "espana": "ES",
    "italia": "IT",
    "österreich": "AT",
    "osterreich": "AT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "sverige": "SE",
    "norge": "NO",
    "danmark": "DK",
    "suomi": "FI",
    "polska": "PL",
    "belgique": "BE",
    "belgië": "BE",
    "belgie": "BE",
    "brasil": "BR",
    "nippon": "JP",
}


class _CountryParams(_Params):
    on_unknown: Literal["error", "null"] = "error"


def _country(params: _CountryParams) -> TransformFn:
    def run(value: Any, _ctx: TransformContext) -> Any:
        if value is None:
            return None
        text = " ".join(_text(value, "country").split())
        if not text:
            return None
        code = _COUNTRY_ALIASES.get(text.casefold())
        if code is None:
            try:
                code = pycountry.countries.lookup(text).alpha_2
            except LookupError:
                if params.on_unknown == "null":
                    return None
                msg = f"country: {value!r} is not a country name or ISO 3166 code"
                raise TransformError(msg) from None
        return code

    return run


# -- registry -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransformDef:
    """A transform's name, the model of its parameters, its factory and its one-line help."""

    name: str
    params: type[_Params]
    factory: Callable[[Any], TransformFn]
    help: str


def _def(
    name: str, params: type[_Params], factory: Callable[[Any], TransformFn], help_text: str
) -> tuple[str, TransformDef]:
    return name, TransformDef(name, params, factory, help_text)


TRANSFORMS: Mapping[str, TransformDef] = dict(
    [
        _def("strip", _NoParams, _strip, "remove leading and trailing whitespace"),
        _def("lowercase", _NoParams, _lowercase, "lower-case text"),
        _def("uppercase", _NoParams, _uppercase, "upper-case text"),
        _def("collapse_spaces", _NoParams, _collapse_spaces, "trim and collapse inner spaces"),
        _def("null_if_blank", _NoParams, _null_if_blank, "empty or blank text becomes null"),
        _def("string", _NoParams, _string, "numbers and booleans become text"),
        _def("concat", _ConcatParams, _concat, "join a list of values (from: [a, b])"),
        _def("split", _SplitParams, _split, "split text; index picks one piece"),
        _def("first", _NoParams, _first, "first non-null element of a list"),
        _def("default", _DefaultParams, _default, "value to use when the source is null"),
        _def("lookup", _LookupParams, _lookup, "translate through a table; unknown -> default"),
        _def("enum", _EnumParams, _enum, "translate through a closed map; unknown is an error"),
        _def("decimal", _NoParams, _decimal, "exact decimal number"),
        _def("integer", _NoParams, _integer, "whole number"),
        _def("boolean", _NoParams, _boolean, "true/false from booleans, 0/1, yes/no"),
        _def("datetime", _DatetimeParams, _datetime, "ISO or formatted date-time -> UTC"),
        _def("unix_seconds", _NoParams, _unix_seconds, "Unix timestamp -> UTC date-time"),
        _def("date", _DateParams, _date, "calendar day from ISO text or a Unix timestamp"),
        _def("money_minor", _MoneyMinorParams, _money_minor, "integer minor units -> Money"),
        _def("money_decimal", _MoneyDecimalParams, _money_decimal, "decimal amount -> Money"),
        _def("currency", _NoParams, _currency, "ISO 4217 code, upper case"),
        _def("ref", _RefParams, _ref, "an id -> a reference to a record of this system"),
        _def("country", _CountryParams, _country, "country name or code -> ISO 3166 alpha-2"),
    ]
)
"""Every transform a mapping file may name."""


def build_transform(name: str, params: Any) -> TransformFn:
    """Return the transform ``name`` with already validated ``params``.

    Args:
        name: a key of :data:`TRANSFORMS`.
        params: an instance of that transform's parameter model.

    Returns:
        The callable ``(value, context) -> value``.

    Raises:
        KeyError: no transform has this name.
    """
    return TRANSFORMS[name].factory(params)
