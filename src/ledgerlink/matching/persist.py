"""Matching in the store: load parties and decisions, match, write customers and links.

This module connects the pure engine (:mod:`ledgerlink.matching.cluster`) to the tables:

* **Input.** Parties are the landed records of every object whose mapping produces a
  ``party`` entity, normalised by :func:`ledgerlink.mapping.iter_normalized` (records that do
  not map are quarantined there and left out). Human decisions come from ``match_decision``;
  a revoked row counts as the decision followed by a ``revoke`` at ``revoked_at``.
  Links the hub made itself (``customer_link`` rows with method ``created``) are
  cross-references of that record to the other records of its customer.
* **State.** A :class:`Matcher` keeps the engine's :class:`~ledgerlink.matching.MatchState`
  in memory. Its first run rebuilds it from the tables (``match_all`` over every party, with
  the model stored by the last run, so scores do not drift between runs); later runs of the
  same ``Matcher`` (the daemon) call ``match_new`` with only the parties changed since the
  previous run and the decisions made or revoked since. Nothing of the state but the fitted
  model is persisted: the model is kept in the ``audit_log`` row that every run writes
  (action ``match.run``), next to the run's summary.
* **Output.** In one transaction per run: ``customer`` (the golden record from
  :func:`~ledgerlink.matching.build_golden` with the mappings' source-of-truth order, and its
  lineage), ``customer_link`` (one row per source record: its customer, score, method,
  status ``linked`` or ``review``, and reasons), and the ``match.run`` audit row. Only rows
  that differ are written. Customer ids are stable: each customer keeps the id of the stored
  customer it shares most records with; a new customer takes the engine's id.
* **Review queue.** Each open pair is a *conflict* with a stable id (``rv-`` and ten hex
  digits of the pair). It is stored in the reasons of one of its two records (the one in the
  smaller customer), whose link status becomes ``review``.
* **Decisions.** :func:`record_decision` and :func:`revoke_decision` write ``match_decision``
  and ``audit_log`` together, refusing a decision that contradicts those in force.
* **Customer changes.** :func:`merge_customers` and :func:`split_record` turn a person's
  judgement about whole customers into pair decisions, recorded in one transaction and
  applied at once by a matching run; :func:`undo_customer_change` revokes them.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from ledgerlink.domain.entities import Party
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.mapping.apply import Normalizer
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.mapping.normalize import iter_normalized
from ledgerlink.matching.adapt import SalesforceIdResolver, party_record
from ledgerlink.matching.block import ordered_pair
from ledgerlink.matching.cluster import (
    Cluster,
    DecisionKind,
    HumanDecision,
    Link,
    LinkMethod,
    MatchConfig,
    MatchState,
    ReviewItem,
    find_decision_conflict,
    match_all,
    match_new,
)
from ledgerlink.matching.golden import SurvivorshipRules, build_golden
from ledgerlink.matching.party import PartyRecord, PartyRef
from ledgerlink.matching.score import Evidence, MatchModel
from ledgerlink.matching.synthetic import generate_parties
from ledgerlink.store.db import driver_rows, for_writing
from ledgerlink.store.models import (
    AuditLog,
    Customer,
    CustomerLink,
    LinkStatus,
    MatchDecision,
    Outbox,
    SourceRecord,
)
from ledgerlink.store.models import DecisionKind as StoredDecision
from ledgerlink.store.models import LinkMethod as StoredMethod

__all__ = [
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
]

PARTY_ENTITY = "party"
MIN_FIT_PARTIES = 5_000
"""Below this many parties EM sees too few true matches to fit; the starter model is used."""
STARTER_COMPANIES = 1_000
RUN_ACTION = "match.run"
_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]
_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_DECISION = MatchDecision.__table__  # type: ignore[attr-defined]
_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_METHODS = {
    LinkMethod.HUMAN: StoredMethod.MANUAL.value,
    LinkMethod.XREF: StoredMethod.XREF.value,
    LinkMethod.SCORE: StoredMethod.PROBABILISTIC.value,
}
_TO_STORED = {
    DecisionKind.LINK: StoredDecision.LINK.value,
    DecisionKind.SPLIT: StoredDecision.SPLIT.value,
    DecisionKind.NEVER_LINK: StoredDecision.NEVER_LINK.value,
}
_FROM_STORED = {value: kind for kind, value in _TO_STORED.items()}
# Canonical party fields (source-of-truth keys in shared.yaml) -> golden fields.
_GOLDEN_KEYS = {
    "name": ("name",),
    "emails": ("email",),
    "phones": ("phone",),
    "website": ("website",),
    "addresses": ("address", "country"),
    "tax_ids": ("tax_id",),
}
_log = get_logger(component="matching")

ProgressCallback = Callable[[str, int], None]
"""Called with a stage name (``normalize salesforce``, ``match``, ``write``) and a count."""


class MatchStoreError(Exception):
    """A matching request the store cannot honour; the message is for the person."""


class UnknownReferenceError(MatchStoreError):
    """A record reference, customer or conflict id that the store does not hold."""


class UnknownDecisionError(MatchStoreError):
    """A decision id that does not exist or was already revoked."""


class DecisionConflictError(MatchStoreError):
    """A decision that contradicts decisions in force; nothing was recorded."""


@dataclass(frozen=True, slots=True)
class MatchSummary:
    """What one matching run did.

    Attributes:
        mode: ``full`` (state rebuilt from the tables) or ``incremental``.
        parties: parties known after the run.
        changed: parties (re)matched because they were new or changed (all of them when full).
        removed: parties deleted in their system.
        customers: customers after the run.
        multi_record_customers: customers with records in more than one source record.
        auto_links: links made by cross-references and scores.
        human_links: links made by a person's decision.
        review_queue: pairs waiting for a person.
        customers_created: customers that did not exist before the run.
        customers_retired: stored customers left without records (merged into others).
        rows_written: customer and link rows inserted, updated or deleted.
        model: where the run's Fellegi-Sunter model came from: ``stored`` (the last run's),
            ``fitted`` (EM on this store's parties), ``starter`` (fitted on generated data,
            used while the store holds too few parties for a fit) or ``given``.
        seconds: wall time of the run.
    """

    mode: str
    parties: int
    changed: int
    removed: int
    customers: int
    multi_record_customers: int
    auto_links: int
    human_links: int
    review_queue: int
    customers_created: int
    customers_retired: int
    rows_written: int
    model: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-safe values."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class StoredLink:
    """A ``customer_link`` row, read back.

    Attributes:
        id: row id.
        ref: the source record.
        customer_id: its customer.
        score: match probability of the link that joined it (0 for a one-record customer).
        method: xref, probabilistic, manual or created.
        status: linked or review.
        reasons: the evidence (``kind`` = link, alone or review).
        content_hash: digest of the record's company details when last matched
            (:func:`content_digest`), None before any.
        content_changed_at: the record's modification time when those details last changed.
    """

    id: int
    ref: PartyRef
    customer_id: str
    score: float
    method: str
    status: str
    reasons: list[dict[str, Any]]
    content_hash: str | None = None
    content_changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """A pair in the review queue.

    Attributes:
        id: stable conflict id (``rv-...``).
        a: one record.
        b: the other record.
        customer_a: the customer ``a`` is in.
        customer_b: the customer ``b`` is in.
        reason: why it waits (uncertain-score, contradicted-xref, ...).
        probability: match probability.
        weight: match weight in bits.
        detail: a sentence for the reviewer.
        evidence: field, label and weight, strongest first.
        since: when the link row was last written.
        decision: the id of a decision already recorded about the pair (it takes effect at
            the next run), or None while the pair waits.
    """

    id: str
    a: PartyRef
    b: PartyRef
    customer_a: str
    customer_b: str
    reason: str
    probability: float
    weight: float
    detail: str
    evidence: list[dict[str, Any]]
    since: datetime
    decision: int | None = None


# -- decisions ----------------------------------------------------------------------------


def _ref(system: str | None, obj: str | None, external_id: str | None) -> PartyRef:
    return PartyRef(system or "", obj or "", external_id or "")


def _events(row: Any) -> list[HumanDecision]:
    a = _ref(row.left_system, row.left_object, row.left_external_id)
    b = _ref(row.right_system, row.right_object, row.right_external_id)
    made = HumanDecision(_FROM_STORED[row.decision], a, b, row.actor, row.created_at, row.reason)
    if row.revoked_at is None:
        return [made]
    revoked = HumanDecision(DecisionKind.REVOKE, a, b, row.revoked_by or "", row.revoked_at)
    return [made, revoked]


def load_decisions(conn: Connection | Engine) -> list[HumanDecision]:
    """Load every pair decision as the engine's events (a revocation is a ``revoke`` event).

    Args:
        conn: a connection or engine on the store.

    Returns:
        The events, oldest first.
    """
    query = select(_DECISION).where(_DECISION.c.right_external_id.is_not(None))
    if isinstance(conn, Engine):
        with conn.connect() as c:
            rows = list(c.execute(query.order_by(_DECISION.c.id)))
    else:
        rows = list(conn.execute(query.order_by(_DECISION.c.id)))
    events = [event for row in rows for event in _events(row)]
    return sorted(events, key=lambda d: (d.decided_at, d.a, d.b))


def list_decisions(engine: Engine, *, include_revoked: bool = False) -> list[MatchDecision]:
    """List recorded decisions, newest first.

    Args:
        engine: the store's engine.
        include_revoked: include revoked decisions.

    Returns:
        The ``match_decision`` rows.
    """
    query = select(_DECISION).order_by(_DECISION.c.id.desc())
    if not include_revoked:
        query = query.where(_DECISION.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [MatchDecision.model_validate(dict(row._mapping)) for row in conn.execute(query)]


def _require_records(conn: Connection, refs: Iterable[PartyRef]) -> None:
    for ref in refs:
        found = conn.execute(
            select(_SOURCE.c.id).where(
                _SOURCE.c.system == ref.system,
                _SOURCE.c.object == ref.object,
                _SOURCE.c.external_id == ref.id,
            )
        ).first()
        if found is None:
            msg = f"no landed record {ref}"
            raise UnknownReferenceError(msg)


def record_decision(
    engine: Engine,
    kind: DecisionKind,
    a: PartyRef,
    b: PartyRef,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> int:
    """Record a person's link, split or never-link decision about two records, audited.

    Args:
        engine: the store's engine.
        kind: link, split or never-link.
        a: one record.
        b: the other record.
        actor: who decides.
        reason: why, in their words.
        now: the decision time (timezone-aware UTC).

    Returns:
        The decision id (an identical decision already in force is returned, not repeated).

    Raises:
        ValueError: ``kind`` is revoke (use :func:`revoke_decision`) or ``now`` is naive.
        UnknownReferenceError: a record was never landed.
        DecisionConflictError: the pair already has another decision in force, or the
            decision contradicts the decisions in force (``find_decision_conflict``).
    """
    if kind is DecisionKind.REVOKE:
        msg = "revoke a decision with revoke_decision"
        raise ValueError(msg)
    if now.tzinfo is None:
        msg = "now must be timezone-aware"
        raise ValueError(msg)
    with for_writing(engine).begin() as conn:
        decision_id, created = _record_in(conn, kind, a, b, actor=actor, reason=reason, now=now)
    if created:
        _log.info("matching.decision", kind=kind.value, a=str(a), b=str(b), decision=decision_id)
    return decision_id


def _record_in(
    conn: Connection,
    kind: DecisionKind,
    a: PartyRef,
    b: PartyRef,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> tuple[int, bool]:
    """Record one decision inside the caller's transaction (see :func:`record_decision`).

    Returns:
        The decision id, and whether it was recorded now (False: identical one in force).
    """
    a, b = ordered_pair(a, b)
    _require_records(conn, (a, b))
    in_force = conn.execute(
        select(_DECISION.c.id, _DECISION.c.decision, _DECISION.c.actor)
        .where(
            _DECISION.c.left_system == a.system,
            _DECISION.c.left_object == a.object,
            _DECISION.c.left_external_id == a.id,
            _DECISION.c.right_system == b.system,
            _DECISION.c.right_object == b.object,
            _DECISION.c.right_external_id == b.id,
            _DECISION.c.revoked_at.is_(None),
        )
        .order_by(_DECISION.c.id.desc())
    ).first()
    if in_force is not None and in_force.decision == _TO_STORED[kind]:
        return int(in_force.id), False
    if in_force is not None:
        earlier = _FROM_STORED[in_force.decision].value
        msg = (
            f"refused: {a} and {b} already have decision {in_force.id} ({earlier}, by "
            f"{in_force.actor}); revoke it first with `ledgerlink conflicts revoke {in_force.id}`"
        )
        raise DecisionConflictError(msg)
    decision = HumanDecision(kind, a, b, actor, now, reason)
    problem = find_decision_conflict(load_decisions(conn), decision)
    if problem is not None:
        msg = f"refused: {problem}; revoke the decision in the way first"
        raise DecisionConflictError(msg)
    decision_id = conn.execute(
        insert(_DECISION)
        .values(
            left_system=a.system,
            left_object=a.object,
            left_external_id=a.id,
            right_system=b.system,
            right_object=b.object,
            right_external_id=b.id,
            decision=_TO_STORED[kind],
            reason=reason,
            actor=actor,
            created_at=now,
        )
        .returning(_DECISION.c.id)
    ).scalar_one()
    conn.execute(
        insert(_AUDIT).values(
            at=now,
            actor=actor,
            action=f"match.decision.{kind.value}",
            subject=f"match_decision:{decision_id}",
            details={"a": str(a), "b": str(b), "reason": reason},
        )
    )
    return int(decision_id), True


def revoke_decision(
    engine: Engine, decision_id: int, *, actor: str, now: datetime, reason: str = ""
) -> MatchDecision:
    """Revoke a decision; the next run matches the pair as if it had never been made.

    Args:
        engine: the store's engine.
        decision_id: the decision to withdraw.
        actor: who revokes.
        now: when (timezone-aware UTC).
        reason: why.

    Returns:
        The revoked decision row.

    Raises:
        UnknownDecisionError: no such decision, or it is already revoked.
    """
    with for_writing(engine).begin() as conn:
        return _revoke_in(conn, decision_id, actor=actor, now=now, reason=reason)


def _revoke_in(
    conn: Connection, decision_id: int, *, actor: str, now: datetime, reason: str
) -> MatchDecision:
    """Revoke one decision inside the caller's transaction (see :func:`revoke_decision`)."""
    row = conn.execute(select(_DECISION).where(_DECISION.c.id == decision_id)).first()
    if row is None:
        msg = f"no decision {decision_id}"
        raise UnknownDecisionError(msg)
    if row.revoked_at is not None:
        msg = f"decision {decision_id} was already revoked by {row.revoked_by}"
        raise UnknownDecisionError(msg)
    conn.execute(
        update(_DECISION)
        .where(_DECISION.c.id == decision_id)
        .values(revoked_at=now, revoked_by=actor)
    )
    conn.execute(
        insert(_AUDIT).values(
            at=now,
            actor=actor,
            action="match.decision.revoke",
            subject=f"match_decision:{decision_id}",
            details={"decision": row.decision, "reason": reason},
        )
    )
    row = conn.execute(select(_DECISION).where(_DECISION.c.id == decision_id)).one()
    return MatchDecision.model_validate(dict(row._mapping))


# -- reading links and conflicts ------------------------------------------------------------


def _stored_link(row: Any) -> StoredLink:
    return StoredLink(
        int(row.id),
        PartyRef(row.system, row.object, row.external_id),
        row.customer_id,
        float(row.score),
        row.method,
        row.status,
        list(row.reasons or []),
        row.content_hash,
        row.content_changed_at,
    )


def load_links(
    conn: Connection | Engine,
    *,
    customer_id: str | None = None,
    status: str | None = None,
) -> list[StoredLink]:
    """Read ``customer_link`` rows.

    Args:
        conn: a connection or engine on the store.
        customer_id: only this customer's records.
        status: only rows with this status.

    Returns:
        The rows, by system, object and id.
    """
    query = select(_LINK)
    if customer_id is not None:
        query = query.where(_LINK.c.customer_id == customer_id)
    if status is not None:
        query = query.where(_LINK.c.status == status)
    query = query.order_by(_LINK.c.system, _LINK.c.object, _LINK.c.external_id)
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return [_stored_link(row) for row in c.execute(query)]
    return [_stored_link(row) for row in conn.execute(query)]


def link_of(engine: Engine, ref: PartyRef) -> StoredLink | None:
    """Return the ``customer_link`` row of one source record, or None when it has none."""
    with engine.connect() as conn:
        return _links_for(conn, [ref]).get(ref)


def conflict_id(a: PartyRef, b: PartyRef) -> str:
    """Return the stable id of the conflict between two records (order does not matter)."""
    x, y = ordered_pair(a, b)
    return "rv-" + hashlib.sha256(f"{x}|{y}".encode()).hexdigest()[:10]


def list_conflicts(engine: Engine, *, system: str | None = None) -> list[Conflict]:
    """List the review queue, most likely matches first.

    Args:
        engine: the store's engine.
        system: only conflicts with a record of this system.

    Returns:
        The open conflicts of the last run.
    """
    with engine.connect() as conn:
        rows = list(conn.execute(select(_LINK).where(_LINK.c.status == LinkStatus.REVIEW.value)))
        decided = {
            ordered_pair(
                _ref(d.left_system, d.left_object, d.left_external_id),
                _ref(d.right_system, d.right_object, d.right_external_id),
            ): int(d.id)
            for d in conn.execute(
                select(_DECISION)
                .where(_DECISION.c.revoked_at.is_(None), _DECISION.c.right_external_id.is_not(None))
                .order_by(_DECISION.c.id)
            )
        }
    conflicts: list[Conflict] = []
    for row in rows:
        for reason in row.reasons or []:
            if reason.get("kind") != "review":
                continue
            item = Conflict(
                id=reason["conflict"],
                a=PartyRef.parse(reason["a"]),
                b=PartyRef.parse(reason["b"]),
                customer_a=reason["customer_a"],
                customer_b=reason["customer_b"],
                reason=reason["reason"],
                probability=float(reason["probability"]),
                weight=float(reason["weight"]),
                detail=reason.get("detail", ""),
                evidence=list(reason.get("evidence", [])),
                since=row.updated_at,
            )
            item = replace(item, decision=decided.get(ordered_pair(item.a, item.b)))
            if system is None or system in (item.a.system, item.b.system):
                conflicts.append(item)
    return sorted(conflicts, key=lambda c: (-c.probability, c.id))


def get_conflict(engine: Engine, conflict: str) -> Conflict:
    """Return one conflict of the review queue.

    Args:
        engine: the store's engine.
        conflict: its id (``rv-...``).

    Returns:
        The conflict.

    Raises:
        UnknownReferenceError: no open conflict has this id.
    """
    for item in list_conflicts(engine):
        if item.id == conflict:
            return item
    msg = f"no open conflict {conflict}"
    raise UnknownReferenceError(msg)


def load_party(engine: Engine, normalizer: Normalizer, ref: PartyRef) -> PartyRecord | None:
    """Map one landed record to the engine's party record, for display.

    Args:
        engine: the store's engine.
        normalizer: the mappings' normalizer.
        ref: the record.

    Returns:
        The party record, or None when the record is not landed, deleted or does not map to a
        party.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(_SOURCE.c.payload, _SOURCE.c.deleted_at).where(
                _SOURCE.c.system == ref.system,
                _SOURCE.c.object == ref.object,
                _SOURCE.c.external_id == ref.id,
            )
        ).first()
    mapper = normalizer.mapper(ref.system, ref.object)
    if row is None or row.deleted_at is not None or mapper is None:
        return None
    try:
        entity = mapper.map(ref.id, row.payload)
    except Exception:  # noqa: BLE001 - a record that does not map is shown as missing
        return None
    return party_record(entity) if isinstance(entity, Party) else None


# -- running ------------------------------------------------------------------------------


def survivorship_rules(mappings: MappingSet) -> SurvivorshipRules:
    """Build golden-record survivorship from the mappings' source-of-truth order of parties.

    Args:
        mappings: the loaded mappings.

    Returns:
        Rules keyed by golden field (``address`` for the address block).
    """
    order: dict[str, tuple[str, ...]] = {}
    for canonical, systems in mappings.truth_order(PARTY_ENTITY).items():
        for golden in _GOLDEN_KEYS.get(canonical, ()):
            order[golden] = systems
    return SurvivorshipRules(order=order)


def _party_objects(mappings: MappingSet) -> dict[str, list[str]]:
    objects: dict[str, list[str]] = {}
    for system, system_file in sorted(mappings.systems.items()):
        names = [n for n, m in sorted(system_file.objects.items()) if m.entity == PARTY_ENTITY]
        if names:
            objects[system] = names
    return objects


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def _evidence(items: Iterable[Evidence]) -> list[dict[str, Any]]:
    return [{"field": e.field, "label": e.label, "weight": _round(e.weight, 3)} for e in items]


@dataclass
class _Loaded:
    records: dict[PartyRef, PartyRecord] = field(default_factory=dict)
    removed: list[PartyRef] = field(default_factory=list)


class Matcher:
    """Matching over the store, keeping the engine's state between runs of one process.

    Args:
        engine: the store's engine.
        mappings: the loaded mappings (party objects, source-of-truth order).
        config: thresholds; defaults when None.
        refit: fit the model by EM on the first run even when one is stored (and even on
            few parties).
        model: use this model instead of the stored one (tests, a model fitted elsewhere).
    """

    def __init__(
        self,
        engine: Engine,
        mappings: MappingSet,
        *,
        config: MatchConfig | None = None,
        refit: bool = False,
        model: MatchModel | None = None,
    ) -> None:
        self.engine = engine
        self.model = model
        self.mappings = mappings
        self.config = config or MatchConfig()
        self.refit = refit
        self.state: MatchState | None = None
        self._normalizer = Normalizer(mappings)
        self._rules = survivorship_rules(mappings)
        self._last_run: datetime | None = None
        self._created: dict[PartyRef, tuple[PartyRef, ...]] = {}
        self._created_of: dict[str, list[PartyRef]] = {}
        """Customer id -> its records the hub created (the keys of :attr:`_created`)."""
        self._link_summaries: dict[str, tuple[Any, ...]] = {}
        """Customer id -> (links, highest link id, latest update) when last read."""
        self._ids: dict[str, str] = {}
        self._resolve: SalesforceIdResolver | None = None
        """The Salesforce ids of every party matched so far (kept with :attr:`state`)."""
        self.mapped: dict[tuple[str, str, str], tuple[str, Party]] = {}
        """The parties the last run mapped: (system, object, id) -> (content hash, party);
        a planner reading the same landed records takes these instead of mapping again."""

    # -- loading ----------------------------------------------------------------------

    def _load_parties(
        self, since: datetime | None, now: datetime, progress: ProgressCallback | None
    ) -> _Loaded:
        loaded = _Loaded()
        parties: list[Party] = []
        mapped: dict[tuple[str, str, str], tuple[str, Party]] = {}
        for system, objects in _party_objects(self.mappings).items():
            stage = f"normalize {system}"
            for outcome in iter_normalized(
                self.engine,
                self._normalizer,
                system,
                since=since,
                now=now,
                objects=objects,
                waiting=since is None,  # this matcher's mappings quarantined them: unchanged
            ):
                if isinstance(outcome.entity, Party):
                    parties.append(outcome.entity)
                    if outcome.content_hash is not None:
                        src = outcome.ref
                        mapped[src.system, src.object, src.id] = (
                            outcome.content_hash,
                            outcome.entity,
                        )
                elif outcome.deleted or outcome.error is not None:
                    # A quarantined record leaves matching until it maps again.
                    src = outcome.ref
                    loaded.removed.append(PartyRef(src.system, src.object, src.id))
                if progress is not None:
                    progress(stage, 1)
        self.mapped = mapped
        known = [p.source.id for p in parties if p.source.system == "salesforce"]
        if self.state is None or self._resolve is None:
            resolve = self._resolve = SalesforceIdResolver(known)
        else:
            # The matched records' forms stay; a new record's id joins (as a resolver made from
            # the new ids, then every matched record's, would hold them).
            resolve = self._resolve
            resolve.forget(r.id for r in loaded.removed if r.system == "salesforce")
            resolve.add(known)
        for party in parties:
            record = party_record(party, resolve=resolve)
            extra = self._created.get(record.ref, ())
            if extra:
                record = replace(record, xrefs=tuple(sorted({*record.xrefs, *extra})))
            loaded.records[record.ref] = record
        return loaded

    def _load_created(self, conn: Connection) -> set[PartyRef]:
        """Records the hub created for a customer cross-reference that customer's records.

        Updates :attr:`_created` (created record -> the other records of its customer) and
        returns the created records whose entry is new or changed. Only customers that have
        such a record count, and of those only the ones whose links changed since the last
        run are read whole: a summary per customer (how many links, the highest link id, the
        latest ``updated_at``) tells them apart, so a run costs one aggregate, not every
        link of every such customer.
        """
        with_created = select(_LINK.c.customer_id).where(
            _LINK.c.method == StoredMethod.CREATED.value
        )
        # As the driver gives them (``updated_at`` as text or a datetime, only ever compared
        # with itself): one row per such customer, every run.
        summaries = {
            row[0]: tuple(row[1:])
            for row in driver_rows(
                conn,
                select(
                    _LINK.c.customer_id,
                    func.count(),
                    func.max(_LINK.c.id),
                    func.max(_LINK.c.updated_at),
                )
                .where(_LINK.c.customer_id.in_(with_created.scalar_subquery()))
                .group_by(_LINK.c.customer_id),
            )
        }
        before = self._link_summaries
        moved = [c for c, summary in summaries.items() if before.get(c) != summary]
        moved += [c for c in before if c not in summaries]
        self._link_summaries = summaries
        for customer in moved:
            for ref in self._created_of.pop(customer, ()):
                self._created.pop(ref, None)
        members: dict[str, list[PartyRef]] = defaultdict(list)
        created: list[tuple[PartyRef, str]] = []
        wanted = [c for c in moved if c in summaries]
        for start in range(0, len(wanted), _CHUNK):
            for row in conn.execute(
                select(
                    _LINK.c.system,
                    _LINK.c.object,
                    _LINK.c.external_id,
                    _LINK.c.customer_id,
                    _LINK.c.method,
                ).where(_LINK.c.customer_id.in_(wanted[start : start + _CHUNK]))
            ):
                ref = PartyRef(row.system, row.object, row.external_id)
                members[row.customer_id].append(ref)
                if row.method == StoredMethod.CREATED.value:
                    created.append((ref, row.customer_id))
        changed: set[PartyRef] = set()
        for ref, customer in created:
            self._created[ref] = tuple(sorted(m for m in members[customer] if m != ref))
            self._created_of.setdefault(customer, []).append(ref)
            changed.add(ref)
        return changed

    def _stored_model(self, conn: Connection) -> MatchModel | None:
        row = conn.execute(
            select(_AUDIT.c.details)
            .where(_AUDIT.c.action == RUN_ACTION)
            .order_by(_AUDIT.c.id.desc())
            .limit(1)
        ).first()
        if row is None or not isinstance(row.details, dict) or "model" not in row.details:
            return None
        return MatchModel.from_json(row.details["model"])

    # -- running ----------------------------------------------------------------------

    def run(self, *, now: datetime, progress: ProgressCallback | None = None) -> MatchSummary:
        """Match what changed since the previous run (everything on the first) and save it.

        Args:
            now: the time of this run (timezone-aware UTC); the next run of this matcher
                re-matches the parties changed since it.
            progress: called as work advances, for progress bars.

        Returns:
            The run's summary.

        Raises:
            ValueError: ``now`` is naive.
        """
        if now.tzinfo is None:
            msg = "now must be timezone-aware"
            raise ValueError(msg)
        started = time.perf_counter()
        with self.engine.connect() as conn:
            created_changed = self._load_created(conn)
            decisions = load_decisions(conn)
            stored = None if self.refit or self.model else self._stored_model(conn)
        source = "stored"
        scope: set[str] | None = None
        gone: list[PartyRef] = []
        if self.state is None:
            loaded = self._load_parties(None, now, progress)
            model = self.model or stored
            if self.model is not None:
                source = "given"
            elif model is None and not self.refit and len(loaded.records) < MIN_FIT_PARTIES:
                model, source = starter_model(), "starter"
            elif model is None:
                source = "fitted"
            state = match_all(
                loaded.records.values(),
                config=self.config,
                decisions=decisions,
                model=model,
                created=self._created,
            )
            changed, removed, mode = len(loaded.records), 0, "full"
        else:
            state = self.state
            loaded = self._load_parties(self._last_run, now, progress)
            records = [r for r in loaded.records.values() if _rematch(state.records.get(r.ref), r)]
            for ref in created_changed:
                extra = self._created[ref]
                current = state.records.get(ref)
                if current is not None and ref not in loaded.records:
                    wanted = tuple(sorted({*current.xrefs, *extra}))
                    if wanted != current.xrefs:
                        records.append(replace(current, xrefs=wanted))
            known = set(state.decisions)
            new_decisions = [d for d in decisions if d not in known]
            gone = [r for r in loaded.removed if r in state.records]
            clusters_before = dict(state.clusters)
            review_before = dict(state.review)
            match_new(state, records, removed=gone, decisions=new_decisions, created=self._created)
            scope = _touched(state, clusters_before, review_before, [r.ref for r in records])
            changed, removed, mode = len(records), len(gone), "incremental"
        if progress is not None:
            progress("match", len(state.records))
        self.state = state
        summary = self._save(
            state,
            now=now,
            mode=mode,
            changed=changed,
            removed=removed,
            model_source=source,
            started=started,
            decisions=decisions,
            scope=scope,
            gone=gone,
        )
        if progress is not None:
            progress("write", summary.rows_written)
        self._last_run = now
        self.refit = False
        _log.info("matching.run", **summary.as_dict())
        return summary

    # -- saving -----------------------------------------------------------------------

    def _save(
        self,
        state: MatchState,
        *,
        now: datetime,
        mode: str,
        changed: int,
        removed: int,
        model_source: str,
        started: float,
        decisions: Sequence[HumanDecision],
        scope: set[str] | None = None,
        gone: Sequence[PartyRef] = (),
    ) -> MatchSummary:
        """Write customers and links; all of them, or only the engine clusters in ``scope``."""
        with for_writing(self.engine).begin() as conn:
            fixed: dict[str, str] = {}
            if scope is None:
                clusters = state.customers()
                stored_links = {link.ref: link for link in load_links(conn)}
                taken = set(conn.execute(select(_CUSTOMER.c.id)).scalars())
                candidates = set(taken)
            else:
                clusters = [state.clusters[cid] for cid in sorted(scope) if cid in state.clusters]
                refs = [m for c in clusters for m in c.members] + list(gone)
                stored_links = _links_for(conn, refs)
                fixed = {
                    cid: self._ids[cid]
                    for cid in state.clusters
                    if cid not in scope and cid in self._ids
                }
                taken = set(fixed.values())
                candidates = {link.customer_id for link in stored_links.values()}

            def exists(customer_id: str) -> bool:
                if customer_id in taken or scope is None:
                    return customer_id in taken
                found = conn.execute(
                    select(_CUSTOMER.c.id).where(_CUSTOMER.c.id == customer_id)
                ).first()
                return found is not None

            ids = _assign_ids(clusters, stored_links, exists, reserved=set(fixed.values()))
            used = set(ids.values())
            stored_customers = _customers_for(conn, used | candidates)
            link_rows = _link_rows(state, clusters, ids, stored_links, decisions)
            edited = _edited(state, link_rows, stored_links)
            written = 0
            copies = _currency_copies(conn)
            # Customers first (links point at them), links next, retired customers last.
            fresh: list[dict[str, Any]] = []
            for cluster in clusters:
                cid = ids[cluster.id]
                # The ledger's customers in other currencies copy the company's details under
                # a name of their own ("Acme (EUR)"): the golden customer is made from the
                # company's records, not from those copies (unless it has nothing else).
                sources = [m for m in cluster.members if m not in copies] or cluster.members
                golden = build_golden(
                    cid, [_as_edited(state.records[m], edited) for m in sources], self._rules
                )
                values = dict(golden.values)
                lineage = {k: str(v) for k, v in golden.lineage.items()}
                display = (values.get("name") or str(cluster.members[0]))[:255]
                old = stored_customers.get(cid)
                if old is None:
                    fresh.append(
                        {
                            "id": cid,
                            "display_name": display,
                            "fields": values,
                            "lineage": lineage,
                            "created_at": now,
                            "updated_at": now,
                            "version": 1,
                        }
                    )
                elif (old.display_name, old.fields, old.lineage) != (display, values, lineage):
                    conn.execute(
                        update(_CUSTOMER)
                        .where(_CUSTOMER.c.id == cid)
                        .values(
                            display_name=display,
                            fields=values,
                            lineage=lineage,
                            updated_at=now,
                            version=old.version + 1,
                        )
                    )
                    written += 1
            if fresh:
                conn.execute(insert(_CUSTOMER), fresh)
                written += len(fresh)
            written += _write_links(conn, link_rows, stored_links, now)
            retired = _retire(conn, sorted(set(stored_customers) - used - set(fixed.values())))
            written += len(retired)
            self._ids = {**fixed, **ids}
            every = state.customers()
            links = [link for cluster in every for link in cluster.links]
            summary = MatchSummary(
                mode=mode,
                parties=len(state.records),
                changed=changed,
                removed=removed,
                customers=len(every),
                multi_record_customers=sum(1 for c in every if len(c.members) > 1),
                auto_links=sum(1 for k in links if k.method is not LinkMethod.HUMAN),
                human_links=sum(1 for k in links if k.method is LinkMethod.HUMAN),
                review_queue=len(state.review),
                customers_created=len(used - set(stored_customers)),
                customers_retired=len(retired),
                rows_written=written,
                model=model_source,
                seconds=round(time.perf_counter() - started, 3),
            )
            crash_point("match.save")
            conn.execute(
                insert(_AUDIT).values(
                    at=now,
                    actor="ledgerlink",
                    action=RUN_ACTION,
                    subject="matching",
                    details={"summary": summary.as_dict(), "model": state.model.to_json()},
                )
            )
        return summary


_CHUNK = 500


def _links_for(conn: Connection, refs: Sequence[PartyRef]) -> dict[PartyRef, StoredLink]:
    key = tuple_(_LINK.c.system, _LINK.c.object, _LINK.c.external_id)
    found: dict[PartyRef, StoredLink] = {}
    unique = sorted(set(refs))
    for start in range(0, len(unique), _CHUNK):
        chunk = [(r.system, r.object, r.id) for r in unique[start : start + _CHUNK]]
        for row in conn.execute(select(_LINK).where(key.in_(chunk))):
            link = _stored_link(row)
            found[link.ref] = link
    return found


def _customers_for(conn: Connection, customer_ids: set[str]) -> dict[str, Any]:
    columns = (
        _CUSTOMER.c.id,
        _CUSTOMER.c.display_name,
        _CUSTOMER.c.fields,
        _CUSTOMER.c.lineage,
        _CUSTOMER.c.version,
    )
    found: dict[str, Any] = {}
    ordered = sorted(customer_ids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        for row in conn.execute(select(*columns).where(_CUSTOMER.c.id.in_(chunk))):
            found[row.id] = row
    return found


def _retire(conn: Connection, candidates: Sequence[str]) -> list[str]:
    """Delete customers left without records, unless a decision names them."""
    retired: list[str] = []
    for start in range(0, len(candidates), _CHUNK):
        chunk = list(candidates[start : start + _CHUNK])
        linked = set(
            conn.execute(
                select(_LINK.c.customer_id).where(_LINK.c.customer_id.in_(chunk))
            ).scalars()
        )
        pinned = set(
            conn.execute(
                select(_DECISION.c.customer_id).where(_DECISION.c.customer_id.in_(chunk))
            ).scalars()
        )
        gone = [cid for cid in chunk if cid not in linked and cid not in pinned]
        if gone:
            conn.execute(delete(_CUSTOMER).where(_CUSTOMER.c.id.in_(gone)))
            retired.extend(gone)
    return retired


def _touched(
    state: MatchState,
    clusters_before: Mapping[str, Cluster],
    review_before: Mapping[tuple[PartyRef, PartyRef], ReviewItem],
    changed: Iterable[PartyRef],
) -> set[str]:
    """Engine clusters whose customer or link rows an incremental run must rewrite."""
    scope = {cid for cid, c in state.clusters.items() if clusters_before.get(cid) is not c}
    scope |= {cid for ref in changed if (cid := state.cluster_of.get(ref)) is not None}
    moved = {
        pair
        for pair in set(review_before) | set(state.review)
        if review_before.get(pair) is not state.review.get(pair)
    }
    for a, b in moved:
        scope |= {cid for ref in (a, b) if (cid := state.cluster_of.get(ref)) is not None}
    # The record that carries a review item depends on both customers' sizes.
    for a, b in state.review:
        ca, cb = state.cluster_of.get(a), state.cluster_of.get(b)
        if ca in scope or cb in scope:
            scope |= {c for c in (ca, cb) if c is not None}
    return scope


def _assign_ids(
    clusters: Sequence[Cluster],
    stored: Mapping[PartyRef, StoredLink],
    exists: Callable[[str], bool],
    *,
    reserved: set[str],
) -> dict[str, str]:
    """Give each cluster the stored customer id it shares most records with, else a new id.

    Ids in ``reserved`` belong to customers outside ``clusters`` and are never given;
    ``exists`` tells whether a new id is already used by a stored customer.
    """
    overlaps: list[tuple[int, str, str]] = []
    for cluster in clusters:
        counts: dict[str, int] = defaultdict(int)
        for member in cluster.members:
            link = stored.get(member)
            if link is not None and link.customer_id not in reserved:
                counts[link.customer_id] += 1
        overlaps.extend((-n, old, cluster.id) for old, n in counts.items())
    ids: dict[str, str] = {}
    used: set[str] = set()
    for _, old, cid in sorted(overlaps):
        if cid not in ids and old not in used:
            ids[cid] = old
            used.add(old)
    for cluster in clusters:
        if cluster.id in ids:
            continue
        candidate, salt = cluster.id, 0
        while candidate in used or exists(candidate):
            salt += 1
            digest = hashlib.sha256(f"{cluster.members[0]}#{salt}".encode()).hexdigest()
            candidate = "cus_" + digest[:16]
        ids[cluster.id] = candidate
        used.add(candidate)
    return ids


def _tree_links(cluster: Cluster) -> dict[PartyRef, Link]:
    """The link through which each member joined its customer (the root takes its first)."""
    adjacent: dict[PartyRef, list[Link]] = defaultdict(list)
    for link in cluster.links:
        adjacent[link.a].append(link)
        adjacent[link.b].append(link)
    root = cluster.members[0]
    joined: dict[PartyRef, Link] = {}
    if adjacent[root]:
        joined[root] = adjacent[root][0]
    seen = {root}
    queue = deque([root])
    while queue:
        ref = queue.popleft()
        for link in adjacent[ref]:
            other = link.b if link.a == ref else link.a
            if other not in seen:
                seen.add(other)
                joined[other] = link
                queue.append(other)
    return joined


def _link_rows(
    state: MatchState,
    clusters: Sequence[Cluster],
    ids: Mapping[str, str],
    stored: Mapping[PartyRef, StoredLink],
    decisions: Sequence[HumanDecision],
) -> dict[PartyRef, dict[str, Any]]:
    latest: dict[tuple[PartyRef, PartyRef], HumanDecision] = {}
    for decision in decisions:
        latest[ordered_pair(decision.a, decision.b)] = decision
    rows: dict[PartyRef, dict[str, Any]] = {}
    for cluster in clusters:
        cid = ids[cluster.id]
        joined = _tree_links(cluster)
        for member in cluster.members:
            link = joined.get(member)
            if link is None:
                rows[member] = {
                    "customer_id": cid,
                    "score": 0.0,
                    "method": StoredMethod.PROBABILISTIC.value,
                    "status": LinkStatus.LINKED.value,
                    "reasons": [{"kind": "alone"}],
                }
                continue
            other = link.b if link.a == member else link.a
            vector, weight, probability = state.pair_score(link.a, link.b)
            score = link.probability if link.probability is not None else probability
            reason: dict[str, Any] = {
                "kind": "link",
                "method": link.method.value,
                "with": str(other),
                "probability": _round(probability),
                "weight": _round(weight, 3),
                "evidence": _evidence(state.model.explain(vector)),
            }
            method = _METHODS[link.method]
            if link.method is LinkMethod.HUMAN:
                made = latest.get(ordered_pair(link.a, link.b))
                if made is not None:
                    reason.update(decided_by=made.decided_by, why=made.reason)
            previous = stored.get(member)
            if (
                previous is not None
                and previous.method == StoredMethod.CREATED.value
                and previous.customer_id == cid
            ):
                method = StoredMethod.CREATED.value  # the hub made this record for the customer
            rows[member] = {
                "customer_id": cid,
                "score": _round(score),
                "method": method,
                "status": LinkStatus.LINKED.value,
                "reasons": [reason],
            }
    for item in state.review_queue:
        _attach_review(state, item, ids, rows)
    return rows


def _attach_review(
    state: MatchState,
    item: ReviewItem,
    ids: Mapping[str, str],
    rows: dict[PartyRef, dict[str, Any]],
) -> None:
    cluster_a, cluster_b = state.cluster_for(item.a), state.cluster_for(item.b)
    if cluster_a is None or cluster_b is None:
        return
    size_a, size_b = len(cluster_a.members), len(cluster_b.members)
    carrier = item.a if (size_a, item.b) < (size_b, item.a) else item.b
    row = rows.get(carrier)
    if row is None:  # outside the customers this run rewrites
        return
    row["status"] = LinkStatus.REVIEW.value
    row["reasons"] = [
        *row["reasons"],
        {
            "kind": "review",
            "conflict": conflict_id(item.a, item.b),
            "a": str(item.a),
            "b": str(item.b),
            "customer_a": ids[cluster_a.id],
            "customer_b": ids[cluster_b.id],
            "reason": item.reason.value,
            "probability": _round(item.probability),
            "weight": _round(item.weight, 3),
            "detail": item.detail,
            "evidence": _evidence(item.evidence),
        },
    ]


def _currency_copies(conn: Connection) -> set[PartyRef]:
    """The QuickBooks customers the ledger created for a customer's other currencies."""
    from ledgerlink.sync._ledger_world import CUSTOMER_ENTITY  # sync builds on matching

    # The status is checked here, not in the query: SQLite, without statistics, would take
    # the status index and walk every done row of the outbox (every document the ledger ever
    # posted) rather than the few rows of this entity kind.
    rows = driver_rows(
        conn,
        select(_OUTBOX.c.object, _OUTBOX.c.remote_id, _OUTBOX.c.status).where(
            _OUTBOX.c.entity_kind == CUSTOMER_ENTITY,
            _OUTBOX.c.remote_id.is_not(None),
        ),
    )
    return {
        PartyRef("quickbooks", obj, str(remote)) for obj, remote, status in rows if status == "done"
    }


def _rematch(kept: PartyRecord | None, landed: PartyRecord) -> bool:
    """Whether a landed party must be matched again: new, or changed in more than its
    modification time. A write of other fields (the hub's balances, MRR, billing status) moves
    only that; matching does not read it, and survivorship ranks a record by when its details
    last changed (:func:`_edited`), which such a write does not move either."""
    if kept is None:
        return True
    if kept.updated_at == landed.updated_at:
        return kept != landed
    return replace(landed, updated_at=kept.updated_at) != kept


def content_digest(record: PartyRecord) -> str:
    """Digest of the company details survivorship takes from ``record``: name, e-mails,
    phones, website, address and tax id (not its references to other records, which the
    hub's own writes of ids change)."""
    details = (
        record.name,
        record.emails,
        record.phones,
        record.website,
        record.country,
        record.street,
        record.city,
        record.region,
        record.postal_code,
        record.tax_id,
    )
    return hashlib.sha256(repr(details).encode()).hexdigest()


def _edited(
    state: MatchState,
    rows: Mapping[PartyRef, dict[str, Any]],
    stored: Mapping[PartyRef, StoredLink],
) -> dict[PartyRef, tuple[str | None, datetime | None]]:
    """Per linked record: the digest of its details and when they last changed (also set on
    its link row in ``rows``).

    A record's modification time moves with any write to it, the hub's too: an open balance
    written to one of a customer's two Salesforce Accounts made it the most recently updated
    and moved the golden phone to it, whose echo moved it back (values going back and forth
    between the systems). So survivorship ranks a record by the modification time at which
    its company details last changed, kept with its link: unchanged details keep the stored
    time, changed (or first seen) details take the record's own.
    """
    edited: dict[PartyRef, tuple[str | None, datetime | None]] = {}
    for ref in rows:
        record = state.records.get(ref)
        if record is None:
            continue
        digest = content_digest(record)
        old = stored.get(ref)
        if old is not None and old.content_hash == digest and old.content_changed_at is not None:
            edited[ref] = (digest, old.content_changed_at)
        else:
            edited[ref] = (digest, record.updated_at)
    for ref, row in rows.items():  # stored with the link; a row without a record keeps its own
        old = stored.get(ref)
        kept = (old.content_hash, old.content_changed_at) if old is not None else (None, None)
        row["content_hash"], row["content_changed_at"] = edited.get(ref, kept)
    return edited


def _as_edited(
    record: PartyRecord, edited: Mapping[PartyRef, tuple[str | None, datetime | None]]
) -> PartyRecord:
    """``record`` with survivorship's recency: when its details last changed."""
    found = edited.get(record.ref)
    if found is None or found[1] == record.updated_at:
        return record
    return replace(record, updated_at=found[1])


def _write_links(
    conn: Connection,
    rows: Mapping[PartyRef, dict[str, Any]],
    stored: Mapping[PartyRef, StoredLink],
    now: datetime,
) -> int:
    inserts: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    written = 0
    for ref, row in rows.items():
        old = stored.get(ref)
        if old is None:
            inserts.append(
                {
                    "system": ref.system,
                    "object": ref.object,
                    "external_id": ref.id,
                    "created_at": now,
                    "updated_at": now,
                    **row,
                }
            )
            continue
        current = {
            "customer_id": old.customer_id,
            "score": old.score,
            "method": old.method,
            "status": old.status,
            "reasons": old.reasons,
            "content_hash": old.content_hash,
            "content_changed_at": old.content_changed_at,
        }
        if current != row:
            updates.setdefault(tuple(sorted(row)), []).append(
                {"link_id": old.id, "updated_at": now, **row}
            )
    for batch in updates.values():  # one statement per set of columns, executed many
        conn.execute(update(_LINK).where(_LINK.c.id == bindparam("link_id")), batch)
        written += len(batch)
    if inserts:
        conn.execute(insert(_LINK), inserts)
        written += len(inserts)
    gone = [link.id for ref, link in stored.items() if ref not in rows]
    if gone:
        conn.execute(delete(_LINK).where(_LINK.c.id.in_(gone)))
        written += len(gone)
    return written


@functools.cache
def starter_model() -> MatchModel:
    """Return the model fitted on generated three-system data (deterministic, about 2 s).

    EM needs many true matches among the candidate pairs; a store with a few hundred parties
    (a trial, the sandboxes) has too few and the fit goes wrong (exact names weighing against
    a match). Until the store holds :data:`MIN_FIT_PARTIES` parties, runs use this model;
    ``ledgerlink match run --refit`` fits on the store's own parties instead.

    Returns:
        The fitted model.
    """
    dataset = generate_parties(STARTER_COMPANIES, seed=2026)
    return match_all(dataset.records).model


def run_matching(
    engine: Engine,
    mappings: MappingSet,
    *,
    now: datetime,
    config: MatchConfig | None = None,
    refit: bool = False,
    model: MatchModel | None = None,
    progress: ProgressCallback | None = None,
) -> MatchSummary:
    """Match every party in the store once and save customers, links and the review queue.

    The state is rebuilt from the tables (see :class:`Matcher` for the incremental form).

    Args:
        engine: the store's engine.
        mappings: the loaded mappings.
        now: the time of this run (timezone-aware UTC).
        config: thresholds; defaults when None.
        refit: fit the model again instead of reusing the stored one.
        model: use this model instead of the stored one.
        progress: called as work advances.

    Returns:
        The run's summary.

    Raises:
        ValueError: ``now`` is naive.
    """
    return Matcher(engine, mappings, config=config, refit=refit, model=model).run(
        now=now, progress=progress
    )


# -- merging and splitting customers ---------------------------------------------------------

MERGE_ACTION = "customer.merge"
SPLIT_ACTION = "customer.split"
UNDO_ACTION = "customer.undo"
_CANNOT_LINK = (StoredDecision.SPLIT.value, StoredDecision.NEVER_LINK.value)


@dataclass(frozen=True, slots=True)
class MergePlan:
    """What merging two customers will do, checked against the decisions in force.

    Attributes:
        survivor: the customer that keeps its id (the older one; the smaller id on a tie).
        absorbed: the customer merged into it, whose id disappears.
        survivor_name: display name of the survivor.
        absorbed_name: display name of the absorbed customer.
        anchor: the survivor's record that every absorbed record is linked to.
        survivor_records: the survivor's records.
        absorbed_records: the absorbed customer's records (one ``link`` decision each).
    """

    survivor: str
    absorbed: str
    survivor_name: str
    absorbed_name: str
    anchor: PartyRef
    survivor_records: tuple[PartyRef, ...]
    absorbed_records: tuple[PartyRef, ...]


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """What detaching one record from its customer will do.

    Attributes:
        customer_id: the customer the record leaves (it keeps its id and other records).
        customer_name: its display name.
        record: the record detached.
        others: the customer's other records (one ``split`` decision each).
    """

    customer_id: str
    customer_name: str
    record: PartyRef
    others: tuple[PartyRef, ...]


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """A merge, split or undo as recorded and applied.

    Attributes:
        operation: id of its ``audit_log`` row; :func:`undo_customer_change` takes it.
        action: ``merge``, ``split`` or ``undo``.
        customer_id: the surviving customer (merge), the customer split (split), or the
            customer of the undone change.
        decisions: decisions recorded by a merge or split, or revoked by an undo.
        kept: identical decisions that were already in force; recorded by someone else,
            they are not recorded again and an undo leaves them in force.
        placement: each record concerned -> its customer before and after the change.
        summary: the matching run that applied the change.
    """

    operation: int
    action: str
    customer_id: str
    decisions: tuple[int, ...]
    kept: tuple[int, ...]
    placement: dict[PartyRef, tuple[str, str | None]]
    summary: MatchSummary


def _customer_row(conn: Connection, customer_id: str) -> Any:
    row = conn.execute(
        select(_CUSTOMER.c.id, _CUSTOMER.c.display_name, _CUSTOMER.c.created_at).where(
            _CUSTOMER.c.id == customer_id
        )
    ).first()
    if row is None:
        msg = f"no customer {customer_id}"
        raise UnknownReferenceError(msg)
    return row


def _records_of(conn: Connection, customer_id: str) -> tuple[PartyRef, ...]:
    refs = tuple(link.ref for link in load_links(conn, customer_id=customer_id))
    if not refs:
        msg = f"customer {customer_id} holds no records; run `ledgerlink match run` first"
        raise MatchStoreError(msg)
    return refs


def _decision_sentence(row: Any) -> str:
    left = _ref(row.left_system, row.left_object, row.left_external_id)
    right = _ref(row.right_system, row.right_object, row.right_external_id)
    kind = _FROM_STORED[row.decision].value
    return f"decision {row.id} ({kind} {left} {right}, by {row.actor}: {row.reason!r})"


def _decisions_between(
    conn: Connection, left: Iterable[PartyRef], right: Iterable[PartyRef], kinds: Sequence[str]
) -> list[Any]:
    """Decisions of ``kinds`` in force between a record of ``left`` and one of ``right``."""
    side_a, side_b = set(left), set(right)
    rows = conn.execute(
        select(_DECISION)
        .where(
            _DECISION.c.revoked_at.is_(None),
            _DECISION.c.right_external_id.is_not(None),
            _DECISION.c.decision.in_(kinds),
        )
        .order_by(_DECISION.c.id)
    )
    found = []
    for row in rows:
        x = _ref(row.left_system, row.left_object, row.left_external_id)
        y = _ref(row.right_system, row.right_object, row.right_external_id)
        if (x in side_a and y in side_b) or (x in side_b and y in side_a):
            found.append(row)
    return found


def _plan_merge(conn: Connection, first: str, second: str) -> MergePlan:
    if first == second:
        msg = f"{first} is one customer; give two different customers to merge"
        raise MatchStoreError(msg)
    rows = sorted(
        (_customer_row(conn, first), _customer_row(conn, second)),
        key=lambda r: (r.created_at, r.id),
    )
    survivor, absorbed = rows
    kept, merged = _records_of(conn, survivor.id), _records_of(conn, absorbed.id)
    blocking = _decisions_between(conn, kept, merged, _CANNOT_LINK)
    if blocking:
        names = "; ".join(_decision_sentence(row) for row in blocking)
        ids = " ".join(str(row.id) for row in blocking)
        msg = (
            f"refused: {names} keeps records of {survivor.id} and {absorbed.id} apart; "
            f"revoke it first with `ledgerlink conflicts revoke ID` (ID: {ids})"
        )
        raise DecisionConflictError(msg)
    return MergePlan(
        survivor=survivor.id,
        absorbed=absorbed.id,
        survivor_name=survivor.display_name,
        absorbed_name=absorbed.display_name,
        anchor=kept[0],
        survivor_records=kept,
        absorbed_records=merged,
    )


def plan_merge(engine: Engine, first: str, second: str) -> MergePlan:
    """Check that two customers can be merged and say what a merge will do; write nothing.

    Args:
        engine: the store's engine.
        first: one customer id.
        second: the other customer id.

    Returns:
        The plan: which id survives, and the link decisions a merge records.

    Raises:
        UnknownReferenceError: a customer does not exist.
        MatchStoreError: the ids are the same customer, or a customer holds no records.
        DecisionConflictError: a split or never-link decision in force keeps a record of
            one customer apart from a record of the other.
    """
    with engine.connect() as conn:
        return _plan_merge(conn, first, second)


def _plan_split(conn: Connection, customer_id: str, record: PartyRef) -> SplitPlan:
    row = _customer_row(conn, customer_id)
    link = _links_for(conn, [record]).get(record)
    if link is None:
        msg = f"no customer holds {record}; run `ledgerlink match run` after landing it"
        raise UnknownReferenceError(msg)
    if link.customer_id != customer_id:
        msg = f"{record} is not a record of {customer_id} (it belongs to {link.customer_id})"
        raise MatchStoreError(msg)
    others = tuple(ref for ref in _records_of(conn, customer_id) if ref != record)
    if not others:
        msg = f"{record} is the only record of {customer_id}; there is nothing to split it from"
        raise MatchStoreError(msg)
    joined = _decisions_between(conn, [record], others, (StoredDecision.LINK.value,))
    if joined:
        names = "; ".join(_decision_sentence(row) for row in joined)
        ids = " ".join(str(row.id) for row in joined)
        msg = (
            f"refused: {names} joins {record} to {customer_id}; revoke it first with "
            f"`ledgerlink conflicts revoke ID` (ID: {ids}), or undo the merge that made it "
            "(`ledgerlink customer history`)"
        )
        raise DecisionConflictError(msg)
    return SplitPlan(customer_id, row.display_name, record, others)


def plan_split(engine: Engine, customer_id: str, record: PartyRef) -> SplitPlan:
    """Check that a record can be detached from its customer and say how; write nothing.

    Args:
        engine: the store's engine.
        customer_id: the customer.
        record: the record to detach.

    Returns:
        The plan: the split decisions a split records.

    Raises:
        UnknownReferenceError: the customer does not exist, or no customer holds the record.
        MatchStoreError: the record belongs to another customer, or is its customer's only one.
        DecisionConflictError: a link decision in force joins the record to another record
            of the customer.
    """
    with engine.connect() as conn:
        return _plan_split(conn, customer_id, record)


def _placement(
    engine: Engine, before: Mapping[PartyRef, str]
) -> dict[PartyRef, tuple[str, str | None]]:
    with engine.connect() as conn:
        after = _links_for(conn, list(before))
    return {
        ref: (old, link.customer_id if (link := after.get(ref)) else None)
        for ref, old in sorted(before.items())
    }


def _audit_change(
    conn: Connection,
    action: str,
    subject: str,
    *,
    actor: str,
    now: datetime,
    details: dict[str, Any],
) -> int:
    return int(
        conn.execute(
            insert(_AUDIT)
            .values(at=now, actor=actor, action=action, subject=subject, details=details)
            .returning(_AUDIT.c.id)
        ).scalar_one()
    )


def _check_request(reason: str, now: datetime) -> None:
    if now.tzinfo is None:
        msg = "now must be timezone-aware"
        raise ValueError(msg)
    if not reason.strip():
        msg = "give a reason: merges and splits are audited"
        raise MatchStoreError(msg)


def merge_customers(
    engine: Engine,
    mappings: MappingSet,
    first: str,
    second: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    config: MatchConfig | None = None,
    progress: ProgressCallback | None = None,
) -> CustomerChange:
    """Merge two customers into the older one, as a person's decision, and apply it at once.

    Every record of the customer merged away gets a ``link`` decision with one record of the
    survivor (its *anchor*). Links are applied before any other evidence and their records
    are vouched for, so no later run separates them; the survivor's own records stay joined
    by the evidence that joined them. The absorbed customer's links are moved to the
    survivor in the same transaction, so that the run that follows keeps the survivor's id
    and retires the other one. The decisions, the move and an audit row (action
    ``customer.merge``) are one transaction: a refusal writes nothing. Then one full
    matching run (as ``ledgerlink match run``) applies it, and any other pending change.

    Args:
        engine: the store's engine.
        mappings: the loaded mappings, for the matching run.
        first: one customer id.
        second: the other customer id.
        actor: who merges.
        reason: why, in their words (kept with every decision).
        now: when (timezone-aware UTC).
        config: thresholds of the matching run; the defaults when None.
        progress: called as the matching run advances.

    Returns:
        The change: the audit row id (to undo it), the decisions and where each record went.

    Raises:
        ValueError: ``now`` is naive.
        UnknownReferenceError: a customer does not exist.
        MatchStoreError: same customer twice, a customer without records, or no reason.
        DecisionConflictError: a split or never-link decision keeps the two customers'
            records apart, or a link would contradict other decisions in force.
    """
    _check_request(reason, now)
    with for_writing(engine).begin() as conn:
        plan = _plan_merge(conn, first, second)
        recorded: list[int] = []
        kept: list[int] = []
        for record in plan.absorbed_records:
            decision_id, created = _record_in(
                conn, DecisionKind.LINK, plan.anchor, record, actor=actor, reason=reason, now=now
            )
            (recorded if created else kept).append(decision_id)
        conn.execute(
            update(_LINK)
            .where(_LINK.c.customer_id == plan.absorbed)
            .values(customer_id=plan.survivor, updated_at=now)
        )
        absorbed_created = _customer_row(conn, plan.absorbed).created_at
        operation = _audit_change(
            conn,
            MERGE_ACTION,
            f"customer:{plan.survivor}",
            actor=actor,
            now=now,
            details={
                "survivor": plan.survivor,
                "absorbed": plan.absorbed,
                "absorbed_name": plan.absorbed_name,
                "absorbed_created_at": absorbed_created.isoformat(),
                "anchor": str(plan.anchor),
                "absorbed_records": [str(r) for r in plan.absorbed_records],
                "decisions": recorded,
                "kept": kept,
                "reason": reason,
            },
        )
    _log.info("customer.merge", survivor=plan.survivor, absorbed=plan.absorbed, op=operation)
    summary = run_matching(engine, mappings, now=now, config=config, progress=progress)
    before = dict.fromkeys(plan.survivor_records, plan.survivor)
    before.update(dict.fromkeys(plan.absorbed_records, plan.absorbed))
    return CustomerChange(
        operation=operation,
        action="merge",
        customer_id=plan.survivor,
        decisions=tuple(recorded),
        kept=tuple(kept),
        placement=_placement(engine, before),
        summary=summary,
    )


def split_record(
    engine: Engine,
    mappings: MappingSet,
    customer_id: str,
    record: PartyRef,
    *,
    actor: str,
    reason: str,
    now: datetime,
    config: MatchConfig | None = None,
    progress: ProgressCallback | None = None,
) -> CustomerChange:
    """Detach one record from its customer, as a person's decision, and apply it at once.

    The record gets a ``split`` decision with each of the customer's other records, so no
    later run puts it back with any of them; it becomes a customer of its own, or joins
    another customer when the evidence says so. Its link row is removed in the same
    transaction, so the customer keeps its id and the record takes a new one (or the id of
    the customer it joins). Decisions, link removal and an audit row (action
    ``customer.split``) are one transaction: a refusal writes nothing. Then one full
    matching run applies it.

    Args:
        engine: the store's engine.
        mappings: the loaded mappings, for the matching run.
        customer_id: the customer the record leaves.
        record: the record to detach.
        actor: who splits.
        reason: why, in their words (kept with every decision).
        now: when (timezone-aware UTC).
        config: thresholds of the matching run; the defaults when None.
        progress: called as the matching run advances.

    Returns:
        The change: the audit row id (to undo it), the decisions and where the records went.

    Raises:
        ValueError: ``now`` is naive.
        UnknownReferenceError: the customer does not exist, or no customer holds the record.
        MatchStoreError: the record belongs to another customer, is the only one of its
            customer, or no reason was given.
        DecisionConflictError: a link decision in force joins the record to one of the
            others (revoke it first).
    """
    _check_request(reason, now)
    with for_writing(engine).begin() as conn:
        plan = _plan_split(conn, customer_id, record)
        recorded: list[int] = []
        kept: list[int] = []
        for other in plan.others:
            decision_id, created = _record_in(
                conn, DecisionKind.SPLIT, record, other, actor=actor, reason=reason, now=now
            )
            (recorded if created else kept).append(decision_id)
        conn.execute(
            delete(_LINK).where(
                _LINK.c.system == record.system,
                _LINK.c.object == record.object,
                _LINK.c.external_id == record.id,
            )
        )
        operation = _audit_change(
            conn,
            SPLIT_ACTION,
            f"customer:{customer_id}",
            actor=actor,
            now=now,
            details={
                "customer": customer_id,
                "record": str(record),
                "others": [str(r) for r in plan.others],
                "decisions": recorded,
                "kept": kept,
                "reason": reason,
            },
        )
    _log.info("customer.split", customer=customer_id, record=str(record), op=operation)
    summary = run_matching(engine, mappings, now=now, config=config, progress=progress)
    before = dict.fromkeys((record, *plan.others), customer_id)
    return CustomerChange(
        operation=operation,
        action="split",
        customer_id=customer_id,
        decisions=tuple(recorded),
        kept=tuple(kept),
        placement=_placement(engine, before),
        summary=summary,
    )


def undo_customer_change(
    engine: Engine,
    mappings: MappingSet,
    operation: int,
    *,
    actor: str,
    reason: str,
    now: datetime,
    config: MatchConfig | None = None,
    progress: ProgressCallback | None = None,
) -> CustomerChange:
    """Undo a merge or split: revoke the decisions it recorded and apply that at once.

    Decisions that the change found already in force, and decisions revoked since, are left
    as they are. Undoing a merge also brings back the customer merged away, with its id,
    holding the records it had (unless they have moved to another customer since), so that
    the run that follows keeps both ids when the evidence keeps the customers apart.
    Revocations, restored rows and an audit row (action ``customer.undo``) are one
    transaction; then one full matching run applies them.

    Args:
        engine: the store's engine.
        mappings: the loaded mappings, for the matching run.
        operation: the audit row id of the merge or split (printed by it).
        actor: who undoes.
        reason: why.
        now: when (timezone-aware UTC).
        config: thresholds of the matching run; the defaults when None.
        progress: called as the matching run advances.

    Returns:
        The change, with the revoked decisions.

    Raises:
        ValueError: ``now`` is naive.
        UnknownReferenceError: no merge or split has this id.
        MatchStoreError: it was already undone, or no reason was given.
    """
    _check_request(reason, now)
    with for_writing(engine).begin() as conn:
        row = conn.execute(
            select(_AUDIT).where(
                _AUDIT.c.id == operation, _AUDIT.c.action.in_((MERGE_ACTION, SPLIT_ACTION))
            )
        ).first()
        if row is None:
            msg = f"no customer merge or split {operation} (see `ledgerlink customer history`)"
            raise UnknownReferenceError(msg)
        subject = f"audit_log:{operation}"
        done = conn.execute(
            select(_AUDIT.c.id).where(_AUDIT.c.action == UNDO_ACTION, _AUDIT.c.subject == subject)
        ).first()
        if done is not None:
            msg = f"change {operation} was already undone (change {done.id})"
            raise MatchStoreError(msg)
        details: dict[str, Any] = dict(row.details or {})
        revoked: list[int] = []
        for decision_id in details.get("decisions", []):
            state = conn.execute(
                select(_DECISION.c.revoked_at).where(_DECISION.c.id == decision_id)
            ).first()
            if state is not None and state.revoked_at is None:
                _revoke_in(conn, int(decision_id), actor=actor, now=now, reason=reason)
                revoked.append(int(decision_id))
        if row.action == MERGE_ACTION:
            customer_id = str(details["survivor"])
            refs = [PartyRef.parse(r) for r in details["absorbed_records"]]
        else:
            customer_id = str(details["customer"])
            refs = [PartyRef.parse(details["record"])]
        with_before = _links_for(conn, refs)
        if row.action == MERGE_ACTION:
            _restore_absorbed(conn, details, refs, now)
        undo = _audit_change(
            conn,
            UNDO_ACTION,
            subject,
            actor=actor,
            now=now,
            details={
                "undone": row.action,
                "customer": customer_id,
                "decisions": revoked,
                "reason": reason,
            },
        )
    _log.info("customer.undo", change=operation, op=undo)
    summary = run_matching(engine, mappings, now=now, config=config, progress=progress)
    before = {ref: link.customer_id for ref, link in with_before.items()}
    return CustomerChange(
        operation=undo,
        action="undo",
        customer_id=customer_id,
        decisions=tuple(revoked),
        kept=(),
        placement=_placement(engine, before),
        summary=summary,
    )


def _restore_absorbed(
    conn: Connection, details: Mapping[str, Any], refs: Sequence[PartyRef], now: datetime
) -> None:
    """Bring back a merged-away customer id, holding its records that are still in the survivor.

    The golden fields are left empty here; the matching run that follows fills them.
    """
    absorbed, survivor = str(details["absorbed"]), str(details["survivor"])
    moving = [link for link in _links_for(conn, refs).values() if link.customer_id == survivor]
    if not moving:
        return
    exists = conn.execute(select(_CUSTOMER.c.id).where(_CUSTOMER.c.id == absorbed)).first()
    if exists is None:
        conn.execute(
            insert(_CUSTOMER).values(
                id=absorbed,
                display_name=str(details.get("absorbed_name", ""))[:255],
                fields={},
                lineage={},
                created_at=datetime.fromisoformat(str(details["absorbed_created_at"])),
                updated_at=now,
                version=1,
            )
        )
    conn.execute(
        update(_LINK)
        .where(_LINK.c.id.in_([link.id for link in moving]))
        .values(customer_id=absorbed, updated_at=now)
    )


def list_customer_changes(engine: Engine, *, customer_id: str | None = None) -> list[AuditLog]:
    """List merges, splits and undos, newest first, to find the one to undo.

    Args:
        engine: the store's engine.
        customer_id: only changes that name this customer (survivor, absorbed or split).

    Returns:
        Their ``audit_log`` rows; ``id`` is what :func:`undo_customer_change` takes.
    """
    actions = (MERGE_ACTION, SPLIT_ACTION, UNDO_ACTION)
    query = select(_AUDIT).where(_AUDIT.c.action.in_(actions)).order_by(_AUDIT.c.id.desc())
    with engine.connect() as conn:
        rows = [AuditLog.model_validate(dict(row._mapping)) for row in conn.execute(query)]
    if customer_id is None:
        return rows
    keys = ("survivor", "absorbed", "customer")
    return [r for r in rows if customer_id in {str(r.details.get(k)) for k in keys}]
