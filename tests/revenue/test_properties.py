"""Properties: movements reconcile, recognition is exact, MRR never touches a float."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.domain.money import Money
from ledgerlink.revenue import (
    Discount,
    Month,
    compute_movements,
    histories,
    measure_mrr,
    recognise,
)

from .conftest import at, item, state

STATUSES = ["active", "past_due", "unpaid", "trialing", "canceled", "paused"]
INTERVALS = [("month", 1), ("month", 3), ("year", 1), ("week", 1), ("week", 2), ("day", 30)]

snapshot_specs = st.lists(
    st.tuples(
        st.integers(0, 700),  # days after 2023-01-01
        st.sampled_from(STATUSES),
        st.lists(
            st.tuples(st.integers(0, 500_000), st.sampled_from(INTERVALS), st.integers(0, 5)),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from([None, 10, 50]),
    ),
    min_size=1,
    max_size=5,
)


def build_histories(specs_by_sub):
    snaps = []
    for sub_index, (customer, currency, specs) in enumerate(specs_by_sub):
        started = None
        for days, status, items, percent in sorted(specs, key=lambda s: s[0]):
            moment = at(2023, 1, 1) + timedelta(days=days)
            started = started or moment
            snaps.append(
                state(
                    f"sub_{sub_index}",
                    moment,
                    tuple(
                        item(f"i{n}", cents, interval, count, quantity, currency)
                        for n, (cents, (interval, count), quantity) in enumerate(items)
                    ),
                    customer=customer,
                    status=status,
                    currency=currency,
                    started_at=started,
                    discounts=[Discount(percent_off=Decimal(percent))] if percent else [],
                )
            )
    return histories(snaps)


subscriptions = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["EUR", "JPY"]), snapshot_specs),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(subscriptions)
def test_movement_identity_holds_for_random_histories(specs):
    """Opening + new + expansion - contraction - churn + reactivation equals closing for every row and every month total, and closing equals measured MRR."""
    subs = build_histories(specs)
    first, last = Month(2023, 1), Month(2024, 12)
    report = compute_movements(subs, first, last, include_unchanged=True)
    assert all(row.reconciles() for row in report.rows)
    assert all(total.reconciles() for total in report.totals)
    by_month = {}
    for total in report.totals:
        by_month.setdefault(total.month, {})[total.currency] = total
    for month in (Month(2023, 6), Month(2024, 12)):
        measured = measure_mrr(subs, month).totals()
        for currency, total in by_month.get(month, {}).items():
            assert total.closing == measured.get(currency, Money(0, currency))
    for previous, current in zip(report.months, report.months[1:], strict=False):
        for currency, total in by_month.get(current, {}).items():
            before = by_month.get(previous, {}).get(currency)
            if before is not None:
                assert total.opening == before.closing


@settings(max_examples=40, deadline=None)
@given(subscriptions)
def test_mrr_is_integer_minor_units(specs):
    """Every MRR line of random subscriptions is Money holding a plain int, never a float."""
    for line in measure_mrr(build_histories(specs), Month(2024, 2)).lines:
        assert type(line.mrr.amount) is int
        assert type(line.discount.amount) is int


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**9), 10**9),
    st.integers(0, 3000),
    st.integers(0, 800),
    st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_recognition_sums_exactly_to_the_line(cents, offset, length, currency):
    """Recognising a line over any service period gives monthly parts that add up exactly to the line amount."""
    start = at(2022, 1, 1) + timedelta(days=offset, hours=7)
    parts = recognise(Money(cents, currency), start, start + timedelta(days=length))
    assert sum(part.amount for part in parts.values()) == cents
    assert all(part.currency == currency for part in parts.values())


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**8), st.integers(1, 12))
def test_annual_plan_months_add_up_to_the_price(cents, start_month):
    """The 12 monthly MRR parts of an annual plan, whatever month it starts, add up exactly to its price."""
    subs = histories([state("s", at(2023, start_month, 1), (item("y", cents, "year"),))])
    first = Month(2023, start_month)
    parts = [measure_mrr(subs, first.shift(k)).totals()["EUR"].amount for k in range(12)]
    assert sum(parts) == cents
    assert parts == [m.amount for m in Money(cents, "EUR").allocate([1] * 12)]


def test_float_prices_and_discounts_are_refused():
    """A float price or a float discount percentage is refused before any MRR is computed."""
    with pytest.raises(TypeError):
        Money(99.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Discount(percent_off=12.5)  # type: ignore[arg-type]
