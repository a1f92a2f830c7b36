"""Probabilistic scoring of candidate pairs: the Fellegi-Sunter model, fitted with EM.

The model. Comparing two normalized parties gives a *comparison vector*: for each field a
level, from "different" (0) up to "exact"; ``MISSING`` (-1) when either side lacks the field.

======== =================================================================================
field    levels
======== =================================================================================
name     0 different, 1 similar (similarity >= 0.80, or one name is the other plus words),
         2 very similar (>= 0.92), 3 exact
domain   0 different, 1 a company domain in common (website or non-free-mail address)
email    0 different, 1 an address in common
phone    0 different, 1 a number in common (E.164)
tax_id   0 different, 1 same
location 0 different country, 1 different address (same or unknown country), 2 same
         country (address unknown), 3 same city, 4 same postal code, 5 same postal code and
         similar street
======== =================================================================================

Country, city and postal code form one field because they are strongly dependent (the same
city implies the same country); as separate fields they broke the independence assumption,
and on 50,000 parties EM turned "same country and city" into the match class.

Name similarity is the best normalized Indel similarity (rapidfuzz) of the names with sorted
tokens and without spaces, so word order and ``Coca Cola``/``CocaCola`` do not matter, while
``Horizon Pharma`` and ``Horizon Freight`` stay apart (Jaro-Winkler rewards their shared
prefix too much). Streets are compared with Jaro-Winkler.

For each field ``f`` and level ``l`` the model holds ``m = P(level l | same company)`` and
``u = P(level l | different companies)``; fields are assumed independent given the match
status. A pair's *match weight* is ``log2(prior odds) + sum over present fields of
log2(m / u)``, and its match probability ``2^w / (1 + 2^w)``. Missing fields weigh nothing.

Fitting. ``m``, ``u`` and the prior (the share of matches among candidate pairs) are estimated
by expectation-maximisation over the candidate pairs' comparison vectors (identical vectors
are counted once, so an iteration costs the number of distinct vectors, not of pairs). ``u``
starts from random pairs of parties (almost all of which are different companies) and ``m``
from the cross-referenced pairs (Stripe metadata naming a Salesforce Account: nearly always
the same company) on top of a distribution rising with agreement, which puts EM in the basin
where the "match" class is the one that agrees like known matches do. ``u`` is re-estimated on the candidate pairs rather than kept from the
random sample because blocking makes candidate non-matches agree on names far more often
than random pairs do; keeping random-pair ``u`` lets EM explain that agreement as matches.
Every estimate adds one pseudo-count per level (a uniform Dirichlet prior), so an unseen
level never has a zero probability. The only hand-set numbers are the similarity bands above
and the EM starting point (``m`` rising with agreement); no weight is set by hand.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import Indel, JaroWinkler

from ledgerlink.matching.normalize import NormalizedParty

__all__ = [
    "FIELDS",
    "LEVEL_LABELS",
    "MISSING",
    "Evidence",
    "FieldParams",
    "MatchModel",
    "ScoredPair",
    "compare",
    "estimate_model",
    "name_similarity",
    "score_pairs",
]

MISSING = -1
FIELDS: tuple[str, ...] = ("name", "domain", "email", "phone", "tax_id", "location")
LEVEL_LABELS: dict[str, tuple[str, ...]] = {
    "name": ("different", "similar", "very similar", "exact"),
    "domain": ("different", "same domain"),
    "email": ("different", "same address"),
    "phone": ("different", "same number"),
    "tax_id": ("different", "same"),
    "location": (
        "different country",
        "different address",
        "same country",
        "same city",
        "same postal code",
        "same street and postal code",
    ),
}
NAME_SIMILAR = 0.80
NAME_VERY_SIMILAR = 0.92
_STREET_SIMILAR = 0.85
_PSEUDO_COUNT = 1.0

Vector = tuple[int, ...]
Probs = tuple[float, ...]


def _jw(a: str, b: str) -> float:
    return max(JaroWinkler.similarity(a, b), JaroWinkler.similarity(b, a))


def _indel(a: str, b: str) -> float:
    return Indel.normalized_similarity(a, b)


def name_similarity(a: str, b: str) -> float:
    """Similarity of two normalized names in [0, 1], symmetric.

    Args:
        a: a normalized name.
        b: another normalized name.

    Returns:
        1.0 for equal names; otherwise the best normalized Indel similarity (the share of
        characters two strings have in common, in order) of the names with sorted tokens and
        with spaces removed.
    """
    if a == b:
        return 1.0
    sorted_a, sorted_b = " ".join(sorted(a.split())), " ".join(sorted(b.split()))
    return max(_indel(sorted_a, sorted_b), _indel(a.replace(" ", ""), b.replace(" ", "")))


def _set_level(a: frozenset[str], b: frozenset[str]) -> int:
    if not a or not b:
        return MISSING
    return 1 if a & b else 0


def _value_level(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return MISSING
    return 1 if a == b else 0


def _name_level(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return MISSING
    if a == b:
        return 3
    similarity = name_similarity(a, b)
    if similarity < NAME_SIMILAR:
        return 0
    tokens_a, tokens_b = set(a.split()), set(b.split())
    if tokens_a < tokens_b or tokens_b < tokens_a:
        return 1  # one name adds whole words to the other: a parent and its subsidiary?
    return 2 if similarity >= NAME_VERY_SIMILAR else 1


def _location_level(a: NormalizedParty, b: NormalizedParty) -> int:
    country = _value_level(a.country, b.country)
    if country == 0:
        return 0
    postal = _value_level(a.postal_code, b.postal_code)
    city = _value_level(a.city, b.city)
    if postal == 1:
        if a.street and b.street and _jw(a.street, b.street) >= _STREET_SIMILAR:
            return 5
        return 4
    if city == 1:
        return 3
    if 0 in (postal, city):
        return 1
    return MISSING if country == MISSING else 2


def compare(a: NormalizedParty, b: NormalizedParty) -> Vector:
    """Compute the comparison vector of two parties (one level per field of :data:`FIELDS`).

    Args:
        a: a normalized party.
        b: another normalized party.

    Returns:
        The levels; ``compare(a, b) == compare(b, a)``.
    """
    return (
        _name_level(a.name, b.name),
        _set_level(a.domains, b.domains),
        _set_level(a.emails, b.emails),
        _set_level(a.phones, b.phones),
        _value_level(a.tax_id, b.tax_id),
        _location_level(a, b),
    )


@dataclass(frozen=True, slots=True)
class FieldParams:
    """The m and u probabilities of one field, one entry per level."""

    m: tuple[float, ...]
    u: tuple[float, ...]

    def weight(self, level: int) -> float:
        """Return ``log2(m / u)`` for a level, 0 for a missing field."""
        if level == MISSING:
            return 0.0
        return math.log2(self.m[level] / self.u[level])


@dataclass(frozen=True, slots=True)
class Evidence:
    """One field's contribution to a pair's score.

    Attributes:
        field: the field name.
        level: its comparison level (``MISSING`` when either side lacks it).
        label: the level in words (``exact``, ``different``, ``missing``).
        weight: ``log2(m / u)`` in bits; positive supports a match.
    """

    field: str
    level: int
    label: str
    weight: float


@dataclass(frozen=True, slots=True)
class MatchModel:
    """A fitted Fellegi-Sunter model.

    Attributes:
        prior: share of matches among candidate pairs.
        params: m and u per field.
        iterations: EM iterations run to fit it.
    """

    prior: float
    params: Mapping[str, FieldParams]
    iterations: int = 0

    def weight(self, vector: Vector) -> float:
        """Return the match weight (bits) of a comparison vector, prior included."""
        total = math.log2(self.prior / (1.0 - self.prior))
        for field, level in zip(FIELDS, vector, strict=True):
            total += self.params[field].weight(level)
        return total

    def probability(self, vector: Vector) -> float:
        """Return the match probability of a comparison vector."""
        return _probability(self.weight(vector))

    def explain(self, vector: Vector) -> tuple[Evidence, ...]:
        """List each field's level and weight, strongest evidence first.

        Args:
            vector: a comparison vector from :func:`compare`.

        Returns:
            One :class:`Evidence` per field, ordered by absolute weight.
        """
        items = [
            Evidence(
                field,
                level,
                "missing" if level == MISSING else LEVEL_LABELS[field][level],
                self.params[field].weight(level),
            )
            for field, level in zip(FIELDS, vector, strict=True)
        ]
        return tuple(sorted(items, key=lambda e: (-abs(e.weight), e.field)))

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe form for storing the fitted model."""
        return {
            "prior": self.prior,
            "iterations": self.iterations,
            "params": {f: {"m": list(p.m), "u": list(p.u)} for f, p in self.params.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchModel:
        """Rebuild a model from :meth:`to_json` output."""
        params = {
            f: FieldParams(tuple(p["m"]), tuple(p["u"])) for f, p in dict(data["params"]).items()
        }
        return cls(float(data["prior"]), params, int(data.get("iterations", 0)))


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A compared candidate pair.

    Attributes:
        a: one party (the smaller reference).
        b: the other party.
        vector: the comparison vector.
        weight: the match weight in bits.
        probability: the match probability.
    """

    a: NormalizedParty
    b: NormalizedParty
    vector: Vector
    weight: float
    probability: float


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds: float = 2.0**weight
    return odds / (1.0 + odds)


def _levels(field: str) -> int:
    return len(LEVEL_LABELS[field])


def _estimate_u(parties: Sequence[NormalizedParty], samples: int, seed: int) -> dict[str, Probs]:
    counts = {f: [_PSEUDO_COUNT] * _levels(f) for f in FIELDS}
    n = len(parties)
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    total_pairs = n * (n - 1) // 2
    if total_pairs <= samples:
        pairs: Iterable[tuple[int, int]] = ((i, j) for i in range(n) for j in range(i + 1, n))
    else:
        pairs = ((rng.randrange(n), rng.randrange(n)) for _ in range(samples))
    for i, j in pairs:
        if i == j:
            continue
        for field, level in zip(FIELDS, compare(parties[i], parties[j]), strict=True):
            if level != MISSING:
                counts[field][level] += 1
    return {f: tuple(c / sum(counts[f]) for c in counts[f]) for f in FIELDS}


def estimate_model(
    parties: Sequence[NormalizedParty],
    vectors: Iterable[Vector],
    *,
    known_matches: Iterable[Vector] = (),
    u_samples: int = 50_000,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    seed: int = 0,
) -> MatchModel:
    """Fit the model by EM over the candidate vectors, starting u from random pairs.

    Args:
        parties: all normalized parties (for the random-pair sample that starts u).
        vectors: comparison vectors of the candidate pairs.
        known_matches: vectors of pairs believed to match (cross-referenced pairs); they
            start ``m`` where the data says matches are, instead of at the generic start.
        u_samples: how many random pairs to draw for u.
        max_iterations: EM iteration limit.
        tolerance: stop when no parameter moves more than this.
        seed: seed of the random-pair sample (the fit is deterministic).

    Returns:
        The fitted model.
    """
    u = _estimate_u(parties, u_samples, seed)
    patterns = sorted(Counter(vectors).items())
    m = _initial_m_from(known_matches)
    prior = 0.1
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        expected = {f: [_PSEUDO_COUNT] * _levels(f) for f in FIELDS}
        expected_u = {f: [_PSEUDO_COUNT] * _levels(f) for f in FIELDS}
        matches = 0.0
        total = 0
        for vector, count in patterns:
            log_m = math.log(prior)
            log_u = math.log(1.0 - prior)
            for field, level in zip(FIELDS, vector, strict=True):
                if level != MISSING:
                    log_m += math.log(m[field][level])
                    log_u += math.log(u[field][level])
            posterior = 1.0 / (1.0 + math.exp(min(700.0, log_u - log_m)))
            matches += posterior * count
            total += count
            for field, level in zip(FIELDS, vector, strict=True):
                if level != MISSING:
                    expected[field][level] += posterior * count
                    expected_u[field][level] += (1.0 - posterior) * count
        new_m = {f: tuple(c / sum(expected[f]) for c in expected[f]) for f in FIELDS}
        new_u = {f: tuple(c / sum(expected_u[f]) for c in expected_u[f]) for f in FIELDS}
        new_prior = min(max((matches + 1.0) / (total + 2.0), 1e-6), 1.0 - 1e-6)
        delta = max(
            abs(new_prior - prior),
            *(abs(x - y) for f in FIELDS for x, y in zip(new_m[f], m[f], strict=True)),
            *(abs(x - y) for f in FIELDS for x, y in zip(new_u[f], u[f], strict=True)),
        )
        m, u, prior = new_m, new_u, new_prior
        if delta < tolerance:
            break
    params = {f: FieldParams(m[f], u[f]) for f in FIELDS}
    return MatchModel(prior, params, iteration)


def _initial_m(levels: int) -> Probs:
    raw = [float((level + 1) ** 2) for level in range(levels)]
    return tuple(x / sum(raw) for x in raw)


def _initial_m_from(known_matches: Iterable[Vector]) -> dict[str, Probs]:
    """Start m from counts in known matches, on top of the generic start worth 10 pairs."""
    counts = {f: [10.0 * p for p in _initial_m(_levels(f))] for f in FIELDS}
    for vector in known_matches:
        for field, level in zip(FIELDS, vector, strict=True):
            if level != MISSING:
                counts[field][level] += 1.0
    return {f: tuple(c / sum(counts[f]) for c in counts[f]) for f in FIELDS}


def score_pairs(
    pairs: Iterable[tuple[NormalizedParty, NormalizedParty]], model: MatchModel
) -> list[ScoredPair]:
    """Compare and score candidate pairs.

    Args:
        pairs: candidate pairs.
        model: the fitted model.

    Returns:
        One :class:`ScoredPair` per pair, ``a`` being the party with the smaller reference.
    """
    scored: list[ScoredPair] = []
    cache: dict[Vector, float] = {}
    for left, right in pairs:
        a, b = (left, right) if left.ref <= right.ref else (right, left)
        vector = compare(a, b)
        weight = cache.get(vector)
        if weight is None:
            weight = cache[vector] = model.weight(vector)
        scored.append(ScoredPair(a, b, vector, weight, _probability(weight)))
    return scored
