"""Generated data's vendor view and the quality measures benchmarks report (pairwise, B-cubed)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ledgerlink.mapping import Normalizer, RecordMappingError, load_mappings
from ledgerlink.matching import PartyRef, normalize_party
from ledgerlink.matching.adapt import party_record
from ledgerlink.matching.synthetic import Dataset, evaluate, generate_parties


def refs(*ids: int) -> list[PartyRef]:
    return [PartyRef("salesforce", "Account", f"a{i}") for i in ids]


def truth_of(*companies: list[PartyRef]) -> dict[PartyRef, str]:
    return {ref: f"c{n}" for n, members in enumerate(companies) for ref in members}


def test_bcubed_on_the_textbook_example() -> None:
    """Merging two true clusters of 2 and 5 costs B-cubed precision, not recall (Bagga-Baldwin)."""
    # Truth: {1..5}, {6,7}, {8..12}; predicted: {1..5} and {6..12} (12 parties).
    # Precision per party: 1..5 -> 5/5; 6,7 -> 2/7 each; 8..12 -> 5/7 each.
    #   (5*1 + 2*2/7 + 5*5/7) / 12 = (35/7 + 4/7 + 25/7) / 12 = 64/84 = 16/21 ~ 0.7619.
    # Recall per party: every predicted customer holds the whole true company -> 1.
    # F1 = 2 * 16/21 * 1 / (16/21 + 1) = (32/21) / (37/21) = 32/37 ~ 0.8649.
    # Pairwise: true pairs 10 + 1 + 10 = 21; predicted 10 + 21 = 31, of which 21 true.
    truth = truth_of(refs(1, 2, 3, 4, 5), refs(6, 7), refs(8, 9, 10, 11, 12))
    quality = evaluate([refs(1, 2, 3, 4, 5), refs(6, 7, 8, 9, 10, 11, 12)], truth)
    assert quality.bcubed_precision == pytest.approx(float(Fraction(16, 21)))
    assert quality.bcubed_recall == pytest.approx(1.0)
    assert quality.bcubed_f1 == pytest.approx(float(Fraction(32, 37)))
    assert (quality.true_pairs, quality.predicted_pairs) == (21, 31)
    assert quality.precision == pytest.approx(21 / 31)
    assert quality.recall == pytest.approx(1.0)


def test_bcubed_for_a_split_and_a_wrong_merge() -> None:
    """A split company lowers recall for its parties; a wrong merge lowers precision."""
    # Truth: A = {1,2,3}, B = {4}, C = {5}; predicted: {1,2}, {3}, {4,5}.
    # Precision: 1,2 -> 2/2; 3 -> 1/1; 4 -> 1/2; 5 -> 1/2  => (1+1+1+0.5+0.5)/5 = 4/5.
    # Recall: 1,2 -> 2/3; 3 -> 1/3; 4 -> 1; 5 -> 1  => (2/3+2/3+1/3+1+1)/5 = (11/3)/5 = 11/15.
    # F1 = 2 * 4/5 * 11/15 / (4/5 + 11/15) = (88/75) / (23/15) = 88/115.
    # Pairwise: true {1,2},{1,3},{2,3}; predicted {1,2},{4,5}; 1 hit -> P 1/2, R 1/3.
    truth = truth_of(refs(1, 2, 3), refs(4), refs(5))
    quality = evaluate([refs(1, 2), refs(3), refs(4, 5)], truth)
    assert quality.bcubed_precision == pytest.approx(0.8)
    assert quality.bcubed_recall == pytest.approx(float(Fraction(11, 15)))
    assert quality.bcubed_f1 == pytest.approx(float(Fraction(88, 115)))
    assert quality.precision == pytest.approx(0.5)
    assert quality.recall == pytest.approx(1 / 3)


def test_parties_no_customer_holds_count_as_customers_of_their_own() -> None:
    """Leaving parties out of the prediction is the same as predicting them alone."""
    # Truth: {1,2}, {3}. Nothing predicted: every party alone.
    # Precision 1 for each; recall 1/2, 1/2, 1 => 2/3. Pairwise: nothing claimed, 1 pair missed.
    truth = truth_of(refs(1, 2), refs(3))
    quality = evaluate([], truth)
    assert quality == evaluate([refs(1), refs(2), refs(3)], truth)
    assert quality.bcubed_precision == pytest.approx(1.0)
    assert quality.bcubed_recall == pytest.approx(2 / 3)
    assert (quality.precision, quality.recall) == (1.0, 0.0)


def test_perfect_prediction_scores_one_and_unknown_parties_are_ignored() -> None:
    """The true clustering scores 1 everywhere, whatever parties outside the truth it holds."""
    truth = truth_of(refs(1, 2), refs(3))
    quality = evaluate([refs(1, 2, 99), refs(3)], truth)
    assert (quality.bcubed_precision, quality.bcubed_recall, quality.bcubed_f1) == (1.0, 1.0, 1.0)


def test_a_party_in_two_customers_is_refused() -> None:
    """A prediction that is not a partition is an error, not a score."""
    with pytest.raises(ValueError, match="two predicted customers"):
        evaluate([refs(1, 2), refs(2, 3)], truth_of(refs(1, 2, 3)))


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate_parties(300, seed=5)


def test_generation_is_deterministic(small: Dataset) -> None:
    """The same seed gives the same records, truth and vendor payloads."""
    again = generate_parties(300, seed=5)
    assert again == small
    assert list(again.vendor_rows()) == list(small.vendor_rows())


def test_vendor_rows_map_through_the_shipped_mappings_to_the_same_parties(small: Dataset) -> None:
    """Each vendor payload maps, with the shipped mappings, to the party the generator made."""
    normalizer = Normalizer(load_mappings())
    direct = {record.ref: record for record in small.records}
    rows = list(small.vendor_rows())
    assert {(row.system, row.object) for row in rows} == {
        ("salesforce", "Account"),
        ("stripe", "customers"),
        ("quickbooks", "Customer"),
    }
    mapped = 0
    for row in rows:
        record = direct[PartyRef(row.system, row.object, row.id)]
        if row.system == "stripe" and record.name is None:
            # Stripe customers may have no name; the shipped mapping requires one.
            with pytest.raises(RecordMappingError, match="name"):
                normalizer.map_record(row.system, row.object, row.id, row.payload)
            continue
        party = normalizer.map_record(row.system, row.object, row.id, row.payload)
        mapped += 1
        landed = party_record(party)
        assert landed.ref == record.ref
        # the mappings collapse runs of spaces in names
        assert (landed.name, landed.emails, landed.phones) == (
            " ".join((record.name or "").split()) or None,
            record.emails,
            record.phones,
        )
        assert (landed.website, landed.street, landed.city, landed.postal_code) == (
            record.website,
            record.street,
            record.city,
            record.postal_code,
        )
        assert landed.xrefs == record.xrefs
        assert landed.updated_at == record.updated_at
        assert landed.tax_id == (None if row.system == "quickbooks" else record.tax_id)
        assert normalize_party(landed).country == normalize_party(record).country
    assert mapped > 0.9 * len(rows)


def test_stripe_rows_hold_country_codes_and_salesforce_ids_in_metadata(small: Dataset) -> None:
    """Stripe payloads carry ISO country codes and name their account in metadata."""
    stripe = [row for row in small.vendor_rows() if row.system == "stripe"]
    countries = {row.payload["address"]["country"] for row in stripe if row.payload["address"]}
    assert countries - {None}
    assert all(len(code) == 2 and code.isupper() for code in countries - {None})
    linked = [row for row in stripe if row.payload["metadata"]]
    assert linked
    assert all(row.payload["metadata"]["salesforce_account_id"].startswith("001") for row in linked)
