"""Hostile vendor JSON through every shipped mapping: an entity or a quarantine reason, never a crash.

The starting points are real payloads read from each connector's sandbox (one per mapped
object); hypothesis then removes fields, nulls them, gives them the wrong type, 1 MB strings,
unicode that breaks naive code, and amounts at the edges (0, negative, 2^63, beyond).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ledgerlink.domain import Money
from ledgerlink.domain.currencies import get_currency
from ledgerlink.mapping import Normalizer, RecordMappingError

Path = tuple[str | int, ...]
Samples = Mapping[tuple[str, str], dict[str, Any]]

MEGABYTE_TEXT = "Ω" * (1024 * 1024 // 2)  # 1 MB of UTF-8
UNICODE_HEAVY = [
    "\u202eevil\u202c",  # right-to-left override
    "Z\u0351\u0352\u0357\u0350a\u035blgo\u0360\u0361",  # stacked combining marks
    "💸🏦" * 50,
    "\x00nul\x00",
    "\ud800lone surrogate",
    "e\u0301 vs \u00e9",  # the same letter, two normal forms
    "\ufeffBOM",
    "  \t\n ",
    "",
]
EDGE_NUMBERS: list[Any] = [
    0,
    -1,
    -(10**12),
    2**63,
    2**63 - 1,
    -(2**63),
    10**40,
    0.1,
    -0.0,
    1e308,
    float("inf"),
    float("nan"),
    True,
    "12.345",
    "1e3",
    "NaN",
    "12abc",
]
WRONG_TYPES: list[Any] = [None, {}, [], {"nested": {"deeper": [1, None]}}, [None, "x"], "x", 7]
UNKNOWN_CURRENCIES = ["ZZZ", "xts ", "EURO", "", "€", "usd\u0000"]

_REMOVE = object()


def _paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path into ``value`` (the root excluded)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _leaves(value: Any) -> list[Path]:
    return [p for p in _paths(value) if not isinstance(_get(value, p), dict | list)]


def _get(value: Any, path: Path) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(payload: dict[str, Any], path: Path, new: Any) -> None:
    parent = _get(payload, path[:-1])
    if new is _REMOVE:
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = None
    else:
        parent[path[-1]] = new


def _money_in(value: Any) -> Iterator[Money]:
    if isinstance(value, Money):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _money_in(getattr(value, name))
    elif isinstance(value, dict):
        for child in value.values():
            yield from _money_in(child)
    elif isinstance(value, list | tuple | set | frozenset):
        for child in value:
            yield from _money_in(child)


def _floats_in(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _floats_in(getattr(value, name))
    elif isinstance(value, dict):
        for child in value.values():
            yield from _floats_in(child)
    elif isinstance(value, list | tuple):
        for child in value:
            yield from _floats_in(child)


def map_or_reason(
    normalizer: Normalizer, system: str, object_name: str, payload: dict[str, Any]
) -> tuple[Any, str | None]:
    """Map ``payload``; only an entity or a RecordMappingError is an acceptable outcome."""
    try:
        entity = normalizer.map_record(system, object_name, "hostile-1", payload)
    except RecordMappingError as exc:
        reason = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason.strip(), "a quarantine reason must say something"
        assert len(reason) <= 2000, "a reason must stay readable, not echo a 1 MB value"
        return None, reason
    for money in _money_in(entity):
        assert type(money.amount) is int
        get_currency(money.currency)
    for number in _floats_in(entity):
        assert math.isfinite(number)
    return entity, None


_MUTATION = st.one_of(
    st.just(_REMOVE),
    st.just(None),
    st.sampled_from(WRONG_TYPES),
    st.sampled_from(EDGE_NUMBERS),
    st.sampled_from(UNICODE_HEAVY),
    st.just(MEGABYTE_TEXT),
    st.text(max_size=30),
    st.integers(),
    st.decimals(allow_nan=False).map(str),
)


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_fields_map_or_give_a_reason(
    normalizer: Normalizer, vendor_samples: Samples, data: st.DataObject
) -> None:
    """Any field of a real payload removed, nulled, retyped, huge or odd unicode: an entity or a reason."""
    target = data.draw(st.sampled_from(sorted(vendor_samples)), label="object")
    payload = copy.deepcopy(vendor_samples[target])
    paths = list(_paths(payload))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        live = [p for p in paths if _reachable(payload, p)]
        if not live:
            break
        path = data.draw(st.sampled_from(live), label="path")
        _set(payload, path, data.draw(_MUTATION, label="value"))
    map_or_reason(normalizer, *target, payload)


def _reachable(payload: Any, path: Path) -> bool:
    try:
        _get(payload, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def test_every_numeric_field_at_the_edges(normalizer: Normalizer, vendor_samples: Samples) -> None:
    """Every number of every sample set to 0, negatives, 2^63 and beyond, NaN or text: never a crash, never a float amount."""
    outcomes = {"entity": 0, "reason": 0}
    for (system, object_name), sample in sorted(vendor_samples.items()):
        numeric = [
            p
            for p in _leaves(sample)
            if isinstance(_get(sample, p), int | float | Decimal)
            and not isinstance(_get(sample, p), bool)
        ]
        for path in numeric:
            for value in EDGE_NUMBERS:
                payload = copy.deepcopy(sample)
                _set(payload, path, value)
                entity, _reason = map_or_reason(normalizer, system, object_name, payload)
                outcomes["entity" if entity is not None else "reason"] += 1
    assert outcomes["entity"], outcomes
    assert outcomes["reason"], outcomes


def test_unknown_currency_is_a_clear_reason(
    normalizer: Normalizer, vendor_samples: Samples
) -> None:
    """A currency code that is not ISO 4217 never becomes money: the record is refused, naming the currency."""
    checked = 0
    for (system, object_name), sample in sorted(vendor_samples.items()):
        currency_paths = [
            p
            for p in _leaves(sample)
            if "currency" in str(p[-1]).lower() and isinstance(_get(sample, p), str)
        ]
        for path in currency_paths:
            for code in UNKNOWN_CURRENCIES:
                payload = copy.deepcopy(sample)
                _set(payload, path, code)
                entity, reason = map_or_reason(normalizer, system, object_name, payload)
                if entity is not None:
                    continue  # the field is not one the mapping reads for money
                checked += 1
                assert reason is not None
                assert "currenc" in reason.lower(), reason
    assert checked > 0


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**40])
def test_amounts_beyond_64_bits_stay_exact_or_are_refused(
    normalizer: Normalizer, vendor_samples: Samples, value: int
) -> None:
    """An amount beyond a 64-bit integer is either kept exactly as an int or refused with a reason, never rounded through a float."""
    payload = copy.deepcopy(vendor_samples[("stripe", "invoices")])
    payload["amount_due"] = value
    payload["total"] = value
    entity, reason = map_or_reason(normalizer, "stripe", "invoices", payload)
    if entity is not None:
        assert entity.total.amount == value
        assert type(entity.total.amount) is int
    else:
        assert reason
        assert "total" in reason or "amount_due" in reason, reason
