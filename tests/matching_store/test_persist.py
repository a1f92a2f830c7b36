"""Matching in the store: customers, links, review queue, decisions and stable ids."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet
from ledgerlink.matching import DecisionKind, PartyRef
from ledgerlink.matching.persist import (
    DecisionConflictError,
    Matcher,
    UnknownDecisionError,
    UnknownReferenceError,
    load_links,
    record_decision,
    revoke_decision,
    run_matching,
)
from ledgerlink.store import AuditLog, Customer, CustomerLink, MatchDecision, Quarantine, Store

from .conftest import (
    NOW,
    QB_ACME,
    QB_ZEPHYR,
    SF_ACME,
    SF_ZEPHYR,
    STRIPE_ACME,
    STRIPE_UMBRA,
    land_parties,
    link_created,
    quickbooks_customer,
    salesforce_account,
    stripe_customer,
)


def _customers(engine: Engine) -> dict[str, str]:
    return {str(link.ref): link.customer_id for link in load_links(engine)}


def _count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model.__table__)).scalar_one())


def _decide(engine: Engine, kind: DecisionKind, a: str, b: str, minutes: int = 1) -> int:
    return record_decision(
        engine,
        kind,
        PartyRef.parse(a),
        PartyRef.parse(b),
        actor="ops@example.com",
        reason="checked with the account owner",
        now=NOW + timedelta(minutes=minutes),
    )


def test_records_of_one_company_in_several_systems_become_one_customer(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """Acme in three systems and Zephyr in two each become one customer; Umbra stays alone."""
    land_parties(store)
    summary = run_matching(engine, mappings, now=NOW)
    owner = _customers(engine)
    assert owner[SF_ACME] == owner[STRIPE_ACME] == owner[QB_ACME]
    assert owner[SF_ZEPHYR] == owner[QB_ZEPHYR]
    assert len({owner[SF_ACME], owner[SF_ZEPHYR], owner[STRIPE_UMBRA]}) == 3
    assert (summary.parties, summary.customers, summary.multi_record_customers) == (6, 3, 2)
    assert summary.auto_links == 3
    assert summary.review_queue == 0


def test_golden_record_follows_the_source_of_truth_with_lineage(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """The golden name comes from Salesforce and the e-mail from Stripe, each with its source."""
    land_parties(store)
    run_matching(engine, mappings, now=NOW)
    with engine.connect() as conn:
        row = conn.execute(
            select(Customer.__table__).where(  # type: ignore[attr-defined]
                Customer.__table__.c.id == _customers(engine)[SF_ACME]  # type: ignore[attr-defined]
            )
        ).one()
    assert row.display_name == "Acme Analytics Inc"
    assert row.fields["email"] == "billing@acme-analytics.com"
    assert row.lineage["name"] == SF_ACME
    assert row.lineage["email"] == STRIPE_ACME
    assert row.fields["country"] == "US"


def test_links_carry_method_score_and_evidence(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """The Stripe record is linked by its cross-reference, the QuickBooks one by its score."""
    land_parties(store)
    run_matching(engine, mappings, now=NOW)
    links = {str(link.ref): link for link in load_links(engine)}
    assert links[STRIPE_ACME].method == "xref"
    assert links[QB_ACME].method == "probabilistic"
    assert links[QB_ACME].score >= 0.95
    (reason,) = links[QB_ACME].reasons
    assert reason["kind"] == "link"
    assert {e["field"] for e in reason["evidence"]} >= {"name", "phone", "domain"}
    assert links[STRIPE_UMBRA].reasons == [{"kind": "alone"}]


def test_second_run_keeps_customer_ids_and_writes_nothing(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """Running again on unchanged records keeps every customer id and writes no row."""
    land_parties(store)
    run_matching(engine, mappings, now=NOW)
    before = _customers(engine)
    summary = run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    assert _customers(engine) == before
    assert summary.rows_written == 0
    assert summary.model == "stored"


def test_split_separates_records_and_survives_later_runs(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A person's split keeps two records apart in this run and the next ones."""
    land_parties(store)
    run_matching(engine, mappings, now=NOW)
    acme = _customers(engine)[SF_ACME]
    _decide(engine, DecisionKind.SPLIT, SF_ACME, QB_ACME)
    for hours in (1, 2):
        run_matching(engine, mappings, now=NOW + timedelta(hours=hours))
        owner = _customers(engine)
        assert owner[SF_ACME] != owner[QB_ACME]
        assert owner[SF_ACME] == owner[STRIPE_ACME] == acme


def test_never_link_keeps_two_records_apart(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """never-link keeps two records with matching names, phones and addresses apart."""
    land_parties(store)
    _decide(engine, DecisionKind.NEVER_LINK, SF_ZEPHYR, QB_ZEPHYR)
    run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    owner = _customers(engine)
    assert owner[SF_ZEPHYR] != owner[QB_ZEPHYR]


def test_revoked_decision_no_longer_applies(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """After revoking a never-link, the next run links the pair on its evidence again."""
    land_parties(store)
    decision = _decide(engine, DecisionKind.NEVER_LINK, SF_ZEPHYR, QB_ZEPHYR)
    run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    revoke_decision(engine, decision, actor="lead@example.com", now=NOW + timedelta(hours=2))
    run_matching(engine, mappings, now=NOW + timedelta(hours=3))
    owner = _customers(engine)
    assert owner[SF_ZEPHYR] == owner[QB_ZEPHYR]
    with pytest.raises(UnknownDecisionError, match="already revoked"):
        revoke_decision(engine, decision, actor="x", now=NOW + timedelta(hours=4))


def test_human_link_joins_records_the_scores_keep_apart(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A person's link puts two unrelated-looking records in one customer, by method manual."""
    land_parties(store)
    _decide(engine, DecisionKind.LINK, SF_ZEPHYR, STRIPE_UMBRA)
    summary = run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    links = {str(link.ref): link for link in load_links(engine)}
    assert links[SF_ZEPHYR].customer_id == links[STRIPE_UMBRA].customer_id
    assert links[STRIPE_UMBRA].method == "manual"
    assert links[STRIPE_UMBRA].reasons[0]["decided_by"] == "ops@example.com"
    assert summary.human_links == 1


def test_contradicting_decision_is_refused_and_changes_nothing(
    engine: Engine, store: Store
) -> None:
    """never-link between two records that links already join is refused, nothing recorded."""
    land_parties(store)
    _decide(engine, DecisionKind.LINK, SF_ACME, QB_ACME, minutes=1)
    _decide(engine, DecisionKind.LINK, QB_ACME, STRIPE_ACME, minutes=2)
    decisions, audits = _count(engine, MatchDecision), _count(engine, AuditLog)
    with pytest.raises(DecisionConflictError, match="kept apart by one decision"):
        _decide(engine, DecisionKind.NEVER_LINK, SF_ACME, STRIPE_ACME, minutes=3)
    assert (_count(engine, MatchDecision), _count(engine, AuditLog)) == (decisions, audits)


def test_decisions_are_audited_with_actor_and_reason(engine: Engine, store: Store) -> None:
    """Each decision and revocation writes an audit row naming who, what and why."""
    land_parties(store)
    decision = _decide(engine, DecisionKind.SPLIT, SF_ACME, QB_ACME)
    revoke_decision(engine, decision, actor="lead@example.com", now=NOW + timedelta(hours=1))
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                select(AuditLog.__table__).order_by(AuditLog.__table__.c.id)  # type: ignore[attr-defined]
            )
        )
    assert [(r.action, r.actor) for r in rows] == [
        ("match.decision.split", "ops@example.com"),
        ("match.decision.revoke", "lead@example.com"),
    ]
    assert rows[0].details["reason"] == "checked with the account owner"


def test_decision_about_an_unknown_record_is_refused(engine: Engine, store: Store) -> None:
    """A decision naming a record that was never landed is refused."""
    land_parties(store)
    with pytest.raises(UnknownReferenceError, match="stripe:customers:cus_nope"):
        _decide(engine, DecisionKind.LINK, SF_ACME, "stripe:customers:cus_nope")
    assert _count(engine, MatchDecision) == 0


def test_same_decision_twice_is_recorded_once(engine: Engine, store: Store) -> None:
    """Repeating a decision already in force returns its id instead of adding a row."""
    land_parties(store)
    first = _decide(engine, DecisionKind.SPLIT, SF_ACME, QB_ACME)
    assert _decide(engine, DecisionKind.SPLIT, QB_ACME, SF_ACME, minutes=5) == first
    assert _count(engine, MatchDecision) == 1


def test_matcher_matches_only_changed_records_incrementally(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A second run of one matcher re-matches only the new record, which joins its company."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    acme = _customers(engine)[SF_ACME]
    store.land(
        "quickbooks",
        [
            quickbooks_customer(
                "9",
                "ACME ANALYTICS INC.",
                PrimaryEmailAddr={"Address": "billing@acme-analytics.com"},
                PrimaryPhone={"FreeFormNumber": "415.555.0100"},
                BillAddr={"Line1": "100 Market St", "City": "San Francisco", "PostalCode": "94105"},
            )
        ],
        now=NOW + timedelta(minutes=30),
    )
    summary = matcher.run(now=NOW + timedelta(hours=1))
    assert (summary.mode, summary.changed, summary.parties) == ("incremental", 1, 7)
    assert _customers(engine)["quickbooks:Customer:9"] == acme


def test_a_kept_matcher_resolves_a_short_salesforce_id_to_an_account_of_an_earlier_run(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A Stripe customer landing later names its Account by the 15-character Id: the kept
    matcher knows the Account's landed (18-character) form from its earlier run, and the
    cross-reference links the two."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    zephyr = _customers(engine)[SF_ZEPHYR]
    short = SF_ZEPHYR.rsplit(":", 1)[1][:15]
    later = stripe_customer("cus_later", "Zephyr Tools", metadata={"salesforce_account_id": short})
    store.land("stripe", [later], now=NOW + timedelta(minutes=30))
    summary = matcher.run(now=NOW + timedelta(hours=1))
    assert (summary.mode, summary.changed) == ("incremental", 1)
    link = next(
        link for link in load_links(engine) if str(link.ref) == "stripe:customers:cus_later"
    )
    assert (link.customer_id, link.status, link.method) == (zephyr, "linked", "xref")


def test_matcher_leaves_an_unchanged_quarantined_record_until_it_changes(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A kept matcher does not map (and quarantine) again every run a record that failed to
    map with its mappings: its quarantine row stays as it was until the record changes, and
    the corrected record then maps, joins matching and resolves the row."""
    land_parties(store)
    store.land("stripe", [stripe_customer("cus_blank", "")], now=NOW - timedelta(minutes=5))
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    table = Quarantine.__table__  # type: ignore[attr-defined]

    def held() -> list[tuple[str, Any, Any]]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(table.c.external_id, table.c.updated_at, table.c.resolved_at)
            )
            return [tuple(row) for row in rows]

    first = held()
    assert [(ext, resolved) for ext, _, resolved in first] == [("cus_blank", None)]
    store.land(
        "salesforce",
        [salesforce_account("001Hs00000NEWC1AAA", "Newco Ltd")],
        now=NOW + timedelta(minutes=30),
    )
    summary = matcher.run(now=NOW + timedelta(hours=1))
    assert summary.changed == 1
    assert held() == first
    store.land(
        "stripe",
        [stripe_customer("cus_blank", "Blank Corp")],
        now=NOW + timedelta(hours=1, minutes=30),
    )
    fixed = matcher.run(now=NOW + timedelta(hours=2))
    assert fixed.changed == 1
    assert "stripe:customers:cus_blank" in _customers(engine)
    ((_, _, resolved),) = held()
    assert resolved is not None


def test_a_record_the_hub_created_stays_with_its_customer(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A QuickBooks customer the hub created for Acme (a ``created`` link, as the push writes
    it) lands under the name QuickBooks made it take (a suffix); it joins Acme's customer
    through the records that customer already has, in a kept matcher's run and a cold one."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    acme = _customers(engine)[SF_ACME]
    link_created(engine, "90", acme)
    store.land(
        "quickbooks",
        [quickbooks_customer("90", "Acme Analytics Inc (2)")],
        now=NOW + timedelta(minutes=30),
    )
    matcher.run(now=NOW + timedelta(hours=1))
    assert _customers(engine)["quickbooks:Customer:90"] == acme
    run_matching(engine, mappings, now=NOW + timedelta(hours=2))
    assert _customers(engine)["quickbooks:Customer:90"] == acme


def test_the_ids_the_hub_writes_do_not_send_an_account_to_review(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """Xonono's Account holds only its name; the hub created a QuickBooks customer for the
    company's JPY invoices (the company fields of its own, another name) and wrote the ids to
    the Account. Landing that write, the Account stays with its customer: the created record
    vouches for the link (it does not veto it), in a kept matcher's run and a cold one."""
    company = {
        "PrimaryEmailAddr": {"Address": "lenarossi69@gmx.de"},
        "PrimaryPhone": {"FreeFormNumber": "+12015555228"},
        "WebAddr": {"URI": "https://www.xononopartners6.com"},
        "BillAddr": {"Line1": "2 Beacon Street", "City": "Chicago", "PostalCode": "60630"},
    }
    account = "001Hs000000027BIAQ"
    store.land("salesforce", [salesforce_account(account, "Xonono Partners Corp")], now=NOW)
    store.land(
        "quickbooks", [quickbooks_customer("5204", "Xonono Partners Corp", **company)], now=NOW
    )
    store.land(
        "stripe",
        [
            stripe_customer(
                "cus_xonono",
                "Xonono Partners Corp",
                email="lenarossi69@gmx.de",
                metadata={"salesforce_account_id": account},
            )
        ],
        now=NOW,
    )
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    xonono = _customers(engine)[f"salesforce:Account:{account}"]
    assert _customers(engine)["quickbooks:Customer:5204"] == xonono
    link_created(engine, "11021", xonono)
    later = NOW + timedelta(minutes=30)
    jpy = quickbooks_customer("11021", "Xonono, Partners Corporation (JPY)", **company)
    store.land("quickbooks", [jpy], now=later)
    matcher.run(now=later)
    written = salesforce_account(
        account,
        "Xonono Partners Corp",
        QuickBooks_Customer_Id__c="5204",
        Stripe_Customer_Id__c="cus_xonono",
        LastModifiedDate="2026-02-01T11:00:00.000+0000",
        SystemModstamp="2026-02-01T11:00:00.000+0000",
    )
    store.land("salesforce", [written], now=later + timedelta(minutes=5))
    for run in (matcher.run, lambda now: run_matching(engine, mappings, now=now)):
        run(now=later + timedelta(hours=1))
        owner = _customers(engine)
        assert (
            owner[f"salesforce:Account:{account}"] == owner["quickbooks:Customer:11021"] == xonono
        )
        with engine.connect() as conn:
            statuses = set(conn.execute(select(CustomerLink.status)).scalars())
        assert statuses == {"linked"}


def test_a_kept_matcher_reads_again_only_the_customers_whose_links_changed(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """The cross-references of hub-created records are kept between runs: a run re-reads the
    links of a customer only when its links changed (one added, one moved away), and what it
    keeps equals what a new matcher reads."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    acme = _customers(engine)[SF_ACME]
    table = CustomerLink.__table__  # type: ignore[attr-defined]

    def link(external_id: str, method: str, at: datetime) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert(table).values(
                    system="quickbooks",
                    object="Customer",
                    external_id=external_id,
                    customer_id=acme,
                    score=1.0,
                    method=method,
                    status="linked",
                    reasons=[],
                    created_at=at,
                    updated_at=at,
                )
            )

    def reread() -> set[PartyRef]:
        with engine.connect() as conn:
            changed = matcher._load_created(conn)
            fresh = Matcher(engine, mappings)
            fresh._load_created(conn)
        assert matcher._created == fresh._created
        return changed

    created = PartyRef("quickbooks", "Customer", "90")
    link("90", "created", NOW + timedelta(minutes=1))
    assert reread() == {created}
    assert reread() == set()  # nothing moved: nothing read again
    link("91", "xref", NOW + timedelta(minutes=2))
    assert reread() == {created}
    assert PartyRef("quickbooks", "Customer", "91") in matcher._created[created]
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.external_id == "91"))
    assert reread() == {created}
    assert PartyRef("quickbooks", "Customer", "91") not in matcher._created[created]


def test_matcher_applies_new_decisions_incrementally(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A split made between two runs of one matcher is applied by its next run."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    _decide(engine, DecisionKind.SPLIT, SF_ZEPHYR, QB_ZEPHYR, minutes=10)
    summary = matcher.run(now=NOW + timedelta(hours=1))
    owner = _customers(engine)
    assert summary.mode == "incremental"
    assert owner[SF_ZEPHYR] != owner[QB_ZEPHYR]


def test_deleted_record_leaves_its_customer(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """A record deleted in its system loses its link; its customer keeps the others."""
    land_parties(store)
    run_matching(engine, mappings, now=NOW)
    acme = _customers(engine)[SF_ACME]
    store.land(
        "quickbooks",
        [Record("Customer", "7", {}, deleted=True)],
        now=NOW + timedelta(minutes=5),
    )
    run_matching(engine, mappings, now=NOW + timedelta(hours=1))
    owner = _customers(engine)
    assert QB_ACME not in owner
    assert owner[SF_ACME] == owner[STRIPE_ACME] == acme


def test_incremental_runs_leave_the_tables_as_a_full_run_would(
    engine: Engine, store: Store, mappings: MappingSet
) -> None:
    """After incremental runs (new record, decision, deletion), a full run has nothing to write."""
    land_parties(store)
    matcher = Matcher(engine, mappings)
    matcher.run(now=NOW)
    store.land(
        "quickbooks",
        [
            quickbooks_customer(
                "9", "Zephyr Tools GmbH", PrimaryPhone={"FreeFormNumber": "+49 30 9876543"}
            )
        ],
        now=NOW + timedelta(minutes=10),
    )
    _decide(engine, DecisionKind.NEVER_LINK, SF_ACME, QB_ACME, minutes=20)
    matcher.run(now=NOW + timedelta(hours=1))
    store.land(
        "stripe", [Record("customers", "cus_acme", {}, deleted=True)], now=NOW + timedelta(hours=2)
    )
    incremental = matcher.run(now=NOW + timedelta(hours=2))
    assert incremental.mode == "incremental"
    assert STRIPE_ACME not in _customers(engine)
    full = run_matching(engine, mappings, now=NOW + timedelta(hours=3))
    assert full.mode == "full"
    assert full.rows_written == 0


def test_other_decision_on_the_same_pair_must_be_revoked_first(
    engine: Engine, store: Store
) -> None:
    """A link on a pair that a split keeps apart is refused, naming the split to revoke."""
    land_parties(store)
    split = _decide(engine, DecisionKind.SPLIT, SF_ACME, QB_ACME)
    with pytest.raises(DecisionConflictError, match=f"decision {split} \\(split"):
        _decide(engine, DecisionKind.LINK, QB_ACME, SF_ACME, minutes=5)
    revoke_decision(engine, split, actor="lead", now=NOW + timedelta(minutes=6))
    assert _decide(engine, DecisionKind.LINK, QB_ACME, SF_ACME, minutes=7) != split
