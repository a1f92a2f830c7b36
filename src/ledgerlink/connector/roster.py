"""One roster of companies that every sandbox seeds its customers from, so that they overlap.

Without it each sandbox invents its own customers and matching across systems finds next to
nothing. A :class:`Roster` runs :func:`ledgerlink.matching.synthetic.generate_parties` (a few
hundred companies, each held by one, two or three systems, with the noise real data has:
legal-suffix variants, typos, country names versus codes, free-mail addresses, stale
Stripe-to-Salesforce cross-references) and hands each sandbox its system's rows as the vendor's
API returns them. A sandbox keeps its own ids for Stripe and QuickBooks; Salesforce Account ids
are given here, in the Salesforce format the Salesforce sandbox numbers its Accounts with
(record ``i`` is ``salesforce_account_id(i)``), because Stripe metadata must name them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["ROSTER_SYSTEMS", "Roster", "salesforce_account_id"]

ROSTER_SYSTEMS = ("salesforce", "stripe", "quickbooks")
"""The systems a roster has rows for (connector names)."""

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_account_id(index: int) -> str:
    """Return the 18-character Id of the Salesforce sandbox's Account number ``index``.

    Salesforce Ids are a 3-character key prefix (``001`` for Account), a 2-character pod code,
    a base-62 number and a 3-character case-safe checksum (one character per 5-character chunk:
    bit ``i`` set when character ``i`` is upper case, indexing ``A..Z0..5``).
    """
    digits = []
    n = index
    for _ in range(10):
        digits.append(_B62[n % 62])
        n //= 62
    short = "001Hs" + "".join(reversed(digits))
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, ch in enumerate(short[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << pos
        suffix += _CHECKSUM[bits]
    return short + suffix


@dataclass(frozen=True, slots=True)
class Roster:
    """A deterministic set of companies shared by the sandboxes of every system.

    Attributes:
        companies: how many companies to invent (about 2.4 customer records each in all).
        seed: random seed; the same seed gives the same rows in every sandbox.
    """

    companies: int
    seed: int = 7

    def rows(self, system: str) -> tuple[Mapping[str, Any], ...]:
        """Return ``system``'s customers as its API holds them, in a stable order.

        Salesforce rows are ``Account`` records whose ``Id`` is ``salesforce_account_id`` of
        their position; Stripe rows are ``customer`` objects whose
        ``metadata.salesforce_account_id`` (when present) names one of those Accounts (a few on
        purpose the wrong one); QuickBooks rows are ``Customer`` objects. The payloads are
        read-only: a sandbox copies what it keeps.

        Raises:
            ValueError: ``system`` is not one of :data:`ROSTER_SYSTEMS`.
        """
        if system not in ROSTER_SYSTEMS:
            msg = f"a roster has no rows for {system!r} (it has {', '.join(ROSTER_SYSTEMS)})"
            raise ValueError(msg)
        return _vendor_rows(self.companies, self.seed)[system]

    def truth(self) -> Mapping[tuple[str, str], str]:
        """Return (system, id as seeded) -> the company key it really is (for tests and scoring).

        Salesforce ids are the sandbox's Account ids; Stripe and QuickBooks ids are the
        generator's, which the sandboxes replace with their own in the same order.
        """
        return _truth(self.companies, self.seed)


@functools.cache
def _generated(companies: int, seed: int) -> tuple[Any, dict[str, str]]:
    """The generator's dataset and its Salesforce id -> sandbox Account id table (cached)."""
    from ledgerlink.matching.synthetic import generate_parties

    dataset = generate_parties(companies, seed=seed)
    accounts = [r.ref.id for r in dataset.records if r.ref.system == "salesforce"]
    return dataset, {old: salesforce_account_id(i) for i, old in enumerate(accounts)}


@functools.cache
def _vendor_rows(companies: int, seed: int) -> dict[str, tuple[Mapping[str, Any], ...]]:
    dataset, account_ids = _generated(companies, seed)
    rows: dict[str, list[Mapping[str, Any]]] = {system: [] for system in ROSTER_SYSTEMS}
    for row in dataset.vendor_rows():
        payload = dict(row.payload)
        if row.system == "salesforce":
            payload["Id"] = account_ids[row.id]
        elif row.system == "stripe":
            metadata = dict(payload.get("metadata") or {})
            if "salesforce_account_id" in metadata:
                metadata["salesforce_account_id"] = account_ids[metadata["salesforce_account_id"]]
            payload["metadata"] = metadata
        rows[row.system].append(MappingProxyType(payload))
    return {system: tuple(found) for system, found in rows.items()}


@functools.cache
def _truth(companies: int, seed: int) -> Mapping[tuple[str, str], str]:
    dataset, account_ids = _generated(companies, seed)
    return MappingProxyType(
        {(ref.system, account_ids.get(ref.id, ref.id)): key for ref, key in dataset.truth.items()}
    )
