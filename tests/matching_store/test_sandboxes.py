"""End to end: pull the three sandboxes, normalise, match, and act on the result."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from ledgerlink.mapping import MappingSet
from ledgerlink.matching import DecisionKind, PartyRef
from ledgerlink.matching.persist import load_links, record_decision, run_matching
from ledgerlink.store import Store

from .conftest import Sandboxes

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_companies_in_two_or_three_sandboxes_become_one_customer(
    engine: Engine, store: Store, mappings: MappingSet, sandboxes: Sandboxes
) -> None:
    """Northwind (three sandboxes, one by metadata) and Blue Fjord (two) are one customer each."""
    sandboxes.pull_parties(store)
    summary = run_matching(engine, mappings, now=NOW)
    owner = {str(link.ref): link for link in load_links(engine)}
    made = sandboxes.created
    northwind = {
        owner[made[k]].customer_id for k in ("northwind_sf", "northwind_stripe", "northwind_qb")
    }
    fjord = {owner[made[k]].customer_id for k in ("fjord_sf", "fjord_qb")}
    assert len(northwind) == 1
    assert len(fjord) == 1
    assert northwind != fjord
    assert owner[made["northwind_stripe"]].method == "xref"
    assert summary.parties == 65  # 20 seeded per sandbox, plus the five created
    systems = Counter(link.ref.system for link in owner.values())
    assert systems == {"salesforce": 22, "stripe": 21, "quickbooks": 22}


def test_sandbox_split_survives_the_next_pull_and_run(
    engine: Engine, store: Store, mappings: MappingSet, sandboxes: Sandboxes
) -> None:
    """A split of Northwind's QuickBooks record holds after another pull and run, ids stable."""
    sandboxes.pull_parties(store)
    run_matching(engine, mappings, now=NOW)
    made = sandboxes.created
    before = {str(link.ref): link.customer_id for link in load_links(engine)}
    record_decision(
        engine,
        DecisionKind.SPLIT,
        PartyRef.parse(made["northwind_sf"]),
        PartyRef.parse(made["northwind_qb"]),
        actor="ops",
        reason="QuickBooks record is the reseller",
        now=NOW + timedelta(minutes=1),
    )
    sandboxes.pull_parties(store)
    run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    after = {str(link.ref): link.customer_id for link in load_links(engine)}
    assert after[made["northwind_sf"]] != after[made["northwind_qb"]]
    assert after[made["northwind_sf"]] == after[made["northwind_stripe"]]
    unchanged = [r for r in before if r != made["northwind_qb"]]
    assert all(after[r] == before[r] for r in unchanged)
