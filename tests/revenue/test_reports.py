"""Recognition by day, ACV, currency conversion and the report renderers."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from ledgerlink.domain.entities import (
    CreditNote,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Quote,
    QuoteLine,
    QuoteStatus,
    SourceRef,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import (
    MissingRateError,
    Month,
    RateTable,
    Table,
    compute_movements,
    contract_value,
    explain,
    explain_table,
    histories,
    movements_table,
    mrr_table,
    neutralise_cell,
    recognise,
    render,
    revenue_by_month,
    revenue_table,
)

from .conftest import at, item, state


def eur(cents: int) -> Money:
    return Money(cents, "EUR")


def test_line_is_recognised_by_day_across_months():
    """31.00 billed for 15 January to 15 February is 17 days (17.00) in January and 14 days (14.00) in February."""
    parts = recognise(eur(3100), at(2024, 1, 15, 10), at(2024, 2, 15, 10))
    assert parts == {Month(2024, 1): eur(1700), Month(2024, 2): eur(1400)}


def test_invoice_discount_and_credit_note_flow_through_billings_and_revenue():
    """A 120.00 annual line with a 20.00 invoice discount bills 100.00 in January and recognises it by day; a 10.00 credit note in March takes 10.00 off both."""
    invoice = Invoice(
        source=SourceRef(system="stripe", object="invoice", id="in_1"),
        status=InvoiceStatus.PAID,
        currency="EUR",
        total=eur(10000),
        discount=eur(2000),
        issued_at=at(2024, 1, 1),
        lines=(
            InvoiceLine(amount=eur(12000), period_start=at(2024, 1, 1), period_end=at(2025, 1, 1)),
        ),
    )
    note = CreditNote(
        source=SourceRef(system="stripe", object="credit_note", id="cn_1"),
        currency="EUR",
        total=eur(1000),
        issued_at=at(2024, 3, 3),
    )
    rows = revenue_by_month(
        Month(2024, 1), Month(2024, 12), invoices=[invoice], credit_notes=[note]
    )
    assert rows[0].billings == eur(10000)
    assert rows[2].billings == eur(-1000)
    assert sum(row.recognised.amount for row in rows) == 9000
    assert rows[0].recognised == eur(847)  # 10000 x 31/366 = 846.99 -> largest remainder


def test_acv_divides_contract_value_by_years():
    """A 2-year quote of 24,000.00 recurring plus a 1,000.00 set-up fee has ACV 12,000.00 (set-up excluded by default)."""
    quote = Quote(
        source=SourceRef(system="salesforce", object="Quote", id="0Q0"),
        status=QuoteStatus.ACCEPTED,
        currency="EUR",
        total=eur(2500000),
        accepted_at=at(2024, 1, 10),
        lines=(
            QuoteLine(
                unit_price=eur(2400000),
                amount=eur(2400000),
                interval=Interval.YEAR,
                start_date=date(2024, 2, 1),
                end_date=date(2026, 1, 31),
            ),
            QuoteLine(unit_price=eur(100000), amount=eur(100000)),
        ),
    )
    value = contract_value(quote)
    assert value.years == Fraction(2)
    assert (value.tcv, value.acv, value.one_time) == (eur(2400000), eur(1200000), eur(100000))
    (jan,) = revenue_by_month(Month(2024, 1), Month(2024, 1), quotes=[quote])
    assert jan.bookings == eur(2500000)


def test_conversion_uses_the_rate_table_and_refuses_a_missing_rate():
    """USD MRR converts into EUR at the table's fixed rate, and a currency without a rate raises instead of using 1."""
    subs = histories(
        [
            state("s1", at(2024, 1, 1), (item("a", 10000, currency="USD"),), currency="USD"),
            state("s2", at(2024, 1, 1), (item("b", 5000),), customer="globex"),
        ]
    )
    rates = RateTable("EUR", {"USD": Decimal("0.9")})
    report = compute_movements(subs, Month(2024, 1), Month(2024, 1), rates=rates)
    assert [t.new for t in report.totals] == [eur(9000 + 5000)]
    with pytest.raises(MissingRateError):
        compute_movements(subs, Month(2024, 1), Month(2024, 1), rates=RateTable("GBP"))


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-12.34", "-12.34"),
        ("Acme", "Acme"),
    ],
)
def test_csv_cells_are_neutralised(cell, safe):
    """A CSV cell starting with =, +, -, @, tab or CR is prefixed with a quote, while plain negative numbers stay numbers."""
    assert neutralise_cell(cell) == safe


def test_csv_render_neutralises_customer_names():
    """A customer named like a formula comes out of the MRR CSV neutralised."""
    subs = histories(
        [state("s1", at(2024, 1, 1), (item("a", 10000),), customer="=cmd|' /C calc'!A0")]
    )
    text = render(mrr_table(subs, Month(2024, 1), Month(2024, 1)), "csv")
    assert "'=cmd" in text
    assert "\n2024-01,'=cmd|' /C calc'!A0,EUR,100.00,1200.00,0.00,0.00\n" in text


def test_json_render_keeps_exact_minor_units():
    """JSON output carries money as integer minor units with the currency."""
    subs = histories([state("s1", at(2024, 1, 1), (item("a", 10001),))])
    report = compute_movements(subs, Month(2024, 1), Month(2024, 1))
    data = json.loads(render(movements_table(report), "json"))
    assert data["rows"][0]["new"] == {"amount": 10001, "currency": "EUR"}


def test_table_render_shows_explain_lines_and_policy():
    """The explain table shows the item's normalisation and the policy in the terminal format."""
    subs = histories([state("s1", at(2024, 1, 1), (item("y", 120000, "year"),))])
    text = render(explain_table(explain(subs, "acme", Month(2024, 2))), "table")
    assert "part 2 of 12" in text
    assert "MRR EUR: 100.00 EUR" in text
    assert "cancel_at_period_end: count_until_end" in text


def test_revenue_table_and_unknown_format():
    """The revenue table renders as CSV with one row per month, and an unknown format is refused."""
    rows = revenue_by_month(Month(2024, 1), Month(2024, 2), invoices=[])
    assert (
        render(revenue_table(rows), "csv") == "month,currency,bookings,billings,cash,recognised\n"
    )
    with pytest.raises(ValueError, match="xml"):
        render(Table("t", ("a",), ()), "xml")


@pytest.mark.parametrize("command", ["mrr", "movements"])
def test_an_unknown_past_due_choice_exits_2_before_reading_the_store(command: str) -> None:
    """`--past-due sometimes` is refused with the two valid choices named, exit code 2."""
    from typer.testing import CliRunner

    from ledgerlink.cli import app

    result = CliRunner().invoke(app, ["report", command, "--past-due", "sometimes"])
    assert result.exit_code == 2
    assert "use include or exclude" in result.output
