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
    """A typo late or early in a word, swapped words or an unknown extra word share a key."""
    a = blocking_keys(normalize_party(party("sf:1", name="Blue Harbor Logistics")))
    b = blocking_keys(normalize_party(party("sf:2", name="Blue Harbour Logistcs Ltd")))
    c = blocking_keys(normalize_party(party("sf:3", name="Logistics Blue Harbor")))
    d = blocking_keys(normalize_party(party("sf:4", name="Blue Jarbor Logistics")))
    e = blocking_keys(normalize_party(party("sf:5", name="Blue Harbor Logistics Oyez")))
    assert a & b
    assert a & c
    assert a & d
    assert a & e


def test_oversized_block_compares_name_neighbours_only(party: PartyMaker) -> None:
    """In a block above the limit a party meets only its nearest names, on both sides."""
    names = ["Acme Alpha", "Acme Beta", "Acme Gamma", "Acme Delta", "Acme Epsilon"]
    parties = [
        normalize_party(party(f"sf:{i}", name=name, website="shared.com"))
        for i, name in enumerate(names)
    ]
    index = BlockIndex.build(parties, max_block_size=3, window=1)
    by_name = {p.name: p.ref for p in parties}
    # name order: alpha, beta, delta, epsilon, gamma
    assert index.candidates(by_name["acme delta"]) == {
        by_name["acme beta"],
        by_name["acme epsilon"],
    }
    assert index.candidates(by_name["acme alpha"]) == {by_name["acme beta"]}
    assert len(set(index.pairs())) == len(names) - 1


def test_index_reports_shifted_neighbourhoods(party: PartyMaker) -> None:
    """Adding or removing a party in an oversized block reports the neighbours it moves."""
    index = BlockIndex(max_block_size=3, window=1)
    for i, name in enumerate(["Acme A", "Acme C", "Acme E", "Acme G"]):
        index.add(normalize_party(party(f"sf:{i}", name=name, website="shared.com")))
    added = normalize_party(party("sf:9", name="Acme D", website="shared.com"))
    assert index.add(added) == {ref("sf:1"), ref("sf:2")}
    assert index.candidates(ref("sf:1")) == {ref("sf:0"), ref("sf:9")}
    assert index.remove(added.ref) == {ref("sf:1"), ref("sf:2")}
    assert index.candidates(ref("sf:1")) == {ref("sf:0"), ref("sf:2")}


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


def test_word_ending_blocks_keep_early_typos_next_to_their_name(party: PartyMaker) -> None:
    """In an oversized word-ending block a typo in a name's first letter still meets the name."""
    names = {"sf:1": "Aanaqui Labs", "sf:2": "Boraqui Labs", "sf:3": "Coraqui Labs"}
    names["sf:4"] = "Zanaqui Labs"
    index = BlockIndex.build(
        (normalize_party(party(short, name=name)) for short, name in names.items()),
        max_block_size=3,
        window=1,
    )
    assert index.candidates(ref("sf:1")) == {ref("sf:4")}
