"""Matching: one customer per company across systems, with a review queue for doubt.

Pure functions over plain values, so the store can call them with what it loads:
normalize (:mod:`.normalize`), block (:mod:`.block`), score with a Fellegi-Sunter model fitted
by EM (:mod:`.score`), cluster with human decisions, cross-references and scores in that order
(:mod:`.cluster`), and build golden customers with lineage (:mod:`.golden`).
"""

from __future__ import annotations

from ledgerlink.matching.block import BlockIndex, BlockingStats, blocking_keys
from ledgerlink.matching.cluster import (
    Cluster,
    DecisionKind,
    HumanDecision,
    Link,
    LinkMethod,
    MatchConfig,
    MatchState,
    ReviewItem,
    ReviewReason,
    find_decision_conflict,
    match_all,
    match_new,
)
from ledgerlink.matching.golden import GoldenCustomer, SurvivorshipRules, build_golden
from ledgerlink.matching.normalize import NormalizedParty, normalize_party
from ledgerlink.matching.party import PartyRecord, PartyRef
from ledgerlink.matching.score import Evidence, MatchModel, compare, estimate_model

__all__ = [
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
