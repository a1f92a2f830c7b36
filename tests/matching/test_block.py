"""Tests of blocking: several keys per party, oversized keys set aside, incremental index."""

from __future__ import annotations

from ledgerlink.matching import BlockIndex, blocking_keys, normalize_party

from .conftest import PartyMaker, ref


def test_one_shared_identifier_is_enough_to_compare(party: PartyMaker) -> None:
    """Parties with unrelated names still meet through a phone, a domain or a tax id."""
    records = [
        party("sf:1", name="Acme Widgets", phones="+49 30 1234567"),
        party("st:1", name="AW Holding", phones="030 1234567", country="DE"),
        party("sf:2", name="Nimbus", website="https://nimbus.io"),
        party("qb:2", name="Cloud Accounting Dept", emails="ap@nimbus.io"),
        party("sf:3", name="Vertex", tax_id="DE123456789"),
        party("qb:3", name="VX", tax_id="123456789", country="Germany"),
    ]
    index = BlockIndex.build(normalize_party(r) for r in records)
    assert set(index.pairs()) == {
        (ref("sf:1"), ref("st:1")),
        (ref("qb:2"), ref("sf:2")),
        (ref("qb:3"), ref("sf:3")),
    }


def test_name_keys_survive_typos_and_word_order(party: PartyMaker) -> None:
    """A typo late in a word or swapped words still share a name key."""
    a = blocking_keys(normalize_party(party("sf:1", name="Blue Harbor Logistics")))
    b = blocking_keys(normalize_party(party("sf:2", name="Blue Harbour Logistcs Ltd")))
    c = blocking_keys(normalize_party(party("sf:3", name="Logistics Blue Harbor")))
    assert a & b
    assert a & c


def test_free_mail_domain_is_not_a_blocking_key(party: PartyMaker) -> None:
    """Two parties with gmail contacts are not compared because of gmail."""
    keys = blocking_keys(normalize_party(party("st:1", emails="jane@gmail.com")))
    assert keys == {"e:jane@gmail.com"}


def test_oversized_keys_produce_no_candidates_and_are_reported(party: PartyMaker) -> None:
    """A key shared by more parties than the limit is set aside, and comes back below it."""
    index = BlockIndex(max_block_size=2)
    parties = [
        normalize_party(party(f"sf:{i}", name=f"Company {i}{i}{i}", website="shared.com"))
        for i in range(3)
    ]
    disturbed = set()
    for p in parties:
        disturbed |= index.add(p)
    assert index.candidates(parties[0].ref) == set()
    assert disturbed == {p.ref for p in parties[:2]}
    assert index.stats(0).oversized_keys == 1
    assert index.remove(parties[2].ref) == {parties[0].ref, parties[1].ref}
    assert index.candidates(parties[0].ref) == {parties[1].ref}
