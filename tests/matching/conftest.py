"""Shared fixtures of the matching tests: a model fitted once on generated data, a party maker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerlink.matching import MatchModel, PartyRecord, PartyRef, match_all
from ledgerlink.matching.synthetic import Dataset, generate_parties

PartyMaker = Callable[..., PartyRecord]


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """A deterministic messy dataset of 500 companies across the three systems."""
    return generate_parties(500, seed=11)


@pytest.fixture(scope="session")
def model(dataset: Dataset) -> MatchModel:
    """A model fitted by EM on the generated dataset, shared by the small hand-made cases."""
    return match_all(dataset.records).model


@pytest.fixture
def party() -> PartyMaker:
    """Build a party record from a short reference like ``sf:1`` and keyword fields."""

    systems = {
        "sf": ("salesforce", "Account"),
        "st": ("stripe", "customer"),
        "qb": ("quickbooks", "Customer"),
    }

    def make(ref: str, **fields: Any) -> PartyRecord:
        system, _, rid = ref.partition(":")
        name, obj = systems[system]
        fields.setdefault("updated_at", datetime(2026, 1, 1, tzinfo=UTC))
        for key in ("emails", "phones"):
            if isinstance(fields.get(key), str):
                fields[key] = (fields[key],)
        if "xrefs" in fields:
            fields["xrefs"] = tuple(_ref(x, systems) for x in fields["xrefs"])
        return PartyRecord(ref=PartyRef(name, obj, rid), **fields)

    return make


def _ref(short: str, systems: dict[str, tuple[str, str]]) -> PartyRef:
    system, _, rid = short.partition(":")
    return PartyRef(*systems[system], rid)


def ref(short: str) -> PartyRef:
    """Expand ``sf:1`` into a full party reference."""
    systems = {
        "sf": ("salesforce", "Account"),
        "st": ("stripe", "customer"),
        "qb": ("quickbooks", "Customer"),
    }
    return _ref(short, systems)
