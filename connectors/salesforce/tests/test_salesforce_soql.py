"""SOQL escaping on the client side round-trips through the sandbox's parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledgerlink_salesforce import soql
from ledgerlink_salesforce.sandbox.soql import SoqlError, parse_query

FIELDS = {"Id", "Name", "SystemModstamp", "IsDeleted", "Amount"}


def fields_of(name: str) -> set[str] | None:
    return FIELDS if name == "Account" else None


@given(st.text())
def test_any_escaped_value_parses_back_to_itself(value: str) -> None:
    """Any text, once quoted, is read by a SOQL parser as exactly that one literal."""
    query = parse_query(f"SELECT Id FROM Account WHERE Name = {soql.quote(value)}", fields_of)
    assert query.conjuncts[0].value == value
    assert query.opaque_conditions == 0


def test_injection_attempt_stays_inside_the_literal() -> None:
    """A name crafted to close the quote and add OR stays one comparison."""
    hostile = "x' OR Name != '"
    query = parse_query(f"SELECT Id FROM Account WHERE Name = {soql.quote(hostile)}", fields_of)
    assert query.where is not None
    assert query.where({"Name": hostile})
    assert not query.where({"Name": "Acme"})


def test_quote_escapes_backslash_quotes_and_newlines() -> None:
    """Backslashes, quotes and line breaks get Salesforce's escape sequences."""
    assert soql.quote("O'Brien \\ Sons\n") == "'O\\'Brien \\\\ Sons\\n'"


def test_like_escaping_neutralises_wildcards() -> None:
    """A LIKE value escapes % and _ so they match literally."""
    pattern = soql.escape_like("50%_off")
    query = parse_query(f"SELECT Id FROM Account WHERE Name LIKE '{pattern}'", fields_of)
    assert query.where is not None
    assert query.where({"Name": "50%_off"})
    assert not query.where({"Name": "50 percent off"})


def test_datetime_literal_is_whole_seconds_utc() -> None:
    """Date-time literals are UTC with a Z and second precision."""
    moment = datetime(2025, 3, 1, 12, 30, 5, 999, tzinfo=UTC)
    assert soql.format_datetime(moment) == "2025-03-01T12:30:05Z"
    with pytest.raises(ValueError, match="aware"):
        soql.format_datetime(datetime(2025, 3, 1))


def test_unknown_field_is_invalid_field() -> None:
    """Selecting a field the object lacks is INVALID_FIELD, as Salesforce answers."""
    with pytest.raises(SoqlError) as caught:
        parse_query("SELECT Bogus__c FROM Account", fields_of)
    assert caught.value.code == "INVALID_FIELD"


def test_or_makes_conditions_opaque() -> None:
    """Comparisons under OR are not treated as top-level filters."""
    query = parse_query(
        "SELECT Id FROM Account WHERE SystemModstamp >= 2025-01-01T00:00:00Z OR Name = 'a'",
        fields_of,
    )
    assert query.conjuncts == []
    assert query.opaque_conditions == 1


def test_select_refuses_non_identifiers() -> None:
    """Configured field names that are not identifiers are refused before any call."""
    with pytest.raises(ValueError, match="identifier"):
        soql.select("Account", ["Id", "Name FROM User --"])
