"""Blocking: which pairs of parties are worth comparing at all.

Each normalized party gets several blocking keys (prefixes of the first two name tokens,
prefixes of all tokens in sorted order, first and third of three or more tokens, company
domain, e-mail address, phone, tax id, postal code with street), so a missing or mistyped
field does not hide a match: two parties are candidates when they share any key. A key shared by more than ``max_block_size`` parties ("info", a shared switchboard
number) tells little and would make the cost quadratic, so it is set aside and counted; the
number of candidate pairs is then at most ``n * keys * max_block_size / 2`` and in practice
grows near-linearly with the number of parties.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledgerlink.matching.normalize import NormalizedParty
from ledgerlink.matching.party import PartyRef

__all__ = ["BlockIndex", "BlockingStats", "blocking_keys", "ordered_pair"]

_TOKEN_PREFIX = 4


def ordered_pair(a: PartyRef, b: PartyRef) -> tuple[PartyRef, PartyRef]:
    """Return the pair in canonical order, so ``(a, b)`` and ``(b, a)`` are one key."""
    return (a, b) if a <= b else (b, a)


def blocking_keys(party: NormalizedParty) -> frozenset[str]:
    """Compute the blocking keys of a party.

    Args:
        party: the normalized party.

    Returns:
        Keys prefixed by their kind (``n:``, ``s:``, ``l:``, ``d:``, ``e:``, ``p:``, ``t:``,
        ``a:``); a party with no usable field has none.
    """
    keys: set[str] = set()
    if party.name:
        tokens = party.name.split()
        keys.add("n:" + "".join(t[:_TOKEN_PREFIX] for t in tokens[:2]))
        keys.add("s:" + "".join(t[:3] for t in sorted(tokens)))
        if len(tokens) > 2:
            keys.add("l:" + tokens[0] + " " + tokens[2])
    keys.update("d:" + domain for domain in party.domains)
    keys.update("e:" + email for email in party.emails)
    keys.update("p:" + phone for phone in party.phones)
    if party.tax_id:
        keys.add("t:" + party.tax_id)
    if party.postal_code and party.street:
        keys.add(f"a:{party.country or ''}:{party.postal_code}:{party.street.split()[0]}")
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class BlockingStats:
    """What blocking did: parties indexed, keys, oversized keys set aside, candidate pairs."""

    parties: int
    keys: int
    oversized_keys: int
    candidate_pairs: int


class BlockIndex:
    """An inverted index from blocking key to parties, updatable record by record.

    Args:
        max_block_size: keys shared by more parties than this produce no candidates.
    """

    def __init__(self, max_block_size: int = 100) -> None:
        self.max_block_size = max_block_size
        self._members: dict[str, set[PartyRef]] = defaultdict(set)
        self._keys: dict[PartyRef, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, ref: object) -> bool:
        return ref in self._keys

    def add(self, party: NormalizedParty) -> set[PartyRef]:
        """Index a party, replacing its previous keys when it was indexed before.

        Args:
            party: the normalized party.

        Returns:
            Parties whose candidate sets changed for another reason than this party: members
            of keys that crossed ``max_block_size`` in either direction, so an incremental
            run can re-examine them.
        """
        disturbed = self.remove(party.ref)
        keys = blocking_keys(party)
        self._keys[party.ref] = keys
        for key in keys:
            members = self._members[key]
            members.add(party.ref)
            if len(members) == self.max_block_size + 1:
                disturbed.update(members)
        disturbed.discard(party.ref)
        return disturbed

    def remove(self, ref: PartyRef) -> set[PartyRef]:
        """Remove a party from the index (no-op when absent).

        Args:
            ref: the party to remove.

        Returns:
            Members of keys that fell back to ``max_block_size`` and so produce candidates again.
        """
        disturbed: set[PartyRef] = set()
        for key in self._keys.pop(ref, frozenset()):
            members = self._members[key]
            members.discard(ref)
            if len(members) == self.max_block_size:
                disturbed.update(members)
            if not members:
                del self._members[key]
        return disturbed

    def candidates(self, ref: PartyRef) -> set[PartyRef]:
        """Return the parties sharing a usable key with ``ref`` (itself excluded).

        Args:
            ref: an indexed party.

        Returns:
            Its candidate partners; empty when it is not indexed.
        """
        found: set[PartyRef] = set()
        for key in self._keys.get(ref, frozenset()):
            members = self._members[key]
            if len(members) <= self.max_block_size:
                found.update(members)
        found.discard(ref)
        return found

    def pairs(self) -> Iterator[tuple[PartyRef, PartyRef]]:
        """Yield every candidate pair once, in canonical order.

        Yields:
            ``(a, b)`` with ``a < b`` for parties sharing at least one usable key.
        """
        seen: set[tuple[PartyRef, PartyRef]] = set()
        for members in self._members.values():
            if len(members) < 2 or len(members) > self.max_block_size:
                continue
            ordered = sorted(members)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    if (a, b) not in seen:
                        seen.add((a, b))
                        yield a, b

    def stats(self, candidate_pairs: int) -> BlockingStats:
        """Summarize the index.

        Args:
            candidate_pairs: how many pairs the caller drew from it.

        Returns:
            The figures of this index.
        """
        oversized = sum(1 for m in self._members.values() if len(m) > self.max_block_size)
        return BlockingStats(len(self._keys), len(self._members), oversized, candidate_pairs)

    @classmethod
    def build(cls, parties: Iterable[NormalizedParty], max_block_size: int = 100) -> BlockIndex:
        """Index many parties at once.

        Args:
            parties: the normalized parties.
            max_block_size: see :class:`BlockIndex`.

        Returns:
            The filled index.
        """
        index = cls(max_block_size)
        for party in parties:
            index.add(party)
        return index
