"""One scenario per subscription lifecycle change, with figures worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledgerlink.domain.entities import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    Refund,
    SourceRef,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import (
    CancelAtPeriodEnd,
    Discount,
    DiscountDuration,
    DiscountTreatment,
    Dispute,
    Exclusion,
    Month,
    MovementKind,
    PastDueTreatment,
    RevenuePolicy,
    compute_movements,
    explain,
    histories,
    measure_mrr,
    revenue_by_month,
    usage_and_one_off,
)

from .conftest import at, item, state

JAN, FEB, MAR, APR, MAY, JUN = (Month(2024, m) for m in range(1, 7))


def kinds(report, customer="acme"):
    return {
        (str(row.month), row.kind): row
        for row in report.for_customer(customer)
        if row.kind is not None
    }


def eur(cents: int) -> Money:
    return Money(cents, "EUR")


def test_new_subscription_is_new_mrr():
    """A first monthly subscription of 100.00 EUR started mid-January is 100.00 of new MRR in January."""
    subs = histories([state("sub_1", at(2024, 1, 15), (item("a", 10000),))])
    report = compute_movements(subs, JAN, FEB)
    total = report.totals[0]
    assert (total.opening, total.new, total.closing) == (eur(0), eur(10000), eur(10000))
    assert total.new_customers == 1
    assert report.totals[1].new == eur(0)
    assert all(t.reconciles() for t in report.totals)


def test_add_on_is_expansion():
    """Adding a 20.00 add-on on 10 March to a 100.00 plan is 20.00 of expansion in March (120.00 closing)."""
    base = item("a", 10000)
    subs = histories(
        [
            state("sub_1", at(2024, 1, 1), (base,)),
            state("sub_1", at(2024, 3, 10), (base, item("b", 2000)), started_at=at(2024, 1, 1)),
        ]
    )
    rows = kinds(compute_movements(subs, FEB, MAR))
    assert rows["2024-03", MovementKind.EXPANSION].expansion == eur(2000)
    assert rows["2024-03", MovementKind.EXPANSION].closing == eur(12000)


def test_upgrade_with_proration_counts_the_new_price_not_the_proration():
    """Upgrading 100.00 -> 150.00 on 16 March is 50.00 expansion; the 25.00 proration line is billed, recognised over 16-31 March, and not MRR."""
    subs = histories(
        [
            state("sub_1", at(2024, 1, 1), (item("a", 10000),)),
            state("sub_1", at(2024, 3, 16), (item("a", 15000),), started_at=at(2024, 1, 1)),
        ]
    )
    rows = kinds(compute_movements(subs, MAR, MAR))
    assert rows["2024-03", MovementKind.EXPANSION].expansion == eur(5000)
    proration = Invoice(
        source=SourceRef(system="stripe", object="invoice", id="in_p"),
        status=InvoiceStatus.PAID,
        currency="EUR",
        total=eur(2500),
        issued_at=at(2024, 3, 16),
        lines=(
            InvoiceLine(
                amount=eur(2500),
                proration=True,
                period_start=at(2024, 3, 16),
                period_end=at(2024, 4, 1),
                subscription_item=SourceRef(system="stripe", object="subscription_item", id="a"),
            ),
        ),
    )
    (row,) = revenue_by_month(MAR, MAR, invoices=[proration])
    assert (row.billings, row.recognised) == (eur(2500), eur(2500))
    assert usage_and_one_off([proration], metered=()) == []


def test_downgrade_is_contraction():
    """Downgrading 150.00 -> 80.00 on 5 April is 70.00 of contraction in April."""
    subs = histories(
        [
            state("sub_1", at(2024, 1, 1), (item("a", 15000),)),
            state("sub_1", at(2024, 4, 5), (item("a", 8000),), started_at=at(2024, 1, 1)),
        ]
    )
    rows = kinds(compute_movements(subs, APR, APR))
    assert rows["2024-04", MovementKind.CONTRACTION].contraction == eur(7000)


def test_metered_overage_is_reported_apart_from_mrr():
    """A 50.00 plan with a metered item is 50.00 MRR; the 37.50 of usage billed in February is reported as metered, not MRR."""
    usage = item("m", 5)
    snap = state("sub_1", at(2024, 1, 1), (item("a", 5000), usage), metered=[usage.source])
    subs = histories([snap])
    feb = measure_mrr(subs, FEB)
    assert feb.totals() == {"EUR": eur(5000)}
    assert any(line.excluded is Exclusion.METERED for line in feb.lines)
    invoice = Invoice(
        source=SourceRef(system="stripe", object="invoice", id="in_1"),
        status=InvoiceStatus.PAID,
        currency="EUR",
        total=eur(8750),
        issued_at=at(2024, 2, 1),
        party=SourceRef(system="stripe", object="customer", id="acme"),
        lines=(
            InvoiceLine(amount=eur(5000), subscription_item=item("a", 1).source),
            InvoiceLine(amount=eur(3750), subscription_item=usage.source),
        ),
    )
    (row,) = usage_and_one_off([invoice], metered=[usage.source])
    assert (row.month, row.metered, row.one_off) == (FEB, eur(3750), eur(0))


def test_annual_renewal_allocates_the_price_over_twelve_months():
    """An annual 1000.00 plan gives 83.34 for 4 months then 83.33 for 8 (exactly 1000.00), a 0.01 contraction in May and 0.01 expansion at the January renewal."""
    subs = histories([state("sub_1", at(2024, 1, 1), (item("y", 100000, "year"),))])
    months = [Month(2024, m) for m in range(1, 13)]
    parts = [measure_mrr(subs, m).totals()["EUR"].amount for m in months]
    assert parts == [8334] * 4 + [8333] * 8
    assert sum(parts) == 100000
    report = compute_movements(subs, Month(2024, 5), Month(2025, 1))
    rows = kinds(report)
    assert rows["2024-05", MovementKind.CONTRACTION].contraction == eur(1)
    assert rows["2025-01", MovementKind.EXPANSION].expansion == eur(1)


def test_cancellation_at_period_end_churns_when_the_period_ends_by_default():
    """Cancelling on 10 March at the end of a period ending 15 April churns 100.00 in April by default, in March when the policy churns on scheduling."""
    subs = histories(
        [
            state("sub_1", at(2024, 1, 15), (item("a", 10000),)),
            state(
                "sub_1",
                at(2024, 3, 10),
                (item("a", 10000),),
                started_at=at(2024, 1, 15),
                current_period_start=at(2024, 3, 15),
                current_period_end=at(2024, 4, 15),
                cancel_at_period_end=True,
                canceled_at=at(2024, 3, 10),
            ),
        ]
    )
    default = kinds(compute_movements(subs, MAR, MAY))
    assert list(default) == [("2024-04", MovementKind.CHURN)]
    assert default["2024-04", MovementKind.CHURN].churn == eur(10000)
    eager = RevenuePolicy(cancel_at_period_end=CancelAtPeriodEnd.CHURN_WHEN_SCHEDULED)
    assert list(kinds(compute_movements(subs, MAR, MAY, eager))) == [
        ("2024-03", MovementKind.CHURN)
    ]


def test_immediate_cancellation_churns_in_the_month_it_ends():
    """A subscription cancelled immediately on 10 March churns its 100.00 in March."""
    subs = histories(
        [
            state("sub_1", at(2024, 1, 1), (item("a", 10000),)),
            state(
                "sub_1",
                at(2024, 3, 10),
                (item("a", 10000),),
                status="canceled",
                started_at=at(2024, 1, 1),
                canceled_at=at(2024, 3, 10),
                ended_at=at(2024, 3, 10),
            ),
        ]
    )
    report = compute_movements(subs, MAR, APR)
    assert kinds(report)["2024-03", MovementKind.CHURN].churn == eur(10000)
    assert report.totals[1].closing == eur(0)


def test_returning_customer_is_reactivation_not_new():
    """A customer who churned in March and subscribes again for 60.00 in June is 60.00 of reactivation, even when March is outside the report."""
    subs = histories(
        [
            state("sub_1", at(2024, 1, 1), (item("a", 10000),), ended_at=at(2024, 3, 10)),
            state("sub_2", at(2024, 6, 3), (item("b", 6000),)),
        ]
    )
    rows = kinds(compute_movements(subs, MAY, JUN))
    assert rows["2024-06", MovementKind.REACTIVATION].reactivation == eur(6000)
    assert not any(kind is MovementKind.NEW for _m, kind in rows)


def test_failed_payment_then_recovery():
    """A renewal failing on 20 April and recovered on 3 May changes nothing by default; excluding past due, it churns 100.00 in April and reactivates it in May."""
    plan = (item("a", 10000),)
    subs = histories(
        [
            state("sub_1", at(2024, 1, 20), plan),
            state("sub_1", at(2024, 4, 20), plan, status="past_due", started_at=at(2024, 1, 20)),
            state("sub_1", at(2024, 5, 3), plan, started_at=at(2024, 1, 20)),
        ]
    )
    assert kinds(compute_movements(subs, APR, MAY)) == {}
    strict = RevenuePolicy(past_due=PastDueTreatment.EXCLUDE)
    rows = kinds(compute_movements(subs, APR, MAY, strict))
    assert rows["2024-04", MovementKind.CHURN].churn == eur(10000)
    assert rows["2024-05", MovementKind.REACTIVATION].reactivation == eur(10000)
    grace = RevenuePolicy(past_due_grace_days=5)
    assert Exclusion.PAST_DUE in {line.excluded for line in explain(subs, "acme", APR, grace).lines}


def test_refund_reduces_cash_not_recognised_revenue():
    """A 100.00 payment in January refunded 30.00 in February is 100.00 cash in January and -30.00 in February; recognised revenue is untouched."""
    payment = Payment(
        source=SourceRef(system="stripe", object="charge", id="ch_1"),
        amount=eur(10000),
        paid_at=at(2024, 1, 5),
    )
    refund = Refund(
        source=SourceRef(system="stripe", object="refund", id="re_1"),
        payment=payment.source,
        amount=eur(3000),
        refunded_at=at(2024, 2, 9),
    )
    jan, feb = revenue_by_month(JAN, FEB, payments=[payment], refunds=[refund])
    assert (jan.cash, feb.cash) == (eur(10000), eur(-3000))
    assert (jan.recognised, feb.recognised) == (eur(0), eur(0))


def test_dispute_withdraws_cash_and_a_won_dispute_returns_it():
    """A 100.00 payment in March disputed in April and won in June is -100.00 cash in April and +100.00 in June."""
    payment = Payment(
        source=SourceRef(system="stripe", object="charge", id="ch_1"),
        amount=eur(10000),
        paid_at=at(2024, 3, 2),
    )
    dispute = Dispute(
        payment=payment.source,
        amount=eur(10000),
        withdrawn_at=at(2024, 4, 8),
        reinstated_at=at(2024, 6, 1),
    )
    rows = revenue_by_month(MAR, JUN, payments=[payment], disputes=[dispute])
    assert [row.cash.amount for row in rows] == [10000, -10000, 0, 10000]


def test_trial_is_excluded_until_it_ends():
    """A 14-day trial from 20 January excludes the plan in January and counts 100.00 of new MRR in February."""
    subs = histories(
        [
            state(
                "sub_1",
                at(2024, 1, 20),
                (item("a", 10000),),
                status="trialing",
                trial_end=at(2024, 2, 3),
            ),
            state(
                "sub_1",
                at(2024, 2, 3),
                (item("a", 10000),),
                started_at=at(2024, 1, 20),
                trial_end=at(2024, 2, 3),
            ),
        ]
    )
    assert measure_mrr(subs, JAN).lines[0].excluded is Exclusion.TRIAL
    rows = kinds(compute_movements(subs, JAN, FEB))
    assert list(rows) == [("2024-02", MovementKind.NEW)]


def test_discounts_follow_the_policy():
    """A 20 % forever coupon makes 100.00 into 80.00; a 3-month 50 % coupon halves MRR only while it runs, and not at all under the forever-only policy."""
    forever = Discount(percent_off=Decimal(20))
    subs = histories([state("sub_1", at(2024, 1, 1), (item("a", 10000),), discounts=[forever])])
    assert measure_mrr(subs, JAN).totals() == {"EUR": eur(8000)}
    repeating = Discount(
        percent_off=Decimal(50), duration=DiscountDuration.REPEATING, ends_at=at(2024, 4, 1)
    )
    subs = histories([state("sub_1", at(2024, 1, 1), (item("a", 10000),), discounts=[repeating])])
    assert measure_mrr(subs, MAR).totals() == {"EUR": eur(5000)}
    assert measure_mrr(subs, APR).totals() == {"EUR": eur(10000)}
    stripe_like = RevenuePolicy(discounts=DiscountTreatment.FOREVER_ONLY)
    assert measure_mrr(subs, MAR, stripe_like).totals() == {"EUR": eur(10000)}


def test_amount_off_is_split_over_items_in_proportion():
    """A 30.00 amount-off coupon on items of 100.00 and 50.00 takes 20.00 and 10.00, leaving 120.00 of MRR."""
    coupon = Discount(amount_off=eur(3000))
    subs = histories(
        [state("sub_1", at(2024, 1, 1), (item("a", 10000), item("b", 5000)), discounts=[coupon])]
    )
    lines = measure_mrr(subs, JAN).lines
    assert [line.discount for line in lines] == [eur(2000), eur(1000)]
    assert sum(line.mrr.amount for line in lines) == 12000


@pytest.mark.parametrize(
    ("interval", "count", "cents", "expected"),
    [
        ("month", 3, 30000, [10000, 10000, 10000]),
        ("week", 1, 1000, [4334, 4334, 4334]),
        ("month", 1, 999, [999, 999, 999]),
    ],
)
def test_interval_normalisation(interval, count, cents, expected):
    """Quarterly 300.00 is 100.00 a month; weekly 10.00 is 520.00 a year split over 12 (43.34 for the first 4 months); monthly is unchanged."""
    subs = histories([state("sub_1", at(2024, 1, 1), (item("a", cents, interval, count),))])
    assert [measure_mrr(subs, m).totals()["EUR"].amount for m in (JAN, FEB, MAR)] == expected


def test_explain_shows_each_item_with_normalisation_and_reasons():
    """Explain lists every item of the customer, counted or not, with its normalisation, discount and exclusion reason."""
    usage = item("m", 5)
    snap = state(
        "sub_1",
        at(2024, 1, 1),
        (item("y", 120000, "year", quantity=2), usage),
        metered=[usage.source],
        discounts=[Discount(percent_off=Decimal(10))],
    )
    explanation = explain(histories([snap]), "acme", MAR)
    annual, metered_line = explanation.lines
    assert annual.period_amount == eur(240000)
    assert annual.discount == eur(24000)
    assert annual.mrr == eur(18000)
    assert "/ 12 months, part 3 of 12" in annual.normalisation
    assert metered_line.excluded is Exclusion.METERED
    assert explanation.totals == {"EUR": eur(18000)}
    assert explanation.policy["discounts"] == "apply_active"
