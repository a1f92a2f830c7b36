"""The country transform reads the names countries give themselves, as users type them."""

from __future__ import annotations

import pytest

from ledgerlink.mapping.schema import parse_transform
from ledgerlink.mapping.transforms import TransformContext, build_transform


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("Italia", "IT"),
        ("España", "ES"),
        ("Espana", "ES"),
        ("Sverige", "SE"),
        ("Suomi", "FI"),
        ("Polska", "PL"),
        ("Brasil", "BR"),
        ("The Netherlands", "NL"),
        ("Schweiz", "CH"),
        ("Suisse", "CH"),
        ("Österreich", "AT"),
        ("België", "BE"),
    ],
)
def test_local_country_names_map_to_iso_codes(typed: str, code: str) -> None:
    """A billing country written in the country's own language maps to its ISO code."""
    step = parse_transform("country")
    country = build_transform(step.name, step.params)
    assert country(typed, TransformContext("salesforce", {}, None, {})) == code
