"""Every transform a mapping file can name, and the paths that read source values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledgerlink.domain import Money
from ledgerlink.mapping.schema import TransformSpecError, parse_transform
from ledgerlink.mapping.transforms import (
    TRANSFORMS,
    PathSyntaxError,
    TransformContext,
    TransformError,
    build_transform,
    parse_path,
    read_path,
)

RECORD: dict[str, Any] = {
    "currency": "eur",
    "CurrencyRef": {"value": "JPY"},
    "lines": {"data": [{"amount": 5, "currency": "usd"}]},
}


def run(spec: Any, value: Any, record: dict[str, Any] | None = None, element: Any = None) -> Any:
    step = parse_transform(spec)
    context = TransformContext(
        "stripe", record if record is not None else RECORD, element, {"colors": {"r": "red"}}
    )
    return build_transform(step.name, step.params)(value, context)


def test_parse_path_splits_keys_and_indexes() -> None:
    """A source path splits into keys and list indexes."""
    assert parse_path("lines.data[0].amount") == ("lines", "data", 0, "amount")
    assert parse_path("Line[2][1]") == ("Line", 2, 1)


@pytest.mark.parametrize("path", ["", "a..b", "a.[0]", " a", "a[x]"])
def test_parse_path_refuses_malformed_paths(path: str) -> None:
    """A malformed source path is refused with a reason."""
    with pytest.raises(PathSyntaxError):
        parse_path(path)


def test_read_path_returns_none_for_any_missing_step() -> None:
    """Reading a path that is absent, out of range or through a scalar gives None."""
    data = {"a": {"b": [1, {"c": "x"}]}}
    assert read_path(data, parse_path("a.b[1].c")) == "x"
    assert read_path(data, parse_path("a.b[5].c")) is None
    assert read_path(data, parse_path("a.z")) is None
    assert read_path(data, parse_path("a.b[0].c")) is None


def test_context_reads_root_with_dollar_prefix_inside_each() -> None:
    """Inside each, `$.` paths read the whole record and others read the element."""
    context = TransformContext("stripe", RECORD, {"currency": "usd"})
    assert context.read("currency") == "usd"
    assert context.read("$.currency") == "eur"


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("strip", "  Acme  ", "Acme"),
        ("lowercase", "BILLING@ACME.COM", "billing@acme.com"),
        ("uppercase", "eur", "EUR"),
        ("collapse_spaces", "  ACME   Corp ", "ACME Corp"),
        ("null_if_blank", "   ", None),
        ("null_if_blank", "x", "x"),
        ("string", 1042, "1042"),
        ("string", True, "true"),
        ({"concat": {"separator": " "}}, ["Ada", None, "Lovelace"], "Ada Lovelace"),
        ({"concat": {"separator": ", "}}, [None, " "], None),
        ({"split": {"separator": "\n", "index": 1}}, "1 Main St\nSuite 5", "Suite 5"),
        ({"split": {"separator": "\n", "index": 1}}, "1 Main St", None),
        ({"split": {}}, "a  b c", ["a", "b", "c"]),
        ("first", [None, "lookup_key", "id"], "lookup_key"),
        ({"default": "USD"}, None, "USD"),
        ({"default": "USD"}, "EUR", "EUR"),
        ({"lookup": {"table": {"A": 1}, "default": 0}}, "B", 0),
        ({"lookup": {"table": {"A": 1}, "keep_unknown": True}}, "B", "B"),
        ({"lookup": {"table": "colors"}}, "r", "red"),
        ({"lookup": {"table": {"0": "paid", "0.0": "paid"}, "default": "open"}}, 0.0, "paid"),
        ({"lookup": {"table": {"0": "paid"}, "default": "open"}}, 12.5, "open"),
        ({"enum": {"map": {"Closed Won": "won"}, "ignore_case": True}}, "closed won", "won"),
        ({"enum": {"map": {"a": "x"}, "default": "other"}}, "b", "other"),
        ("decimal", "1,250.50", Decimal("1250.50")),
        ("decimal", 0.1, Decimal("0.1")),
        ("integer", "42", 42),
        ("integer", 3.0, 3),
        ("boolean", "Yes", True),
        ("boolean", 0, False),
        ("currency", "eur", "EUR"),
        ("country", "Germany", "DE"),
        ("country", "USA", "US"),
        ("country", "gbr", "GB"),
        ({"country": {"on_unknown": "null"}}, "Atlantis", None),
    ],
)
def test_value_transforms(spec: Any, value: Any, expected: Any) -> None:
    """Each text, table, number and place transform turns its input into the expected value."""
    assert run(spec, value) == expected


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"default"}))
def test_null_passes_through_every_transform_but_default(name: str) -> None:
    """A missing source value stays missing through every transform except default."""
    examples: dict[str, Any] = {
        "concat": {"concat": {}},
        "split": {"split": {}},
        "lookup": {"lookup": {"table": {"a": "b"}, "default": "x"}},
        "enum": {"enum": {"map": {"a": "b"}}},
        "datetime": {"datetime": {}},
        "date": {"date": {}},
        "money_minor": {"money_minor": {"currency": "EUR"}},
        "money_decimal": {"money_decimal": {"currency": "EUR"}},
        "ref": {"ref": {"object": "customer"}},
        "country": {"country": {}},
    }
    assert run(examples.get(name, name), None) is None


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ("strip", 5, "expects text"),
        ({"enum": {"map": {"draft": "draft"}}}, "weird", "not in the enum map"),
        ("decimal", "12,5", "not a decimal"),
        ("decimal", "NaN", "not a finite"),
        ("decimal", 0.1234567890123456, "significant digits"),
        ("integer", "1.5", "has a fraction"),
        ("boolean", "maybe", "not true or false"),
        ("unix_seconds", 1.5, "whole seconds"),
        ("unix_seconds", True, "whole seconds"),
        ({"datetime": {}}, "yesterday", "ISO 8601"),
        ({"datetime": {}}, 1700000000, "unix_seconds"),
        ({"date": {}}, "15/01/2024", "ISO date"),
        ("currency", "XYZ", "unknown currency"),
        ("country", "Atlantis", "not a country"),
        ({"ref": {"object_by_prefix": {"ch_": "charge"}}}, "zz_1", "prefixes"),
    ],
)
def test_value_transforms_refuse_bad_input(spec: Any, value: Any, message: str) -> None:
    """A transform given a value it cannot handle raises TransformError with the reason."""
    with pytest.raises(TransformError, match=message):
        run(spec, value)


def test_datetime_converts_offsets_to_utc() -> None:
    """ISO date-times with Z, +0000 or another offset become aware UTC datetimes."""
    assert run({"datetime": {}}, "2024-01-15T10:00:00Z") == datetime(2024, 1, 15, 10, tzinfo=UTC)
    assert run({"datetime": {}}, "2024-01-15T10:00:00.000+0000") == datetime(
        2024, 1, 15, 10, tzinfo=UTC
    )
    assert run({"datetime": {}}, "2015-07-24T10:33:39-07:00") == datetime(
        2015, 7, 24, 17, 33, 39, tzinfo=UTC
    )


def test_datetime_reads_naive_values_in_the_configured_zone() -> None:
    """A naive date-time is read in the mapping's timezone and converted to UTC."""
    result = run({"datetime": {"timezone": "Europe/Berlin"}}, "2024-07-01 12:00:00")
    assert result == datetime(2024, 7, 1, 10, tzinfo=UTC)
    formatted = run(
        {"datetime": {"format": "%d/%m/%Y %H:%M", "timezone": "UTC"}}, "15/01/2024 08:30"
    )
    assert formatted == datetime(2024, 1, 15, 8, 30, tzinfo=UTC)


def test_unix_seconds_and_date() -> None:
    """Unix seconds become UTC datetimes; dates come from ISO text or Unix seconds."""
    assert run("unix_seconds", 1_700_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert run("unix_seconds", "1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert run({"date": {}}, "2024-02-29") == date(2024, 2, 29)
    assert run({"date": {}}, 1_700_000_000) == date(2023, 11, 14)
    assert run({"date": {"format": "%d.%m.%Y"}}, "01.03.2024") == date(2024, 3, 1)


def test_money_minor_reads_currency_from_another_field() -> None:
    """money_minor builds exact Money from integer minor units and the record's currency."""
    assert run({"money_minor": {"currency_from": "currency"}}, 123456) == Money(123456, "EUR")
    assert run({"money_minor": {"currency_from": "CurrencyRef.value"}}, 500) == Money(500, "JPY")


def test_money_minor_falls_back_to_the_fixed_currency() -> None:
    """When the currency field is empty, money_minor uses the currency given in the mapping."""
    assert run({"money_minor": {"currency_from": "missing", "currency": "gbp"}}, 7) == Money(
        7, "GBP"
    )


def test_money_minor_honours_vendor_exponents() -> None:
    """A vendor scale different from ISO (Stripe's two-decimal ISK) is rescaled exactly."""
    spec = {"money_minor": {"currency_from": "currency", "exponents": {"isk": 2}}}
    assert run(spec, 50000, {"currency": "isk"}) == Money(500, "ISK")
    with pytest.raises(TransformError, match="minor unit"):
        run(spec, 50050, {"currency": "isk"})


def test_money_minor_inside_each_reads_the_record_currency() -> None:
    """Inside each, `$.currency` takes the currency from the record, not the element."""
    spec = {"money_minor": {"currency_from": "$.currency"}}
    assert run(spec, 5, element={"currency": "usd"}) == Money(5, "EUR")


@pytest.mark.parametrize("value", [12.5, "12.5", True, None])
def test_money_minor_refuses_non_integers(value: Any) -> None:
    """money_minor refuses fractions and booleans (and passes null through)."""
    spec = {"money_minor": {"currency": "EUR"}}
    if value is None:
        assert run(spec, value) is None
        return
    with pytest.raises(TransformError, match="integer amount"):
        run(spec, value)


def test_money_decimal_is_exact() -> None:
    """money_decimal turns decimal text or a JSON number into exact minor units."""
    spec = {"money_decimal": {"currency_from": "currency"}}
    assert run(spec, "1234.56") == Money(123456, "EUR")
    assert run(spec, 0.1) == Money(10, "EUR")
    assert run(spec, 1999.99) == Money(199999, "EUR")
    assert run({"money_decimal": {"currency": "KWD"}}, "1.005") == Money(1005, "KWD")
    assert run({"money_decimal": {"currency": "JPY"}}, 1500) == Money(1500, "JPY")


def test_money_decimal_requires_rounding_to_be_named() -> None:
    """A decimal finer than the currency's minor unit fails unless a rounding mode is named."""
    with pytest.raises(TransformError, match="Rounding"):
        run({"money_decimal": {"currency": "EUR"}}, "0.125")
    rounded = run({"money_decimal": {"currency": "EUR", "rounding": "ROUND_HALF_UP"}}, "0.125")
    assert rounded == Money(13, "EUR")
    assert run({"money_decimal": {"currency": "EUR", "rounding": "half_even"}}, "0.125") == Money(
        12, "EUR"
    )
    assert run({"money_decimal": {"currency": "EUR", "inexact": "null"}}, "0.125") is None


def test_money_without_any_currency_fails() -> None:
    """An amount whose currency field is empty and has no fallback is refused."""
    with pytest.raises(TransformError, match="no currency"):
        run({"money_decimal": {"currency_from": "missing"}}, "1.00")


def test_ref_builds_a_source_reference() -> None:
    """ref turns an id, an expanded object or a QuickBooks ref into a SourceRef mapping."""
    assert run({"ref": {"object": "customer"}}, "cus_1") == {
        "system": "stripe",
        "object": "customer",
        "id": "cus_1",
    }
    assert (
        run({"ref": {"object": "customer"}}, {"id": "cus_2", "object": "customer"})["id"] == "cus_2"
    )
    qbo = run({"ref": {"object": "Customer", "system": "quickbooks"}}, {"value": "58", "name": "X"})
    assert qbo == {"system": "quickbooks", "object": "Customer", "id": "58"}
    by_prefix = {"ref": {"object_by_prefix": {"ch_": "charge", "po_": "payout"}}}
    assert run(by_prefix, "po_123")["object"] == "payout"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("frobnicate", "unknown transform 'frobnicate'"),
        ({"a": 1, "b": 2}, "one-key mapping"),
        ("lookup", "needs parameters"),
        ({"money_minor": {}}, "currency_from"),
        ({"money_minor": {"currency": "XYZ"}}, "unknown currency"),
        ({"datetime": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"split": {"separator": ""}}, "must not be empty"),
        ({"strip": {"x": 1}}, "Extra inputs"),
        ({"ref": {}}, "give object"),
        ({"money_decimal": {"currency_from": "a..b"}}, "bad path"),
    ],
)
def test_parse_transform_refuses_bad_specs(raw: Any, message: str) -> None:
    """A bad transform entry is refused with a reason naming the problem."""
    with pytest.raises(TransformSpecError, match=message):
        parse_transform(raw)
