"""Clustering parties into customers, full and incremental, with a review queue.

Evidence is applied in a fixed order, strongest first:

1. **Human decisions.** ``link`` joins two parties; ``split`` and ``never-link`` keep them
   apart (a cannot-link constraint that also stops any chain of other links from joining their
   customers). The latest decision on a pair wins and ``revoke`` withdraws it, so decisions are
   reversible and keep who, when and why. Automation never overrides them; human links that
   contradict each other go to the review queue instead of being applied.
2. **Cross-references** (a Stripe customer's metadata naming a Salesforce Account, a link the
   hub wrote). Linked unless strong contrary evidence says otherwise: a different tax id, or a
   dissimilar name together with a different country or a match probability below the review
   threshold. A contradicted cross-reference goes to review.
3. **Scored pairs**, by decreasing match probability: at or above ``link_threshold`` linked,
   between ``review_threshold`` and it reviewed, below kept apart. Hard negatives are kept
   apart whatever the score: a different tax id, or the same or a very similar name in another
   country with no shared domain, address or phone.

Every automatic link is checked transitively: joining two customers must not put together two
parties that clearly differ (a human cannot-link, a hard negative, or dissimilar names with a
match probability below the review threshold). Such a link goes to review instead. Parties a
person linked are vouched for: their differences do not block further links. So are the records
the hub itself created for a customer (``created``): they belong to it by construction, and a
name they had to take (a QuickBooks customer for another currency, ``Acme (JPY)``) does not keep
the customer's other records apart.

Clustering depends only on the pairs inside a connected component of the "linkable" graph
(pairs at or above the review threshold, cross-references, human links). :func:`match_new`
therefore re-clusters only the components that new or changed records touch, and gives the
same customers as a full run on the same records with the same model.
"""

from __future__ import annotations

import enum
import hashlib
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ledgerlink.matching.block import BlockIndex, name_key, ordered_pair
from ledgerlink.matching.normalize import NormalizedParty, normalize_party
from ledgerlink.matching.party import PartyRecord, PartyRef
from ledgerlink.matching.score import (
    FIELDS,
    Evidence,
    MatchModel,
    compare,
    estimate_model,
    pair_country,
)

__all__ = [
    "Cluster",
    "DecisionKind",
    "HumanDecision",
    "Link",
    "LinkMethod",
    "MatchConfig",
    "MatchState",
    "ReviewItem",
    "ReviewReason",
    "find_decision_conflict",
    "match_all",
    "match_new",
]

_NAME, _DOMAIN, _EMAIL, _PHONE, _TAX, _LOCATION = range(len(FIELDS))
_OTHER_COUNTRY = 0  # location level: both countries known and different


class DecisionKind(enum.StrEnum):
    """What a person decided about a pair of parties."""

    LINK = "link"
    SPLIT = "split"
    NEVER_LINK = "never-link"
    REVOKE = "revoke"


class LinkMethod(enum.StrEnum):
    """Which evidence joined two parties, strongest first."""

    HUMAN = "human"
    XREF = "xref"
    SCORE = "score"


class ReviewReason(enum.StrEnum):
    """Why a pair waits for a person."""

    UNCERTAIN_SCORE = "uncertain-score"
    CONTRADICTED_XREF = "contradicted-xref"
    TRANSITIVE_CONFLICT = "transitive-conflict"
    COUNTRY_CONFLICT = "country-conflict"
    DECISION_CONFLICT = "decision-conflict"


@dataclass(frozen=True, slots=True)
class HumanDecision:
    """An audited decision about a pair of parties.

    Attributes:
        kind: link, split, never-link, or revoke (withdraws the earlier decision on the pair).
        a: one party.
        b: the other party.
        decided_by: who decided.
        decided_at: when (timezone-aware UTC); the latest decision on a pair wins.
        reason: why, in the person's words.
    """

    kind: DecisionKind
    a: PartyRef
    b: PartyRef
    decided_by: str
    decided_at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Thresholds and limits of a matching run.

    Attributes:
        link_threshold: match probability at or above which a pair is linked automatically.
        review_threshold: probability at or above which a pair not linked goes to review.
        max_block_size: blocks with more parties are compared by sorted neighbourhood.
        neighbourhood: in a block above ``max_block_size``, how many parties on each side
            (in name order) a party is compared with; 0 leaves such blocks out.
    """

    link_threshold: float = 0.95
    review_threshold: float = 0.50
    max_block_size: int = 20
    neighbourhood: int = 5

    def __post_init__(self) -> None:
        if not 0.0 < self.review_threshold <= self.link_threshold <= 1.0:
            msg = "thresholds must satisfy 0 < review_threshold <= link_threshold <= 1"
            raise ValueError(msg)
        if self.max_block_size < 2:
            msg = "max_block_size must be at least 2"
            raise ValueError(msg)
        if self.neighbourhood < 0:
            msg = "neighbourhood must not be negative"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Link:
    """One piece of evidence that joined two parties of a customer."""

    a: PartyRef
    b: PartyRef
    method: LinkMethod
    probability: float | None


@dataclass(frozen=True, slots=True)
class Cluster:
    """A customer: the parties that are one company, and the links that joined them.

    Attributes:
        id: stable customer id (kept across runs while the customer keeps its members).
        members: the parties, sorted.
        links: the links that joined them (a spanning tree of the customer).
    """

    id: str
    members: tuple[PartyRef, ...]
    links: tuple[Link, ...]

    @property
    def method(self) -> LinkMethod | None:
        """The weakest method among the links (None for a one-party customer)."""
        order = list(LinkMethod)
        return max((link.method for link in self.links), key=order.index, default=None)


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A pair waiting for a person, with the evidence for and against.

    Attributes:
        a: one party.
        b: the other party.
        reason: why it is in the queue.
        probability: the pair's match probability.
        weight: the pair's match weight in bits.
        evidence: each field's level and weight, strongest first.
        detail: a sentence for the reviewer.
    """

    a: PartyRef
    b: PartyRef
    reason: ReviewReason
    probability: float
    weight: float
    evidence: tuple[Evidence, ...]
    detail: str


@dataclass(slots=True)
class _Constraints:
    must_link: list[HumanDecision] = field(default_factory=list)
    cannot_link: set[tuple[PartyRef, PartyRef]] = field(default_factory=set)
    partners: dict[PartyRef, set[PartyRef]] = field(default_factory=lambda: defaultdict(set))
    vouched: set[PartyRef] = field(default_factory=set)


def _active_constraints(decisions: Iterable[HumanDecision]) -> _Constraints:
    latest: dict[tuple[PartyRef, PartyRef], HumanDecision] = {}
    for decision in sorted(decisions, key=lambda d: (d.decided_at, d.a, d.b)):
        latest[ordered_pair(decision.a, decision.b)] = decision
    constraints = _Constraints()
    for pair, decision in sorted(latest.items(), key=lambda kv: (kv[1].decided_at, kv[0])):
        if decision.kind is DecisionKind.LINK:
            constraints.must_link.append(decision)
            constraints.vouched.update(pair)
        elif decision.kind in (DecisionKind.SPLIT, DecisionKind.NEVER_LINK):
            constraints.cannot_link.add(pair)
        else:
            continue
        constraints.partners[pair[0]].add(pair[1])
        constraints.partners[pair[1]].add(pair[0])
    return constraints


class MatchState:
    """Everything a run knows: parties, blocking index, model, decisions, customers, queue.

    Built by :func:`match_all` and updated in place by :func:`match_new`.
    """

    def __init__(self, config: MatchConfig, model: MatchModel) -> None:
        self.config = config
        self.model = model
        self.parties: dict[PartyRef, NormalizedParty] = {}
        self.records: dict[PartyRef, PartyRecord] = {}
        self.index = BlockIndex(config.max_block_size, config.neighbourhood)
        self.referenced_by: dict[PartyRef, set[PartyRef]] = defaultdict(set)
        self.names = _NameFrequency(self.index)
        self.decisions: list[HumanDecision] = []
        self.clusters: dict[str, Cluster] = {}
        self.cluster_of: dict[PartyRef, str] = {}
        self.review: dict[tuple[PartyRef, PartyRef], ReviewItem] = {}
        self.compared_pairs = 0
        self.created: frozenset[PartyRef] = frozenset()
        """Records the hub created for a customer: vouched for, like records a person linked."""

    @property
    def review_queue(self) -> list[ReviewItem]:
        """The review queue, most likely matches first."""
        return sorted(self.review.values(), key=lambda r: (-r.probability, r.a, r.b))

    def customers(self) -> list[Cluster]:
        """The customers, sorted by id."""
        return [self.clusters[cid] for cid in sorted(self.clusters)]

    def cluster_for(self, ref: PartyRef) -> Cluster | None:
        """Return the customer a party belongs to, or None for an unknown party."""
        cid = self.cluster_of.get(ref)
        return None if cid is None else self.clusters[cid]

    # -- indexing ------------------------------------------------------------------------

    def _same_name(self, party: NormalizedParty) -> set[PartyRef]:
        """Return the parties that share a party's name.

        Whether a name is repeated within a system changes with every party that takes or
        drops it, and with it the level of every exact-name comparison of those parties; an
        incremental run examines them again.
        """
        return set() if party.name is None else set(self.index.members(name_key(party.name)))

    def _put(self, record: PartyRecord) -> set[PartyRef]:
        disturbed: set[PartyRef] = set()
        old = self.parties.get(record.ref)
        if old is not None:
            for target in old.xrefs:
                self.referenced_by[target].discard(record.ref)
            disturbed |= self._same_name(old)
        party = normalize_party(record)
        self.parties[record.ref] = party
        self.records[record.ref] = record
        for target in party.xrefs:
            self.referenced_by[target].add(record.ref)
        disturbed |= self.index.add(party)
        return disturbed | self._same_name(party)

    def _drop(self, ref: PartyRef) -> set[PartyRef]:
        old = self.parties.pop(ref, None)
        self.records.pop(ref, None)
        disturbed: set[PartyRef] = set()
        if old is not None:
            for target in old.xrefs:
                self.referenced_by[target].discard(ref)
            disturbed = self._same_name(old)
        return disturbed | self.index.remove(ref)

    def compare(self, a: PartyRef, b: PartyRef) -> tuple[int, ...]:
        """Compare two known parties (names repeated within a system weigh less)."""
        return compare(self.parties[a], self.parties[b], self.names)

    # -- scoring -------------------------------------------------------------------------

    def pair_score(self, a: PartyRef, b: PartyRef) -> tuple[tuple[int, ...], float, float]:
        """Compare two known parties: their comparison vector, match weight and probability."""
        vector = self.compare(a, b)
        weight = self.model.weight(vector)
        return vector, weight, self.model.probability(vector)

    def _linkable_neighbours(
        self,
        ref: PartyRef,
        constraints: _Constraints,
        edges: dict[tuple[PartyRef, PartyRef], float],
    ) -> set[PartyRef]:
        neighbours: set[PartyRef] = set()
        for other in self.index.candidates(ref):
            pair = ordered_pair(ref, other)
            if pair not in edges:
                self.compared_pairs += 1
                edges[pair] = self.pair_score(*pair)[2]
            if edges[pair] >= self.config.review_threshold:
                neighbours.add(other)
        party = self.parties[ref]
        neighbours.update(t for t in party.xrefs if t in self.parties)
        neighbours.update(self.referenced_by.get(ref, ()))
        neighbours.update(p for p in constraints.partners.get(ref, ()) if p in self.parties)
        neighbours.discard(ref)
        return neighbours

    # -- clustering ----------------------------------------------------------------------

    def _recluster(
        self,
        refs: set[PartyRef],
        edges: dict[tuple[PartyRef, PartyRef], float],
        constraints: _Constraints,
    ) -> None:
        old_ids = {self.cluster_of[r] for r in refs if r in self.cluster_of}
        old_members = {cid: set(self.clusters[cid].members) for cid in old_ids}
        for cid in old_ids:
            for member in self.clusters.pop(cid).members:
                self.cluster_of.pop(member, None)
        for pair in [p for p in self.review if p[0] in refs or p[1] in refs]:
            del self.review[pair]
        builder = _ClusterBuilder(self, refs, constraints)
        builder.apply_decisions()
        builder.apply_xrefs()
        scored = sorted(
            (
                (-prob, pair)
                for pair, prob in edges.items()
                if prob >= self.config.review_threshold and pair[0] in refs and pair[1] in refs
            ),
        )
        for neg_prob, pair in scored:
            builder.apply_score(pair, -neg_prob)
        taken = set(self.clusters)
        old_of = {member: cid for cid, old in old_members.items() for member in old}
        for members, links in builder.result():
            cid = _choose_id(members, old_of, taken)
            taken.add(cid)
            self.clusters[cid] = Cluster(cid, tuple(sorted(members)), tuple(links))
            for member in members:
                self.cluster_of[member] = cid
        for item in builder.review_items():
            self.review[ordered_pair(item.a, item.b)] = item


class _NameFrequency:
    """Which shared names other companies carry too, read from the blocking index.

    One company normally has one record per system, so a name that a system holds on two
    records, at least one of them outside the pair being compared, belongs to several
    companies (or to a duplicate) there, and agreeing on it is weaker evidence. Records known
    to be in another country than the pair do not count: the same name abroad is told apart
    by location.
    """

    __slots__ = ("_index",)

    def __init__(self, index: BlockIndex) -> None:
        self._index = index

    def repeated(self, a: NormalizedParty, b: NormalizedParty) -> bool:
        name = a.name
        if name is None:
            return False
        country = pair_country(a, b)
        pair = (a.ref, b.ref)
        seen: dict[str, bool] = {}  # system -> whether a record outside the pair was seen
        for party in self._index.parties(name_key(name)):
            if party.name != name or (country and party.country and party.country != country):
                continue
            outside = party.ref not in pair
            system = party.ref.system
            if system in seen and (outside or seen[system]):
                return True
            seen[system] = seen.get(system, False) or outside
        return False


def _choose_id(members: set[PartyRef], old_of: Mapping[PartyRef, str], taken: set[str]) -> str:
    """The id of a rebuilt cluster: the free old id sharing most members, else a new one.

    ``old_of`` maps each member of the clusters taken apart to its old cluster (a member was in
    one), so the overlaps are counted from the members instead of intersecting every old
    cluster with every new one, which grew quadratic with the parties matched in one run.
    """
    shared = Counter(old_of[member] for member in members if member in old_of)
    overlaps = sorted((-count, cid) for cid, count in shared.items())
    for _, cid in overlaps:
        if cid not in taken:
            return cid
    seed = str(min(members))
    salt = 0
    while True:
        cid = "cus_" + hashlib.sha256(f"{seed}#{salt}".encode()).hexdigest()[:16]
        if cid not in taken:
            return cid
        salt += 1


def _hard_negative(vector: tuple[int, ...]) -> bool:
    """Different tax ids, or different countries with no shared domain, e-mail or phone."""
    if vector[_TAX] == 0:
        return True
    shared = 1 in (vector[_DOMAIN], vector[_EMAIL], vector[_PHONE])
    return vector[_LOCATION] == _OTHER_COUNTRY and not shared


class _ClusterBuilder:
    """Union-find over one set of parties, applying evidence in order."""

    def __init__(self, state: MatchState, refs: set[PartyRef], constraints: _Constraints) -> None:
        self.state = state
        self.refs = refs
        self.constraints = constraints
        self.parent: dict[PartyRef, PartyRef] = {r: r for r in refs}
        self.members: dict[PartyRef, set[PartyRef]] = {r: {r} for r in refs}
        self.links: dict[PartyRef, list[Link]] = {r: [] for r in refs}
        self.review: dict[tuple[PartyRef, PartyRef], ReviewItem] = {}

    def find(self, ref: PartyRef) -> PartyRef:
        root = ref
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[ref] != root:
            self.parent[ref], ref = root, self.parent[ref]
        return root

    def _union(self, a: PartyRef, b: PartyRef, link: Link) -> None:
        ra, rb = self.find(a), self.find(b)
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] |= self.members.pop(rb)
        self.links[ra].extend(self.links.pop(rb))
        self.links[ra].append(link)

    def _cannot_link(self, ra: PartyRef, rb: PartyRef) -> bool:
        cannot = self.constraints.cannot_link
        if not cannot:
            return False
        small, large = sorted((self.members[ra], self.members[rb]), key=len)
        for x in small:
            for y in self.constraints.partners.get(x, ()):
                if y in large and ordered_pair(x, y) in cannot:
                    return True
        return False

    def _clearly_differ(self, x: PartyRef, y: PartyRef) -> bool:
        if ordered_pair(x, y) in self.constraints.cannot_link:
            return True
        vector, _, probability = self.state.pair_score(x, y)
        if _hard_negative(vector):
            return True
        return vector[_NAME] == 0 and probability < self.state.config.review_threshold

    def _transitive_conflict(self, a: PartyRef, b: PartyRef) -> tuple[PartyRef, PartyRef] | None:
        members_a, members_b = self.members[self.find(a)], self.members[self.find(b)]
        vouched, created = self.constraints.vouched, self.state.created
        for x in sorted(members_a - vouched - created):
            for y in sorted(members_b - vouched - created):
                if (x, y) != (a, b) and (x, y) != (b, a) and self._clearly_differ(x, y):
                    return x, y
        return None

    def _queue(self, a: PartyRef, b: PartyRef, reason: ReviewReason, detail: str) -> None:
        pair = ordered_pair(a, b)
        if pair in self.review:
            return
        vector, weight, probability = self.state.pair_score(*pair)
        evidence = self.state.model.explain(vector)
        self.review[pair] = ReviewItem(
            pair[0], pair[1], reason, probability, weight, evidence, detail
        )

    def apply_decisions(self) -> None:
        for decision in self.constraints.must_link:
            a, b = decision.a, decision.b
            if a not in self.refs or b not in self.refs:
                continue
            ra, rb = self.find(a), self.find(b)
            if ra == rb:
                continue
            if self._cannot_link(ra, rb):
                self._queue(
                    a,
                    b,
                    ReviewReason.DECISION_CONFLICT,
                    f"link by {decision.decided_by} conflicts with a split or never-link",
                )
                continue
            self._union(a, b, Link(*ordered_pair(a, b), LinkMethod.HUMAN, None))

    def _xref_contradicted(self, a: PartyRef, b: PartyRef) -> str | None:
        vector, _, probability = self.state.pair_score(a, b)
        if vector[_TAX] == 0:
            return "the cross-reference joins parties with different tax ids"
        if vector[_NAME] == 0 and vector[_LOCATION] == _OTHER_COUNTRY:
            return "the cross-reference joins dissimilar names in different countries"
        if probability >= self.state.config.review_threshold:
            return None
        if vector[_NAME] == 0:
            return "the cross-reference joins dissimilar names with no other shared evidence"
        if 0 in (vector[_DOMAIN], vector[_PHONE]):
            # A metadata id copied onto the wrong customer: nothing vouches for the pair
            # and a company identifier says otherwise.
            return "the cross-reference joins parties with different company domains or phones"
        return None

    def apply_xrefs(self) -> None:
        pairs = sorted(
            {
                ordered_pair(ref, target)
                for ref in self.refs
                for target in self.state.parties[ref].xrefs
                if target in self.refs and target != ref
            }
        )
        for a, b in pairs:
            ra, rb = self.find(a), self.find(b)
            if ra == rb or self._cannot_link(ra, rb):
                continue
            contradiction = self._xref_contradicted(a, b)
            if contradiction is not None:
                self._queue(a, b, ReviewReason.CONTRADICTED_XREF, contradiction)
                continue
            conflict = self._transitive_conflict(a, b)
            if conflict is not None:
                self._queue(
                    a,
                    b,
                    ReviewReason.TRANSITIVE_CONFLICT,
                    f"linking would join {conflict[0]} and {conflict[1]}, which clearly differ",
                )
                continue
            self._union(a, b, Link(a, b, LinkMethod.XREF, None))

    def apply_score(self, pair: tuple[PartyRef, PartyRef], probability: float) -> None:
        a, b = pair
        ra, rb = self.find(a), self.find(b)
        if ra == rb or self._cannot_link(ra, rb):
            return
        vector = self.state.compare(a, b)
        if _hard_negative(vector):
            return
        if vector[_LOCATION] == _OTHER_COUNTRY and probability >= self.state.config.link_threshold:
            detail = "strong match but different countries"
            self._queue(a, b, ReviewReason.COUNTRY_CONFLICT, detail)
            return
        if probability < self.state.config.link_threshold:
            self._queue(a, b, ReviewReason.UNCERTAIN_SCORE, "match probability in review band")
            return
        conflict = self._transitive_conflict(a, b)
        if conflict is not None:
            self._queue(
                a,
                b,
                ReviewReason.TRANSITIVE_CONFLICT,
                f"linking would join {conflict[0]} and {conflict[1]}, which clearly differ",
            )
            return
        self._union(a, b, Link(a, b, LinkMethod.SCORE, probability))

    def result(self) -> list[tuple[set[PartyRef], list[Link]]]:
        return [(self.members[root], self.links[root]) for root in sorted(self.members)]

    def review_items(self) -> list[ReviewItem]:
        """Open review items, one per pair of distinct customers (the most likely pair)."""
        best: dict[tuple[PartyRef, PartyRef], ReviewItem] = {}
        for item in sorted(self.review.values(), key=lambda r: (-r.probability, r.a, r.b)):
            ra, rb = self.find(item.a), self.find(item.b)
            if ra == rb:
                continue
            key = ordered_pair(ra, rb)
            if key not in best:
                best[key] = item
        return list(best.values())


def find_decision_conflict(
    decisions: Sequence[HumanDecision], decision: HumanDecision
) -> str | None:
    """Tell whether a new decision contradicts the decisions already in force.

    The ops CLI calls this before recording a decision, so that a contradiction is refused
    with a clear message instead of being stored.

    Args:
        decisions: the decisions recorded so far (revoked ones included; the latest per pair
            is in force).
        decision: the decision about to be recorded.

    Returns:
        A sentence naming the contradiction, or None when the decisions stay consistent.
    """
    if decision.a == decision.b:
        return "a party cannot be linked to or kept apart from itself"
    constraints = _active_constraints([*decisions, decision])
    parent: dict[PartyRef, PartyRef] = {}

    def find(ref: PartyRef) -> PartyRef:
        parent.setdefault(ref, ref)
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    for link in constraints.must_link:
        parent[find(link.a)] = find(link.b)
    for a, b in sorted(constraints.cannot_link):
        if find(a) == find(b):
            return f"{a} and {b} are kept apart by one decision and joined by links of others"
    return None


def match_all(
    records: Iterable[PartyRecord],
    *,
    config: MatchConfig | None = None,
    decisions: Sequence[HumanDecision] = (),
    model: MatchModel | None = None,
    created: Iterable[PartyRef] = (),
) -> MatchState:
    """Match every party from scratch.

    Args:
        records: all parties of all systems.
        config: thresholds and limits (defaults when None).
        decisions: human decisions, applied as constraints.
        model: a fitted model; when None it is fitted on these records' candidate pairs.
        created: the records the hub created for a customer (they cross-reference its
            other records): vouched for, so their differences block no link.

    Returns:
        The state holding the customers, the review queue and everything needed to match
        new records incrementally.
    """
    config = config or MatchConfig()
    placeholder = model or MatchModel(0.5, {})
    state = MatchState(config, placeholder)
    state.created = frozenset(created)
    for record in records:
        state._put(record)
    pairs = list(state.index.pairs())
    # Each pair keeps only the number of its comparison vector: a million parties give
    # millions of pairs but a few hundred distinct vectors.
    patterns: dict[tuple[int, ...], int] = {}
    pattern_of = array(
        "H", (patterns.setdefault(state.compare(a, b), len(patterns)) for a, b in pairs)
    )
    state.compared_pairs = len(pairs)
    if model is None:
        counts = Counter(pattern_of)
        vectors = list(patterns)
        parties = [state.parties[r] for r in sorted(state.parties)]
        known = [
            state.compare(party.ref, target)
            for party in parties
            for target in party.xrefs
            if target in state.parties and target != party.ref
        ]
        state.model = estimate_model(
            parties,
            (),
            vector_counts={vectors[i]: n for i, n in counts.items()},
            known_matches=known,
            names=state.names,
        )
    probabilities = [state.model.probability(vector) for vector in patterns]
    edges: dict[tuple[PartyRef, PartyRef], float] = {}
    for pair, pattern in zip(pairs, pattern_of, strict=True):
        probability = probabilities[pattern]
        if probability >= config.review_threshold:
            edges[pair] = probability
    del pairs, pattern_of
    state.decisions = list(decisions)
    state._recluster(set(state.parties), edges, _active_constraints(state.decisions))
    return state


def match_new(
    state: MatchState,
    records: Iterable[PartyRecord] = (),
    *,
    removed: Iterable[PartyRef] = (),
    decisions: Sequence[HumanDecision] = (),
    created: Iterable[PartyRef] | None = None,
) -> MatchState:
    """Match new or changed records (and new decisions) against the existing customers.

    Only the connected components the changes touch are re-clustered; the result equals a
    full run on the same records with the same model and decisions.

    Args:
        state: the state of an earlier run, updated in place.
        records: new or changed parties.
        removed: parties deleted in their system.
        decisions: decisions made since the earlier run.
        created: the records the hub created for a customer, all of them (see
            :func:`match_all`); None keeps the state's. Those that join or leave the set are
            matched again with their customers.

    Returns:
        The same state, updated.
    """
    state.compared_pairs = 0
    seeds: set[PartyRef] = set()
    if created is not None:
        now_created = frozenset(created)
        for ref in now_created ^ state.created:
            seeds |= _with_cluster_mates(state, ref)
        state.created = now_created
    for ref in removed:
        seeds |= _detach(state, ref)
        seeds |= state._drop(ref)
    for record in records:
        seeds |= _with_cluster_mates(state, record.ref)
        seeds |= state._put(record)
        seeds |= state.referenced_by.get(record.ref, set())
    for decision in decisions:
        seeds |= _with_cluster_mates(state, decision.a) | _with_cluster_mates(state, decision.b)
    state.decisions.extend(decisions)
    constraints = _active_constraints(state.decisions)
    affected: set[PartyRef] = set()
    edges: dict[tuple[PartyRef, PartyRef], float] = {}
    queue = deque(sorted(r for r in seeds if r in state.parties))
    while queue:
        ref = queue.popleft()
        if ref in affected:
            continue
        affected.add(ref)
        neighbours = state._linkable_neighbours(ref, constraints, edges)
        neighbours |= _with_cluster_mates(state, ref)
        queue.extend(sorted(n for n in neighbours if n not in affected and n in state.parties))
    state._recluster(affected, edges, constraints)
    return state


def _detach(state: MatchState, ref: PartyRef) -> set[PartyRef]:
    """Take a deleted party out of its customer and the queue; return the remaining members."""
    for pair in [p for p in state.review if ref in p]:
        del state.review[pair]
    cid = state.cluster_of.pop(ref, None)
    if cid is None:
        return set()
    cluster = state.clusters.pop(cid)
    rest = tuple(m for m in cluster.members if m != ref)
    if rest:
        links = tuple(k for k in cluster.links if ref not in (k.a, k.b))
        state.clusters[cid] = Cluster(cid, rest, links)
    return set(rest)


def _with_cluster_mates(state: MatchState, ref: PartyRef) -> set[PartyRef]:
    cluster = state.cluster_for(ref)
    return {ref} if cluster is None else {ref, *cluster.members}
