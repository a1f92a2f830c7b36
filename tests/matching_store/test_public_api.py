"""The public surface of matching in the store, pinned."""

from __future__ import annotations

from ledgerlink.matching import adapt, persist


def test_persist_and_adapt_export_exactly_their_public_names() -> None:
    """persist and adapt export these names and nothing else."""
    assert set(adapt.__all__) == {
        "DEFAULT_XREF_KEYS",
        "SalesforceIdResolver",
        "XrefKey",
        "party_record",
    }
    assert set(persist.__all__) == {
        "MIN_FIT_PARTIES",
        "PARTY_ENTITY",
        "RUN_ACTION",
        "Conflict",
        "DecisionConflictError",
        "MatchStoreError",
        "MatchSummary",
        "Matcher",
        "ProgressCallback",
        "StoredLink",
        "UnknownDecisionError",
        "UnknownReferenceError",
        "conflict_id",
        "get_conflict",
        "link_of",
        "list_conflicts",
        "list_decisions",
        "load_decisions",
        "load_links",
        "load_party",
        "record_decision",
        "revoke_decision",
        "run_matching",
        "starter_model",
        "survivorship_rules",
    }
    assert all(hasattr(persist, name) for name in persist.__all__)
