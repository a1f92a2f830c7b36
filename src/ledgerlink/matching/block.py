"""Blocking: which pairs of parties are worth comparing at all.

Each normalized party gets several blocking keys, so a missing or mistyped field does not hide
a match: two parties are candidates when they share any key.

- ``x:`` the whole normalized name, and for names of three words or more the name without
  its last word (a legal form the normalizer does not know, a subsidiary's extra word);
- ``s:`` the first four letters of every word, in sorted order (a typo late in a word, words
  swapped);
- ``r:`` the last four letters of every word, in sorted order (a typo early in a word);
- ``d:`` each company domain, ``e:`` each e-mail address, ``p:`` each phone, ``t:`` the tax id;
- ``a:`` country, postal code and street together.

Most keys are shared by the few records of one company, whatever the number of parties, so
the pairs per party stay nearly flat as the number of parties grows. Keys made of parts of
names are chosen to hold whole words where they can: a key on the first letters of the first
two words only ("blueharb") collects every "Blue Harbor ..." company and its block grows with
the data (pairs per party went from 1.0 at 10,000 parties to 2.1 at 100,000 with it, from 0.9
to 1.35 without it, finding nearly the same true pairs). Some blocks still grow, and comparing
every pair of a block would make the cost grow with the square of its size.

A block larger than ``max_block_size`` is therefore compared by *sorted neighbourhood*: its
members are kept in order of name (blocks of word endings in order of reversed name, so that
a typo in the first letters still sits next to the name it was meant to be), and each is
compared only with the ``window`` members before and after it. The pairs per party are then
at most ``keys * max(max_block_size - 1, 2 * window)``. With ``window=0`` an oversized block
produces no candidates at all.

The index is incremental: adding or removing a party reports the parties whose candidate
sets changed for another reason than that party (a block crossing the size limit, a
neighbourhood shifted by one), so that an incremental run can examine them again.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ledgerlink.matching.normalize import NormalizedParty
from ledgerlink.matching.party import PartyRef

__all__ = ["BlockIndex", "BlockingStats", "blocking_keys", "name_key", "ordered_pair"]

_AFFIX = 4
_SUFFIX_KIND = "r:"
_MIN_WORDS_FOR_SHORTENED_NAME = 3
_ID_BITS = 64


def ordered_pair(a: PartyRef, b: PartyRef) -> tuple[PartyRef, PartyRef]:
    """Return the pair in canonical order, so ``(a, b)`` and ``(b, a)`` are one key."""
    return (a, b) if a <= b else (b, a)


def name_key(name: str) -> str:
    """Return the blocking key of a whole normalized name (its parties share that name)."""
    return "x:" + name


def blocking_keys(party: NormalizedParty) -> frozenset[str]:
    """Compute the blocking keys of a party.

    Args:
        party: the normalized party.

    Returns:
        Keys prefixed by their kind (``x:``, ``s:``, ``r:``, ``d:``, ``e:``, ``p:``, ``t:``,
        ``a:``); a party with no usable field has none.
    """
    keys: set[str] = set()
    if party.name:
        words = party.name.split()
        keys.add(name_key(party.name))
        if len(words) >= _MIN_WORDS_FOR_SHORTENED_NAME:
            keys.add(name_key(" ".join(words[:-1])))
        keys.add("s:" + " ".join(sorted(word[:_AFFIX] for word in words)))
        keys.add(_SUFFIX_KIND + " ".join(sorted(word[-_AFFIX:] for word in words)))
    keys.update("d:" + domain for domain in party.domains)
    keys.update("e:" + email for email in party.emails)
    keys.update("p:" + phone for phone in party.phones)
    if party.tax_id:
        keys.add("t:" + party.tax_id)
    if party.postal_code and party.street:
        keys.add(f"a:{party.country or ''}:{party.postal_code}:{party.street}")
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class BlockingStats:
    """What blocking did: parties indexed, keys, oversized keys, candidate pairs."""

    parties: int
    keys: int
    oversized_keys: int
    candidate_pairs: int


class BlockIndex:
    """An inverted index from blocking key to parties, updatable record by record.

    Each block keeps its members in order of (name, reference), so that an oversized block
    can be compared by sorted neighbourhood. Most keys (an e-mail address, a phone) belong to
    one party; such a block is stored as the reference alone rather than a list, which at a
    million parties saves several hundred megabytes.

    Args:
        max_block_size: blocks with more parties than this are compared by sorted
            neighbourhood instead of every pair.
        window: how many neighbours on each side a party of an oversized block is compared
            with; 0 sets oversized blocks aside entirely.
    """

    def __init__(self, max_block_size: int = 100, window: int = 0) -> None:
        self.max_block_size = max_block_size
        self.window = window
        self._members: dict[str, PartyRef | list[PartyRef]] = {}
        self._parties: dict[PartyRef, NormalizedParty] = {}

    def __len__(self) -> int:
        return len(self._parties)

    def __contains__(self, ref: object) -> bool:
        return ref in self._parties

    def members(self, key: str) -> list[PartyRef]:
        """Return the parties holding a blocking key (a copy, in name order)."""
        block = self._members.get(key)
        if block is None:
            return []
        return [block] if isinstance(block, PartyRef) else list(block)

    def parties(self, key: str) -> list[NormalizedParty]:
        """Return the normalized parties holding a blocking key, in name order."""
        return [self._parties[ref] for ref in self.members(key)]

    def _by_name(self, ref: PartyRef) -> tuple[str, PartyRef]:
        return (self._parties[ref].name or "", ref)

    def _by_reversed_name(self, ref: PartyRef) -> tuple[str, PartyRef]:
        return ((self._parties[ref].name or "")[::-1], ref)

    def _order(self, key: str) -> Callable[[PartyRef], tuple[str, PartyRef]]:
        """The order of a block: by name, or by reversed name for the word-ending keys.

        A block of a word-ending key gathers names that differ early in a word ("Zanaqui",
        "Boraqui", "Xanaqui"); in the order of their reversed names a name with a typo in
        its first letters still sits next to the name it was meant to be.
        """
        return self._by_reversed_name if key.startswith(_SUFFIX_KIND) else self._by_name

    def _position(self, key: str, block: list[PartyRef], ref: PartyRef) -> int:
        order = self._order(key)
        return bisect_left(block, order(ref), key=order)

    def _neighbours(self, block: list[PartyRef], position: int) -> list[PartyRef]:
        low = max(0, position - self.window)
        return block[low:position] + block[position + 1 : position + 1 + self.window]

    def _insert(self, key: str, ref: PartyRef) -> list[PartyRef] | None:
        block = self._members.get(key)
        if block is None:
            self._members[key] = ref
            return None
        if isinstance(block, PartyRef):
            block = self._members[key] = [block]
        insort(block, ref, key=self._order(key))
        return block

    def add(self, party: NormalizedParty) -> set[PartyRef]:
        """Index a party, replacing its previous keys when it was indexed before.

        Args:
            party: the normalized party.

        Returns:
            Parties whose candidate sets changed for another reason than this party: members
            of blocks that crossed ``max_block_size`` in either direction and the neighbours
            of its place in oversized blocks, so an incremental run can re-examine them.
        """
        ref = party.ref
        disturbed = self.remove(ref)
        self._parties[ref] = party
        limit = self.max_block_size
        for key in blocking_keys(party):
            block = self._insert(sys.intern(key), ref)
            if block is None or len(block) <= limit:
                continue
            if len(block) == limit + 1:
                disturbed.update(block)
            elif self.window:
                disturbed.update(self._neighbours(block, self._position(key, block, ref)))
        disturbed.discard(ref)
        return disturbed

    def remove(self, ref: PartyRef) -> set[PartyRef]:
        """Remove a party from the index (no-op when absent).

        Args:
            ref: the party to remove.

        Returns:
            Members of blocks that fell back to ``max_block_size`` and so compare every pair
            again, and the neighbours of its place in blocks that stay oversized.
        """
        disturbed: set[PartyRef] = set()
        party = self._parties.get(ref)
        if party is None:
            return disturbed
        limit = self.max_block_size
        for key in blocking_keys(party):
            block = self._members[key]
            if isinstance(block, PartyRef):
                del self._members[key]
                continue
            position = self._position(key, block, ref)
            if len(block) > limit and self.window:
                disturbed.update(self._neighbours(block, position))
            del block[position]
            if len(block) == limit:
                disturbed.update(block)
            if len(block) == 1:
                self._members[key] = block[0]
        del self._parties[ref]
        disturbed.discard(ref)
        return disturbed

    def candidates(self, ref: PartyRef) -> set[PartyRef]:
        """Return the parties sharing a usable key with ``ref`` (itself excluded).

        Args:
            ref: an indexed party.

        Returns:
            Its candidate partners; empty when it is not indexed.
        """
        found: set[PartyRef] = set()
        party = self._parties.get(ref)
        if party is None:
            return found
        for key in blocking_keys(party):
            block = self._members[key]
            if isinstance(block, PartyRef):
                continue
            if len(block) <= self.max_block_size:
                found.update(block)
            elif self.window:
                found.update(self._neighbours(block, self._position(key, block, ref)))
        found.discard(ref)
        return found

    def pairs(self) -> Iterator[tuple[PartyRef, PartyRef]]:
        """Yield every candidate pair once, in canonical order.

        Yields:
            ``(a, b)`` with ``a < b`` for parties sharing at least one usable key.
        """
        # Pairs are recognised by the identities of their reference objects (each party's
        # reference is one object in every block), which costs far less than a set of pairs.
        seen: set[int] = set()
        limit, window = self.max_block_size, self.window
        for block in self._members.values():
            if isinstance(block, PartyRef):
                continue
            size = len(block)
            if size > limit and not window:
                continue
            reach = size if size <= limit else window
            for i, a in enumerate(block):
                id_a = id(a)
                for b in block[i + 1 : i + 1 + reach]:
                    id_b = id(b)
                    pair_id = (
                        (id_a << _ID_BITS) | id_b if id_a < id_b else (id_b << _ID_BITS) | id_a
                    )
                    if pair_id not in seen:
                        seen.add(pair_id)
                        yield (a, b) if a <= b else (b, a)

    def stats(self, candidate_pairs: int) -> BlockingStats:
        """Summarize the index.

        Args:
            candidate_pairs: how many pairs the caller drew from it.

        Returns:
            The figures of this index.
        """
        oversized = sum(
            1
            for block in self._members.values()
            if not isinstance(block, PartyRef) and len(block) > self.max_block_size
        )
        return BlockingStats(len(self._parties), len(self._members), oversized, candidate_pairs)

    @classmethod
    def build(
        cls, parties: Iterable[NormalizedParty], max_block_size: int = 100, window: int = 0
    ) -> BlockIndex:
        """Index many parties at once.

        Args:
            parties: the normalized parties.
            max_block_size: see :class:`BlockIndex`.
            window: see :class:`BlockIndex`.

        Returns:
            The filled index.
        """
        index = cls(max_block_size, window)
        for party in parties:
            index.add(party)
        return index
