"""Report tables for ``ledgerlink report mrr|movements|revenue`` and their renderers.

Each ``*_table`` function turns revenue results into a :class:`Table` (columns plus rows of
plain cells); :func:`render` writes a table as a terminal table, CSV or JSON, so the CLI stays a
thin layer. Money cells render as decimal text in CSV and tables, and as
``{"amount": minor units, "currency": code}`` in JSON (exact, never a float).

CSV output is spreadsheet-safe: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return is prefixed with ``'`` so that a spreadsheet does not run it as a
formula. Plain decimal numbers (``-12.34``) are left as numbers: a spreadsheet reads them as
values, and finance users sum them.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.table import Table as RichTable

from ledgerlink.domain.entities import Invoice, SourceRef
from ledgerlink.domain.money import Money
from ledgerlink.revenue.movements import MovementReport
from ledgerlink.revenue.mrr import (
    CustomerResolver,
    Month,
    MrrExplanation,
    SubscriptionHistory,
    arr,
    customer_mrr,
    default_customer,
    month_range,
    usage_and_one_off,
)
from ledgerlink.revenue.policy import RateTable, RevenuePolicy
from ledgerlink.revenue.recognition import RevenueRow

__all__ = [
    "Cell",
    "ReportFormat",
    "Table",
    "explain_table",
    "movements_table",
    "mrr_table",
    "neutralise_cell",
    "render",
    "revenue_table",
    "write_csv_row",
]

Cell = str | int | Money | None
"""A report cell: text, a count, an amount or empty."""

_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReportFormat(enum.StrEnum):
    """Output format of a report."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Table:
    """A report: a title, column names and rows of cells.

    Attributes:
        title: what the report shows.
        columns: column names (also the JSON keys).
        rows: one tuple of cells per row, as long as ``columns``.
        notes: lines printed under a terminal table (policy, reconciliation).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = field(default=())


def neutralise_cell(text: str) -> str:
    """Make a CSV cell safe to open in a spreadsheet.

    Args:
        text: the cell text.

    Returns:
        ``text`` prefixed with ``'`` when it starts with ``=``, ``+``, ``-``, ``@``, tab or
        carriage return and is not a plain decimal number; otherwise ``text``.
    """
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv_row(out: TextIO, cells: Sequence[str]) -> None:
    """Write one CSV row ending in ``\\n``, quoting every cell when one holds a carriage return.

    Python's writer only quotes the characters of its own line ending, so a bare ``\\r`` would
    go out unquoted; spreadsheets read it as a line break, and a value ``x\\r=cmd()`` would
    start a new row with a live formula.
    """
    if any("\r" in cell for cell in cells):
        csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(cells)
    else:
        csv.writer(out, lineterminator="\n").writerow(cells)


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Money):
        return str(cell.to_decimal())
    return str(cell)


def _json_cell(cell: Cell) -> object:
    if isinstance(cell, Money):
        return {"amount": cell.amount, "currency": cell.currency}
    return cell


def render(table: Table, report_format: ReportFormat | str = ReportFormat.TABLE) -> str:
    """Render ``table`` as text.

    Args:
        table: the report.
        report_format: ``table`` (aligned, for a terminal), ``csv`` or ``json``.

    Returns:
        The rendered report.

    Raises:
        ValueError: an unknown format.
    """
    chosen = ReportFormat(report_format)
    if chosen is ReportFormat.JSON:
        records = [
            {column: _json_cell(cell) for column, cell in zip(table.columns, row, strict=True)}
            for row in table.rows
        ]
        return json.dumps({"title": table.title, "rows": records}, indent=2) + "\n"
    if chosen is ReportFormat.CSV:
        buffer = io.StringIO()
        write_csv_row(buffer, [neutralise_cell(column) for column in table.columns])
        for row in table.rows:
            write_csv_row(buffer, [neutralise_cell(_text(cell)) for cell in row])
        return buffer.getvalue()
    rich_table = RichTable(title=table.title)
    for column in table.columns:
        rich_table.add_column(column, no_wrap=True)
    for row in table.rows:
        rich_table.add_row(*(_text(cell) for cell in row))
    buffer = io.StringIO()
    console = Console(file=buffer, width=10_000, color_system=None, force_terminal=False)
    console.print(rich_table)
    for note in table.notes:
        console.print(note, markup=False, highlight=False)
    return buffer.getvalue()


def mrr_table(
    subscription_histories: Sequence[SubscriptionHistory],
    first: Month,
    last: Month,
    policy: RevenuePolicy | None = None,
    *,
    customer: str | None = None,
    invoices: Iterable[Invoice] = (),
    metered: Iterable[SourceRef] = (),
    customer_of: CustomerResolver = default_customer,
    rates: RateTable | None = None,
) -> Table:
    """MRR, ARR, metered usage and one-off charges per month, customer and currency.

    Args:
        subscription_histories: the subscriptions.
        first: first month.
        last: last month.
        policy: the MRR choices; default :class:`RevenuePolicy()`.
        customer: only this customer.
        invoices: invoices, for metered usage and one-off charges (reported apart).
        metered: metered item or price references; default those the snapshots mark.
        customer_of: customer key of an invoice's party.
        rates: convert every amount into ``rates.currency``.

    Returns:
        One row per month, customer and currency, then a total row per month and currency.

    Raises:
        MissingRateError: ``rates`` lacks a currency in use.
    """
    chosen = policy or RevenuePolicy()
    usage_refs = set(metered)
    for history in subscription_histories:
        for snap in history.snapshots:
            usage_refs.update(snap.metered)
    extras = {
        (row.month, row.customer, row.metered.currency): row
        for row in usage_and_one_off(invoices, usage_refs, customer_of)
    }
    rows: list[tuple[Cell, ...]] = []

    def convert(money: Money) -> Money:
        return rates.convert(money, chosen.rounding) if rates else money

    for month in month_range(first, last):
        amounts: dict[tuple[str, str], list[Money]] = {}
        for history in subscription_histories:
            counted = customer_mrr(history, month, chosen)
            if counted is None:
                continue
            who, currency, amount = counted
            slot = amounts.setdefault((who, currency), [Money(0, currency)] * 3)
            slot[0] = slot[0] + Money(amount, currency)
        for (m, who, currency), extra in extras.items():
            if m == month:
                slot = amounts.setdefault((who, currency), [Money(0, currency)] * 3)
                slot[1], slot[2] = extra.metered, extra.one_off
        totals: dict[str, list[Money]] = {}
        for (who, _currency), (mrr, usage, one_off) in sorted(amounts.items()):
            if customer is not None and who != customer:
                continue
            values = [convert(mrr), convert(usage), convert(one_off)]
            code = values[0].currency
            rows.append((str(month), who, code, values[0], arr(values[0]), values[1], values[2]))
            total = totals.setdefault(code, [Money(0, code)] * 3)
            totals[code] = [a + b for a, b in zip(total, values, strict=True)]
        for code, (mrr, usage, one_off) in sorted(totals.items()):
            rows.append((str(month), "(total)", code, mrr, arr(mrr), usage, one_off))
    notes = tuple(f"{key}: {value}" for key, value in chosen.describe().items())
    return Table(
        title="MRR (metered usage and one-off charges reported apart, not in MRR)",
        columns=("month", "customer", "currency", "mrr", "arr", "metered", "one_off"),
        rows=tuple(rows),
        notes=notes,
    )


def movements_table(report: MovementReport, *, by_customer: bool = False) -> Table:
    """MRR movements per month and currency (or per customer).

    Args:
        report: the result of :func:`~ledgerlink.revenue.movements.compute_movements`.
        by_customer: one row per customer and month with a change, instead of totals.

    Returns:
        The table; totals carry customer counts.
    """
    amounts = ("opening", "new", "expansion", "contraction", "churn", "reactivation", "closing")
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    if by_customer:
        rows = tuple(
            (str(row.month), row.customer, row.currency, *(getattr(row, a) for a in amounts))
            for row in report.rows
        )
        columns = ("month", "customer", "currency", *amounts)
    else:
        rows = tuple(
            (
                str(total.month),
                total.currency,
                *(getattr(total, a) for a in amounts),
                total.new_customers,
                total.churned_customers,
                total.reactivated_customers,
            )
            for total in report.totals
        )
        columns = ("month", "currency", *amounts, "new_customers", "churned", "reactivated")
    return Table(
        title="MRR movements: opening + new + expansion - contraction - churn + reactivation = closing",
        columns=columns,
        rows=rows,
    )


def revenue_table(rows: Iterable[RevenueRow]) -> Table:
    """Bookings, billings, cash and recognised revenue side by side.

    Args:
        rows: the result of :func:`~ledgerlink.revenue.recognition.revenue_by_month`.

    Returns:
        The table.
    """
    return Table(
        title="Bookings, billings, cash and recognised revenue",
        columns=("month", "currency", "bookings", "billings", "cash", "recognised"),
        rows=tuple(
            (str(r.month), r.currency, r.bookings, r.billings, r.cash, r.recognised) for r in rows
        ),
    )


def explain_table(explanation: MrrExplanation) -> Table:
    """The lines that make a customer's MRR, for ``report mrr --explain``.

    Args:
        explanation: the result of :func:`~ledgerlink.revenue.mrr.explain`.

    Returns:
        One row per subscription item, then the totals and the policy as notes.
    """
    rows = tuple(
        (
            str(line.subscription),
            str(line.item) if line.item else "",
            str(line.product) if line.product else "",
            line.status,
            line.quantity,
            line.unit_price,
            line.period_amount,
            line.discount,
            line.normalisation,
            line.mrr,
            str(line.excluded) if line.excluded else "",
        )
        for line in explanation.lines
    )
    notes = tuple(
        [f"MRR {code}: {total}" for code, total in sorted(explanation.totals.items())]
        + [f"{key}: {value}" for key, value in explanation.policy.items()]
    )
    return Table(
        title=f"MRR of {explanation.customer} in {explanation.month}",
        columns=(
            "subscription",
            "item",
            "product",
            "status",
            "quantity",
            "unit_price",
            "period_amount",
            "discount",
            "normalisation",
            "mrr",
            "excluded",
        ),
        rows=rows,
        notes=notes,
    )
