"""Tests of clustering: evidence order, bands, hard negatives, human decisions, incremental runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerlink.matching import (
    DecisionKind,
    HumanDecision,
    LinkMethod,
    MatchConfig,
    MatchModel,
    MatchState,
    PartyRecord,
    PartyRef,
    ReviewReason,
    find_decision_conflict,
    match_all,
    match_new,
)
from ledgerlink.matching.synthetic import Dataset, evaluate

from .conftest import PartyMaker, ref

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def groups(state: MatchState) -> set[frozenset[PartyRef]]:
    """The customers of a state as a set of member sets."""
    return {frozenset(c.members) for c in state.clusters.values()}


def together(state: MatchState, a: str, b: str) -> bool:
    """Whether two short references ended in the same customer."""
    return state.cluster_of[ref(a)] == state.cluster_of[ref(b)]


def decide(kind: DecisionKind, a: str, b: str, minutes: int = 0) -> HumanDecision:
    """A decision by the operator at a given minute."""
    return HumanDecision(
        kind,
        ref(a),
        ref(b),
        "ops@example.com",
        T0 + timedelta(minutes=minutes),
        "checked the contract",
    )


@pytest.fixture
def small(party: PartyMaker) -> list[PartyRecord]:
    """A hand-made world: Acme US in three systems, Acme DE in two, Nimbus in two, one loner."""
    return [
        party(
            "sf:1",
            name="Acme Inc",
            website="https://www.acme.com",
            phones="(415) 555-0100",
            country="US",
        ),
        party("st:1", name="ACME, Inc.", emails="ap+stripe@acme.com", country="US", xrefs=["sf:1"]),
        party(
            "qb:1", name="Acme", emails="jane@gmail.com", phones="+1 415 555 0100", country="USA"
        ),
        party("sf:2", name="Acme GmbH", website="acme.de", phones="030 1234567", country="Germany"),
        party(
            "qb:2",
            name="ACME G.m.b.H.",
            phones="+49 30 1234567",
            country="Deutschland",
            tax_id="DE123456789",
        ),
        party("sf:3", name="Nimbus Labs Ltd", website="nimbuslabs.co.uk", country="UK"),
        party("st:3", name="Nimbus Laboratories", emails="billing@nimbuslabs.co.uk"),
        party("st:4", name="Umbrella Corp", emails="x@gmail.com", country="US"),
    ]


def expected_small() -> set[frozenset[PartyRef]]:
    return {
        frozenset({ref("sf:1"), ref("st:1"), ref("qb:1")}),
        frozenset({ref("sf:2"), ref("qb:2")}),
        frozenset({ref("sf:3"), ref("st:3")}),
        frozenset({ref("st:4")}),
    }


def test_small_world_gives_exact_customers(small: list[PartyRecord], model: MatchModel) -> None:
    """Suffix variants, phone formats and company domains join; same name abroad stays apart."""
    state = match_all(small, model=model)
    assert groups(state) == expected_small()
    assert state.review_queue == []
    acme = state.cluster_for(ref("st:1"))
    assert acme is not None
    assert {link.method for link in acme.links} == {LinkMethod.XREF, LinkMethod.SCORE}


def test_stale_cross_reference_goes_to_review(
    small: list[PartyRecord], party: PartyMaker, model: MatchModel
) -> None:
    """A metadata id naming a clearly different company is queued, not linked."""
    stale = party(
        "st:9", name="Globex Corporation", emails="ap@globex.com", country="US", xrefs=["sf:1"]
    )
    state = match_all([*small, stale], model=model)
    assert not together(state, "st:9", "sf:1")
    [item] = state.review_queue
    assert (item.a, item.b) == (ref("sf:1"), ref("st:9"))
    assert item.reason is ReviewReason.CONTRADICTED_XREF
    assert {e.field for e in item.evidence} >= {"name", "location"}


def test_cross_reference_with_different_tax_id_goes_to_review(
    party: PartyMaker, model: MatchModel
) -> None:
    """A cross-reference between parties with different tax ids is queued."""
    records = [
        party("sf:1", name="Acme GmbH", country="DE", tax_id="DE111111111"),
        party("st:1", name="Acme GmbH", country="DE", tax_id="DE222222222", xrefs=["sf:1"]),
    ]
    state = match_all(records, model=model)
    assert not together(state, "sf:1", "st:1")
    assert [r.reason for r in state.review_queue] == [ReviewReason.CONTRADICTED_XREF]


def test_cross_reference_against_company_identifiers_goes_to_review(
    party: PartyMaker, model: MatchModel
) -> None:
    """A cross-reference copied onto a nameless customer of another company's domain is queued."""
    records = [
        party("sf:1", name="Quisatri Foundry NV", website="quisatri.nl", country="NL"),
        party("sf:2", name="Zanrara Security", website="zanrara.ca", country="CA"),
        party("st:1", emails="ap@zanrara.ca", xrefs=["sf:1"]),
    ]
    state = match_all(records, model=model)
    assert not together(state, "st:1", "sf:1")
    assert together(state, "st:1", "sf:2")
    assert [r.reason for r in state.review_queue] == [ReviewReason.CONTRADICTED_XREF]


def test_name_repeated_in_a_system_needs_more_evidence(
    party: PartyMaker, model: MatchModel
) -> None:
    """A name alone links when one record per system has it, not when a system has it twice."""
    unique = [party("sf:1", name="Velora Optics AB"), party("st:1", name="Velora Optics")]
    assert together(match_all(unique, model=model), "sf:1", "st:1")
    repeated = [*unique, party("sf:2", name="Velora Optics Aktiebolag", city="Malmo")]
    state = match_all(repeated, model=model)
    assert not together(state, "sf:1", "st:1")
    assert not together(state, "sf:2", "st:1")


def test_name_becoming_repeated_updates_earlier_links(party: PartyMaker, model: MatchModel) -> None:
    """A record that repeats a name re-examines the pairs that relied on that name."""
    first = [
        party("sf:1", name="Velora Optics", country="SE", city="Stockholm"),
        party("st:1", name="Velora Optics AB", country="SE", city="Stockholm"),
    ]
    state = match_all(first, model=model)
    assert together(state, "sf:1", "st:1")
    other = party("sf:2", name="Velora Optics", country="SE", city="Malmö")
    match_new(state, [other])
    full = match_all([*first, other], model=model)
    assert _state_view(state) == _state_view(full)
    assert not together(state, "sf:1", "st:1")


def test_same_name_in_another_country_is_kept_apart(party: PartyMaker, model: MatchModel) -> None:
    """Identical names in different countries with nothing else shared are a hard negative."""
    records = [
        party("sf:1", name="Blue Harbor Foods Ltd", country="GB"),
        party("sf:2", name="Blue Harbor Foods Pty Ltd", country="Australia"),
    ]
    state = match_all(records, model=model)
    assert not together(state, "sf:1", "sf:2")
    assert state.review_queue == []


def test_transitive_chain_with_clearly_different_ends_goes_to_review(
    party: PartyMaker, model: MatchModel
) -> None:
    """B matching both A and C, which have different tax ids, is not allowed to join them."""
    records = [
        party("sf:1", name="Vertex Data", country="DE", tax_id="DE111111111", phones="030 1234567"),
        party(
            "st:1",
            name="Vertex Data GmbH",
            country="DE",
            phones="+49 30 1234567",
            emails="ap@vertexdata.de",
        ),
        party(
            "qb:1", name="Vertex Data", country="DE", tax_id="DE222222222", website="vertexdata.de"
        ),
    ]
    state = match_all(records, model=model)
    assert not together(state, "sf:1", "qb:1")
    assert together(state, "st:1", "sf:1") or together(state, "st:1", "qb:1")
    assert [r.reason for r in state.review_queue] == [ReviewReason.TRANSITIVE_CONFLICT]


def test_never_link_beats_cross_reference_and_score(
    small: list[PartyRecord], model: MatchModel
) -> None:
    """A never-link decision keeps apart parties a cross-reference and a strong score join."""
    decisions = [decide(DecisionKind.NEVER_LINK, "sf:1", "st:1")]
    state = match_all(small, model=model, decisions=decisions)
    assert not together(state, "sf:1", "st:1")


def test_human_link_joins_parties_without_evidence(
    small: list[PartyRecord], model: MatchModel
) -> None:
    """A link decision joins parties that no evidence connects, with method human."""
    state = match_all(small, model=model, decisions=[decide(DecisionKind.LINK, "st:4", "sf:3")])
    assert together(state, "st:4", "sf:3")
    cluster = state.cluster_for(ref("st:4"))
    assert cluster is not None
    assert LinkMethod.HUMAN in {link.method for link in cluster.links}


def test_revoked_decision_no_longer_applies(small: list[PartyRecord], model: MatchModel) -> None:
    """Revoking a split restores the automatic result; the audit trail keeps both decisions."""
    decisions = [
        decide(DecisionKind.SPLIT, "sf:1", "st:1", minutes=0),
        decide(DecisionKind.REVOKE, "sf:1", "st:1", minutes=5),
    ]
    state = match_all(small, model=model, decisions=decisions)
    assert groups(state) == expected_small()
    assert [d.kind for d in state.decisions] == [DecisionKind.SPLIT, DecisionKind.REVOKE]


def test_contradicting_human_links_are_queued_and_keep_apart_wins(
    small: list[PartyRecord], model: MatchModel
) -> None:
    """Links that would join a never-linked pair go to review; the never-link still holds."""
    decisions = [
        decide(DecisionKind.NEVER_LINK, "sf:1", "sf:3", minutes=0),
        decide(DecisionKind.LINK, "sf:1", "st:4", minutes=1),
        decide(DecisionKind.LINK, "st:4", "sf:3", minutes=2),
    ]
    state = match_all(small, model=model, decisions=decisions)
    assert together(state, "sf:1", "st:4")
    assert not together(state, "sf:1", "sf:3")
    assert [r.reason for r in state.review_queue] == [ReviewReason.DECISION_CONFLICT]


def test_contradicting_decision_is_detected_before_recording() -> None:
    """A decision that contradicts those in force is named; a consistent one is not."""
    decisions = [
        decide(DecisionKind.LINK, "sf:1", "st:1", minutes=0),
        decide(DecisionKind.LINK, "st:1", "qb:1", minutes=1),
    ]
    conflict = find_decision_conflict(decisions, decide(DecisionKind.NEVER_LINK, "sf:1", "qb:1", 2))
    assert conflict is not None
    assert "salesforce:Account:1" in conflict
    assert find_decision_conflict(decisions, decide(DecisionKind.LINK, "sf:1", "qb:2", 2)) is None
    revoke = decide(DecisionKind.REVOKE, "st:1", "qb:1", 2)
    split = decide(DecisionKind.SPLIT, "sf:1", "qb:1", 3)
    assert find_decision_conflict([*decisions, revoke], split) is None


_SMALL_REFS = ["sf:1", "st:1", "qb:1", "sf:2", "qb:2", "sf:3", "st:3", "st:4"]
_decision = st.tuples(
    st.sampled_from([DecisionKind.LINK, DecisionKind.NEVER_LINK, DecisionKind.SPLIT]),
    st.sampled_from(_SMALL_REFS),
    st.sampled_from(_SMALL_REFS),
).filter(lambda d: d[1] != d[2])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_decision, max_size=6))
def test_human_constraints_always_win(
    small: list[PartyRecord], model: MatchModel, raw: list[tuple[DecisionKind, str, str]]
) -> None:
    """Every active keep-apart holds, and every link holds unless reported as a conflict."""
    decisions = [decide(kind, a, b, minutes=i) for i, (kind, a, b) in enumerate(raw)]
    state = match_all(small, model=model, decisions=decisions)
    latest = {frozenset((d.a, d.b)): d for d in decisions}
    conflicts = {
        frozenset((r.a, r.b))
        for r in state.review_queue
        if r.reason is ReviewReason.DECISION_CONFLICT
    }
    for pair, decision in latest.items():
        a, b = sorted(pair)
        same = state.cluster_of[a] == state.cluster_of[b]
        if decision.kind is DecisionKind.LINK:
            assert same or pair in conflicts
        else:
            assert not same


def test_generated_data_is_matched_with_high_precision_and_recall(
    dataset: Dataset, model: MatchModel
) -> None:
    """On messy generated data the customers reach 98% precision and 95% recall pairwise."""
    state = match_all(dataset.records, model=model)
    quality = evaluate([c.members for c in state.customers()], dataset.truth)
    assert quality.precision >= 0.98
    assert quality.recall >= 0.95
    assert len(state.review_queue) < 0.05 * len(dataset.records)


def _state_view(state: MatchState) -> tuple[set[frozenset[PartyRef]], set[frozenset[PartyRef]]]:
    return groups(state), {frozenset((r.a, r.b)) for r in state.review_queue}


def test_incremental_run_equals_full_run(dataset: Dataset, model: MatchModel) -> None:
    """New and changed records matched incrementally give the customers of a full run."""
    records = list(dataset.records)
    cut = int(len(records) * 0.95)
    state = match_all(records[:cut], model=model)
    changed = [replace(r, name=(r.name or "") + " Holdings", country=None) for r in records[:40:4]]
    final = {r.ref: r for r in records}
    final.update({r.ref: r for r in changed})
    match_new(state, [*records[cut:], *changed])
    incremental_pairs = state.compared_pairs
    full = match_all(list(final.values()), model=model)
    assert _state_view(state) == _state_view(full)
    assert incremental_pairs < full.compared_pairs / 3


def test_incremental_removal_and_decisions_equal_full_run(
    dataset: Dataset, model: MatchModel
) -> None:
    """Deleting a record and adding a decision incrementally equals a full run without it."""
    records = list(dataset.records)
    state = match_all(records, model=model)
    multi = [c for c in state.customers() if len(c.members) >= 3]
    gone = multi[0].members[0]
    split = HumanDecision(
        DecisionKind.SPLIT,
        multi[1].members[0],
        multi[1].members[1],
        "ops",
        T0,
        "different legal entities",
    )
    match_new(state, removed=[gone], decisions=[split])
    full = match_all([r for r in records if r.ref != gone], model=model, decisions=[split])
    assert _state_view(state) == _state_view(full)
    assert gone not in state.cluster_of
    assert state.cluster_of[split.a] != state.cluster_of[split.b]


def test_incremental_run_with_neighbourhoods_equals_full_run(dataset: Dataset) -> None:
    """With blocks compared by neighbourhood, incremental changes still equal a full run."""
    config = MatchConfig(max_block_size=2, neighbourhood=1)
    records = list(dataset.records)
    fitted = match_all(records, config=config)
    cut = len(records) // 2
    state = match_all(records[:cut], config=config, model=fitted.model)
    renamed = [replace(r, name=records[i + 1].name) for i, r in enumerate(records[:60:6])]
    final = {r.ref: r for r in records}
    final.update({r.ref: r for r in renamed})
    gone = [r.ref for r in records[cut::25]]
    for ref_gone in gone:
        del final[ref_gone]
    for start in range(cut, len(records), 50):
        match_new(state, records[start : start + 50])
    match_new(state, renamed, removed=gone)
    full = match_all(list(final.values()), config=config, model=fitted.model)
    assert state.index.stats(0).oversized_keys > 0
    assert _state_view(state) == _state_view(full)


def test_customer_ids_survive_an_incremental_run(dataset: Dataset, model: MatchModel) -> None:
    """A customer that only gains a member keeps its id."""
    records = list(dataset.records)
    state = match_all(records[1:], model=model)
    before = dict(state.cluster_of)
    match_new(state, [records[0]])
    kept = [r for r in before if r in state.cluster_of]
    assert sum(before[r] == state.cluster_of[r] for r in kept) >= 0.99 * len(kept)


def test_thresholds_are_validated() -> None:
    """A review threshold above the link threshold is refused."""
    with pytest.raises(ValueError, match="thresholds"):
        MatchConfig(link_threshold=0.5, review_threshold=0.9)
    with pytest.raises(ValueError, match="neighbourhood"):
        MatchConfig(neighbourhood=-1)


def _xonono(party: PartyMaker) -> list[PartyRecord]:
    """Xonono in three systems, and the QuickBooks customer the hub created for its JPY
    invoices (``qb:11021``: the company fields of ``qb:5204``, a name of its own, and the
    cross-references the store gives a created record: its customer's other records). The
    Account carries only its name and the ids the hub wrote to it."""
    company = {
        "country": "US",
        "emails": "lenarossi69@gmx.de",
        "phones": "+12015555228",
        "website": "xononopartners6.com",
        "street": "2 Beacon Street",
        "postal_code": "60630",
    }
    return [
        party("sf:1", name="Xonono Partners Corp", xrefs=("qb:5204", "st:1")),
        party("qb:5204", name="Xonono Partners Corp", **company),
        party(
            "qb:11021",
            name="Xonono, Partners Corporation (JPY)",
            xrefs=("sf:1", "qb:5204", "st:1"),
            **company,
        ),
        party("st:1", name="Xonono Partners Corp", emails="lenarossi69@gmx.de", xrefs=("sf:1",)),
    ]


def test_a_record_the_hub_created_keeps_none_of_its_customers_records_apart(
    party: PartyMaker, model: MatchModel
) -> None:
    """The JPY customer's name is not the Account's, and the Account shares nothing else
    with it: among records that merely matched, linking the Account would join two that
    clearly differ. The hub made that customer for this company, so it vouches like a record
    a person linked: the Account stays with its customer, in a full run and in an
    incremental one that learns of the created record."""
    records = _xonono(party)
    plain = match_all(records, model=model)
    assert not together(plain, "sf:1", "qb:5204")
    assert [r.reason for r in plain.review_queue] == [ReviewReason.TRANSITIVE_CONFLICT]

    created = [ref("qb:11021")]
    vouched = match_all(records, model=model, created=created)
    assert together(vouched, "sf:1", "qb:5204")
    assert together(vouched, "sf:1", "qb:11021")
    assert vouched.review_queue == []

    match_new(plain, created=created)
    assert [c.members for c in plain.customers()] == [c.members for c in vouched.customers()]
    assert plain.review_queue == []
    match_new(plain, created=[])
    assert not together(plain, "sf:1", "qb:5204")
