"""Tests that the accounts named in mappings/accounts.yaml are found or created once in QuickBooks."""

from __future__ import annotations

from typing import Any

from ledgerlink_quickbooks.accounts import accounts_map, ensure_accounts
from ledgerlink_quickbooks.qbql import quote, select

from ledgerlink.mapping import load_mappings


def count_accounts(connector: Any, name: str) -> int:
    answer = connector.query(select("Account", [f"Name = {quote(name)}"]))
    return len(answer.get("QueryResponse", {}).get("Account") or [])


def test_shipped_accounts_are_found_or_created_exactly_once(connector: Any) -> None:
    """Every role of the shipped accounts.yaml gets an id; running again creates nothing new."""
    roles = load_mappings(None).accounts.accounts
    first = ensure_accounts(connector, roles)
    assert set(first) == set(roles)
    assert count_accounts(connector, "Accounts Receivable (A/R)") == 1
    second = ensure_accounts(connector, roles)
    assert second == first
    for spec in roles.values():
        assert count_accounts(connector, spec.name) == 1, spec.name
    mapped = accounts_map(first)
    assert mapped.clearing == first["clearing"]
    assert mapped.fees_expense == first["fees"]
