"""Pins the public surface of ledgerlink.matching, which the store and the CLI build on."""

from __future__ import annotations

import pytest

import ledgerlink.matching as matching


def test_public_names_are_pinned() -> None:
    """The package exports exactly the documented names, and each one exists."""
    assert sorted(matching.__all__) == [
        "BlockIndex",
        "BlockingStats",
        "Cluster",
        "DecisionKind",
        "Evidence",
        "GoldenCustomer",
        "HumanDecision",
        "Link",
        "LinkMethod",
        "MatchConfig",
        "MatchModel",
        "MatchState",
        "NormalizedParty",
        "PartyRecord",
        "PartyRef",
        "ReviewItem",
        "ReviewReason",
        "SurvivorshipRules",
        "blocking_keys",
        "build_golden",
        "compare",
        "estimate_model",
        "find_decision_conflict",
        "match_all",
        "match_new",
        "normalize_party",
    ]
    for name in matching.__all__:
        assert getattr(matching, name) is not None


def test_party_references_print_and_parse() -> None:
    """A reference prints as SYSTEM:OBJECT:ID and parses back, ids with colons included."""
    ref = matching.PartyRef("quickbooks", "Customer", "realm:42")
    assert str(ref) == "quickbooks:Customer:realm:42"
    assert matching.PartyRef.parse(str(ref)) == ref


def test_malformed_reference_is_refused() -> None:
    """A reference without three parts is a clear error."""
    with pytest.raises(ValueError, match="SYSTEM:OBJECT:ID"):
        matching.PartyRef.parse("salesforce:001")
