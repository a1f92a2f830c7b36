"""Finding (or creating) the ledger accounts that ``mappings/accounts.yaml`` names, by role.

``accounts.yaml`` names each account as QuickBooks shows it (``Account.Name``, type, sub-type);
postings need the account's ``Id``. :func:`ensure_accounts` looks each one up by name with one
query per account (names are escaped: they are user input), creates the missing ones with a
deterministic ``requestid`` (so a retry or a second replica never creates a second account) and
returns the ids by role; :func:`accounts_map` turns them into the :class:`AccountsMap` the
posting builders take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from ledgerlink_quickbooks.connector import QuickBooksConnector
from ledgerlink_quickbooks.posting import AccountsMap
from ledgerlink_quickbooks.qbql import quote, select

__all__ = ["AccountLike", "accounts_map", "ensure_accounts"]


class AccountLike(Protocol):
    """What an account entry of ``accounts.yaml`` provides (``ledgerlink.mapping`` AccountSpec)."""

    @property
    def name(self) -> str:
        """``Account.Name``."""
        ...

    @property
    def type(self) -> str:
        """``Account.AccountType``."""
        ...

    @property
    def sub_type(self) -> str | None:
        """``Account.AccountSubType``, or None."""
        ...


def _requestid(role: str, name: str) -> str:
    digest = hashlib.sha256(f"{role}\x00{name}".encode()).hexdigest()[:32]
    return f"ll-acct-{digest}"


def ensure_accounts(
    connector: QuickBooksConnector, accounts: Mapping[str, AccountLike]
) -> dict[str, str]:
    """Return the QuickBooks ``Id`` of every account by role, creating the missing ones.

    Args:
        connector: a connected QuickBooks connector.
        accounts: role -> account, as ``accounts.yaml`` names them.

    Returns:
        role -> ``Account.Id``.

    Raises:
        ConnectorError: QuickBooks refused a query or a creation (for example an invalid type).
    """
    ids: dict[str, str] = {}
    for role, spec in accounts.items():
        answer = connector.query(
            select(
                "Account",
                [f"Name = {quote(spec.name)}", "Active IN (true, false)"],
                max_results=1,
            )
        )
        found = answer.get("QueryResponse", {}).get("Account") or []
        if found:
            ids[role] = str(found[0]["Id"])
            continue
        body: dict[str, Any] = {"Name": spec.name, "AccountType": spec.type}
        if spec.sub_type:
            body["AccountSubType"] = spec.sub_type
        created = connector.post_json("account", body, requestid=_requestid(role, spec.name))
        ids[role] = str(created["Account"]["Id"])
    return ids


def accounts_map(ids: Mapping[str, str]) -> AccountsMap:
    """Build the posting builders' :class:`AccountsMap` from role ids.

    Raises:
        KeyError: a role the postings need (clearing, bank, fees) is missing.
    """
    return AccountsMap(
        clearing=ids["clearing"],
        bank=ids["bank"],
        fees_expense=ids["fees"],
        discounts=ids.get("discounts"),
    )
