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
        "MERGE_ACTION",
        "MIN_FIT_PARTIES",
        "PARTY_ENTITY",
        "RUN_ACTION",
        "SPLIT_ACTION",
        "UNDO_ACTION",
        "Conflict",
        "CustomerChange",
        "DecisionConflictError",
        "MatchStoreError",
        "MatchSummary",
        "Matcher",
        "MergePlan",
        "ProgressCallback",
        "SplitPlan",
        "StoredLink",
        "UnknownDecisionError",
        "UnknownReferenceError",
        "conflict_id",
        "get_conflict",
        "link_of",
        "list_conflicts",
        "list_customer_changes",
        "list_decisions",
        "load_decisions",
        "load_links",
        "load_party",
        "merge_customers",
        "plan_merge",
        "plan_split",
        "record_decision",
        "revoke_decision",
        "run_matching",
        "split_record",
        "starter_model",
        "survivorship_rules",
        "undo_customer_change",
    }
    assert all(hasattr(persist, name) for name in persist.__all__)
