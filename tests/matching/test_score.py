"""Tests of comparison vectors and the Fellegi-Sunter model fitted by EM."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerlink.matching import MatchModel, NormalizedParty, compare, normalize_party
from ledgerlink.matching.score import (
    FIELDS,
    MISSING,
    NAME_EXACT,
    NAME_EXACT_REPEATED,
    name_similarity,
)
from ledgerlink.matching.synthetic import Dataset

from .conftest import PartyMaker


def test_comparison_levels_follow_the_evidence(party: PartyMaker) -> None:
    """Each field reports exact, similar, different or missing as the values say."""
    a = normalize_party(
        party(
            "sf:1",
            name="Acme Industrial Widgets GmbH",
            website="acme.de",
            phones="030 1234567",
            country="DE",
            city="Berlin",
            postal_code="10115",
            street="Hauptstraße 5",
        )
    )
    b = normalize_party(
        party(
            "qb:1",
            name="ACME Industrial Widgetz",
            emails="ap@acme.de",
            phones="+49 30 1234567",
            country="Deutschland",
            city="Berlin",
            postal_code="10115",
            street="Hauptstr. 5",
            tax_id="DE1",
        )
    )
    levels = dict(zip(FIELDS, compare(a, b), strict=True))
    assert levels == {
        "name": 2,
        "domain": 1,
        "email": MISSING,
        "phone": 1,
        "tax_id": MISSING,
        "location": 5,
    }


def test_subsidiary_names_are_only_similar() -> None:
    """A name that adds whole words to another is at most 'similar', never 'very similar'."""
    assert (
        name_similarity("aurora juniper chemicals tech", "aurora juniper chemicals tech svcs") > 0.9
    )
    assert name_similarity("coca cola", "cocacola") == 1.0
    assert name_similarity("horizon pharma", "horizon freight") < 0.8


@given(st.data())
def test_comparison_is_symmetric(dataset: Dataset, data: st.DataObject) -> None:
    """Comparing a with b gives the same vector as comparing b with a."""
    records = dataset.records
    i = data.draw(st.integers(0, len(records) - 1))
    j = data.draw(st.integers(0, len(records) - 1))
    a, b = normalize_party(records[i]), normalize_party(records[j])
    assert compare(a, b) == compare(b, a)


def test_fitted_weights_reward_agreement_and_punish_disagreement(model: MatchModel) -> None:
    """For every field the top agreement level weighs for a match and disagreement against."""
    for field, params in model.params.items():
        assert params.weight(len(params.m) - 1) > 0, field
        assert params.weight(0) < 0, field
        assert params.weight(MISSING) == 0.0
    assert 0.0 < model.prior < 1.0


def test_explanation_lists_every_field_strongest_first(model: MatchModel) -> None:
    """A pair's evidence names each field with its level and weight, by absolute weight."""
    vector = (3, 1, MISSING, 0, MISSING, MISSING)
    evidence = model.explain(vector)
    assert [e.field for e in evidence if e.level == MISSING] == ["email", "location", "tax_id"]
    weights = [abs(e.weight) for e in evidence]
    assert weights == sorted(weights, reverse=True)
    assert sum(e.weight for e in evidence) + model.weight((MISSING,) * 6) == pytest.approx(
        model.weight(vector)
    )


def test_model_survives_a_json_round_trip(model: MatchModel) -> None:
    """A stored model scores exactly like the fitted one."""
    again = MatchModel.from_json(model.to_json())
    vector = (2, 1, 0, MISSING, 1, 4)
    assert again.weight(vector) == model.weight(vector)


class _Repeated:
    """Every name counts as carried by other companies too."""

    def repeated(self, a: NormalizedParty, b: NormalizedParty) -> bool:
        return True


def test_exact_name_carried_by_other_companies_is_weaker(party: PartyMaker) -> None:
    """Agreeing on a name other records of a system carry is its own, weaker level."""
    a = normalize_party(party("sf:1", name="Acme GmbH", country="DE"))
    b = normalize_party(party("st:1", name="ACME", country="DE"))
    assert compare(a, b)[0] == NAME_EXACT
    assert compare(a, b, _Repeated())[0] == NAME_EXACT_REPEATED


def test_fitted_model_trusts_unique_names_more_than_repeated_ones(model: MatchModel) -> None:
    """EM gives an exact name no other record of a system shares more weight than a repeated one."""
    name = model.params["name"]
    assert name.weight(NAME_EXACT) > name.weight(NAME_EXACT_REPEATED)


def test_model_stored_before_repeated_names_scores_as_before(model: MatchModel) -> None:
    """A stored model with one exact-name level scores both exact levels with its weight."""
    stored = model.to_json()
    old_name = stored["params"]["name"]
    stored["params"]["name"] = {"m": old_name["m"][:NAME_EXACT], "u": old_name["u"][:NAME_EXACT]}
    old = MatchModel.from_json(stored)
    weight = model.params["name"].weight(NAME_EXACT_REPEATED)
    assert old.params["name"].weight(NAME_EXACT) == pytest.approx(weight)
    assert old.params["name"].weight(NAME_EXACT_REPEATED) == pytest.approx(weight)
