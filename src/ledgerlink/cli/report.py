"""``ledgerlink report``: MRR, ARR and MRR movements from the subscriptions in the store.

The reports read the Stripe subscriptions and invoices landed in the store, map them through
the configured mappings (records that do not map are quarantined, as in a sync cycle) and hand
them to :mod:`ledgerlink.revenue`. Customers are keyed by their Stripe customer until matching
links them to golden customers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerlink.cli._common import fail, out, state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.domain.entities import CreditNote, Invoice, Payment, Quote, Refund, SourceRef
    from ledgerlink.mapping import MappingSet
    from ledgerlink.revenue import Month, SubscriptionHistory

__all__ = ["Billing", "RevenueInputs", "app", "load_billing", "load_revenue", "months_ending"]

app = typer.Typer(
    help=(
        "Revenue reports from the billing data in the store: MRR and ARR per customer and "
        "month, and monthly MRR movements (new, expansion, contraction, churn, reactivation) "
        "that reconcile opening to closing MRR, and bookings, billings, cash and recognised revenue "
        "side by side. Definitions: docs/revenue.md."
    ),
    no_args_is_help=True,
)

FromOption = Annotated[
    str | None, typer.Option("--from", help="First month, YYYY-MM [default: 5 months ago].")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="Last month, YYYY-MM [default: this month].")
]
CustomerOption = Annotated[str | None, typer.Option(help="Only this customer key.")]
FormatOption = Annotated[str, typer.Option("--format", help="table, csv or json.")]


@dataclass(frozen=True)
class Billing:
    """Revenue inputs: subscription histories and invoices."""

    histories: list[SubscriptionHistory]
    invoices: list[Invoice]


def months_ending(end: Month | None = None, count: int = 6) -> tuple[Month, Month]:
    """Return the first and last of the ``count`` months ending with ``end`` (default: now)."""
    from ledgerlink.revenue import Month

    if end is None:
        now = datetime.now(UTC)
        end = Month(now.year, now.month)
    index = end.year * 12 + end.month - 1 - (count - 1)
    return Month(index // 12, index % 12 + 1), end


def _months(first: str | None, last: str | None) -> tuple[Month, Month]:
    from ledgerlink.revenue import Month

    try:
        default_start, end = months_ending(Month.parse(last) if last else None)
        start = Month.parse(first) if first else default_start
    except ValueError as exc:
        fail(f"{exc} (months are written YYYY-MM)", 2)
    if (start.year, start.month) > (end.year, end.month):
        fail("--from is after --to", 2)
    return start, end


def load_billing(engine: Engine, mappings: MappingSet) -> Billing:
    """Map the Stripe subscriptions and invoices in the store into revenue inputs.

    Each subscription's history is rebuilt from its invoices (one snapshot per billed period
    and per mid-period change, then its current state), so upgrades, downgrades and
    cancellations show as movements in the months they happened. Records that do not map are
    quarantined (as in a sync cycle) and left out.
    """
    from ledgerlink.domain.entities import Invoice, Subscription
    from ledgerlink.mapping.normalize import iter_normalized
    from ledgerlink.revenue import histories
    from ledgerlink.revenue.history import rebuild_histories

    subscriptions: list[Subscription] = []
    invoices: list[Invoice] = []
    for outcome in iter_normalized(
        engine,
        mappings,
        "stripe",
        since=None,
        now=datetime.now(UTC),
        objects=["subscriptions", "invoices"],
    ):
        if isinstance(outcome.entity, Subscription):
            subscriptions.append(outcome.entity)
        elif isinstance(outcome.entity, Invoice):
            invoices.append(outcome.entity)
    snapshots = rebuild_histories(subscriptions, invoices)
    return Billing(histories=list(histories(snapshots)), invoices=invoices)


def _load_billing(ctx: typer.Context) -> Billing:
    from ledgerlink.mapping import MappingError, load_mappings
    from ledgerlink.store.db import create_engine_for

    config = state(ctx).config()
    try:
        mappings = load_mappings(config.mappings_dir)
    except MappingError as exc:
        fail(f"mappings: {exc} (run `ledgerlink mappings check`)", 2)
    engine = create_engine_for(config.database.url)
    try:
        return load_billing(engine, mappings)
    finally:
        engine.dispose()


@app.command("mrr")
def mrr(
    ctx: typer.Context,
    first: FromOption = None,
    last: ToOption = None,
    customer: CustomerOption = None,
    explain_customer: Annotated[
        str | None,
        typer.Option("--explain", help="Show how this customer's MRR in --to's month is made."),
    ] = None,
    report_format: FormatOption = "table",
) -> None:
    """MRR and ARR per month, customer and currency, with metered usage and one-off charges apart.

    With --explain CUSTOMER, list the subscription items that make that customer's MRR in the
    last month: normalisation to a month, discounts, and why an item is left out.
    """
    from ledgerlink.revenue import explain, explain_table, mrr_table, render

    start, end = _months(first, last)
    billing = _load_billing(ctx)
    if explain_customer:
        table = explain_table(explain(billing.histories, explain_customer, end))
    else:
        table = mrr_table(
            billing.histories,
            start,
            end,
            customer=customer,
            invoices=billing.invoices,
        )
    _print(render(table, report_format))


@app.command("movements")
def movements(
    ctx: typer.Context,
    first: FromOption = None,
    last: ToOption = None,
    customer: CustomerOption = None,
    by_customer: Annotated[
        bool, typer.Option("--by-customer", help="One row per customer and month with a change.")
    ] = False,
    report_format: FormatOption = "table",
) -> None:
    """Monthly MRR movements: opening + new + expansion - contraction - churn + reactivation = closing."""
    from ledgerlink.revenue import compute_movements, movements_table, render

    start, end = _months(first, last)
    billing = _load_billing(ctx)
    report = compute_movements(billing.histories, start, end, customer=customer)
    _print(render(movements_table(report, by_customer=by_customer), report_format))


@dataclass(frozen=True)
class RevenueInputs:
    """What ``report revenue`` reads: quotes, billing documents, payments and golden links."""

    quotes: list[Quote]
    invoices: list[Invoice]
    credit_notes: list[CreditNote]
    payments: list[Payment]
    refunds: list[Refund]
    golden: dict[tuple[str, str, str], str]

    @property
    def empty(self) -> bool:
        """Whether the store holds nothing the report counts."""
        return not (
            self.quotes or self.invoices or self.credit_notes or self.payments or self.refunds
        )

    def customer_of(self, party: SourceRef | None) -> str:
        """The golden customer of a record's party, else its ``system/object/id`` key."""
        from ledgerlink.revenue.mrr import default_customer

        if party is not None:
            golden = self.golden.get((party.system, party.object, party.id))
            if golden is not None:
                return golden
        return default_customer(party)


def _accepted(quote: Quote) -> Quote:
    """Give an accepted quote without an acceptance time its last change time.

    Salesforce's standard Quote has no acceptance date: the change that set ``Status`` to
    Accepted is the best record of it, so bookings are not silently empty.
    """
    from ledgerlink.domain.entities import QuoteStatus

    if quote.status is QuoteStatus.ACCEPTED and quote.accepted_at is None:
        return quote.model_copy(update={"accepted_at": quote.updated_at or quote.created_at})
    return quote


def load_revenue(engine: Engine, mappings: MappingSet) -> RevenueInputs:
    """Map the quotes (Salesforce) and invoices, credit notes, charges and refunds (Stripe).

    Records that do not map are quarantined (as in a sync cycle) and left out; golden customer
    links come from the matching run (``customer_link`` rows with status ``linked``).
    """
    from sqlalchemy import select

    from ledgerlink.domain.entities import CreditNote, Invoice, Payment, Quote, Refund
    from ledgerlink.mapping.normalize import iter_normalized
    from ledgerlink.store.models import CustomerLink, LinkStatus

    inputs = RevenueInputs([], [], [], [], [], {})
    now = datetime.now(UTC)
    sources = (
        ("salesforce", ["Quote"]),
        ("stripe", ["invoices", "credit_notes", "charges", "refunds"]),
    )
    for system, objects in sources:
        for outcome in iter_normalized(
            engine, mappings, system, since=None, now=now, objects=objects
        ):
            entity = outcome.entity
            if isinstance(entity, Quote):
                inputs.quotes.append(_accepted(entity))
            elif isinstance(entity, Invoice):
                inputs.invoices.append(entity)
            elif isinstance(entity, CreditNote):
                inputs.credit_notes.append(entity)
            elif isinstance(entity, Payment):
                inputs.payments.append(entity)
            elif isinstance(entity, Refund):
                inputs.refunds.append(entity)
    link = CustomerLink.__table__  # type: ignore[attr-defined]
    query = select(link.c.system, link.c.object, link.c.external_id, link.c.customer_id).where(
        link.c.status == LinkStatus.LINKED.value
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            inputs.golden[row.system, row.object, row.external_id] = row.customer_id
    return inputs


def _load_revenue(ctx: typer.Context) -> RevenueInputs:
    from ledgerlink.mapping import MappingError, load_mappings
    from ledgerlink.store.db import create_engine_for

    config = state(ctx).config()
    try:
        mappings = load_mappings(config.mappings_dir)
    except MappingError as exc:
        fail(f"mappings: {exc} (run `ledgerlink mappings check`)", 2)
    engine = create_engine_for(config.database.url)
    try:
        return load_revenue(engine, mappings)
    finally:
        engine.dispose()


@app.command("revenue")
def revenue(
    ctx: typer.Context,
    first: FromOption = None,
    last: ToOption = None,
    customer: Annotated[
        str | None,
        typer.Option(help="Only this customer: a golden customer id or a system/object/id key."),
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Only this currency (ISO code).")] = None,
    report_format: FormatOption = "table",
) -> None:
    """Bookings, billings, cash and recognised revenue side by side, per month and currency.

    Bookings are accepted quotes net of tax; billings finalised invoices net of tax and
    discounts, less credit notes; cash succeeded payments less refunds; recognised revenue
    spreads each invoice line straight-line by day over its service period. See docs/revenue.md.
    """
    from ledgerlink.revenue import render, revenue_by_month, revenue_table
    from ledgerlink.revenue.report import ReportFormat, Table

    if report_format not in {f.value for f in ReportFormat}:
        fail(f"--format {report_format!r}: use table, csv or json", 2)
    start, end = _months(first, last)
    code = currency.strip().upper() if currency else None
    if code is not None and not re.fullmatch(r"[A-Z]{3}", code):
        fail(f"--currency {currency!r}: write a three-letter ISO 4217 code such as EUR", 2)
    inputs = _load_revenue(ctx)
    rows = revenue_by_month(
        start,
        end,
        quotes=inputs.quotes,
        invoices=inputs.invoices,
        credit_notes=inputs.credit_notes,
        payments=inputs.payments,
        refunds=inputs.refunds,
        customer=customer,
        customer_of=inputs.customer_of,
    )
    rows = [row for row in rows if code is None or row.currency == code]
    table = revenue_table(rows)
    if not rows:
        why = (
            "the store holds no quotes, invoices or payments yet (run `ledgerlink sync run`)"
            if inputs.empty
            else "nothing matches the chosen months, customer and currency"
        )
        table = Table(table.title, table.columns, table.rows, notes=(f"No revenue: {why}.",))
    _print(render(table, report_format))


def _print(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _instant(text: str | None, flag: str) -> datetime | None:
    """Parse a --from/--to day (YYYY-MM-DD) as midnight UTC; exit 2 on a bad value."""
    if text is None:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        fail(f"{flag} {text!r}: write days as YYYY-MM-DD", 2)
    return day


@app.command("reconciliation")
def reconciliation(
    ctx: typer.Context,
    first: Annotated[
        str | None, typer.Option("--from", help="First payout day, YYYY-MM-DD (UTC).")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="Last payout day, YYYY-MM-DD (UTC), included.")
    ] = None,
    report_format: FormatOption = "table",
) -> None:
    """Stripe payouts against the clearing account: expected vs posted, difference, status.

    Each payout is tied to the balance transactions it paid out; the documents that posted
    them through the clearing account must add up to the payout. See docs/ledger.md.
    """
    from datetime import timedelta

    from ledgerlink.mapping import MappingError, load_mappings
    from ledgerlink.revenue.report import ReportFormat, Table, render
    from ledgerlink.store.db import create_engine_for
    from ledgerlink.sync.ledger import reconcile

    if report_format not in {f.value for f in ReportFormat}:
        fail(f"--format {report_format!r}: use table, csv or json", 2)
    start = _instant(first, "--from")
    end = _instant(last, "--to")
    if end is not None:
        end += timedelta(days=1)
    if start is not None and end is not None and start >= end:
        fail("--from is after --to", 2)
    config = state(ctx).config()
    try:
        mappings = load_mappings(config.mappings_dir)
    except MappingError as exc:
        fail(f"mappings: {exc} (run `ledgerlink mappings check`)", 2)
    engine = create_engine_for(config.database.url)
    try:
        lines = reconcile(engine, mappings, start=start, end=end)
    finally:
        engine.dispose()
    table = Table(
        title="Stripe payouts against the clearing account",
        columns=(
            "payout",
            "created",
            "currency",
            "expected",
            "posted",
            "difference",
            "transactions",
            "unposted",
            "tie",
            "status",
        ),
        rows=tuple(
            (
                line.payout_id,
                line.created.strftime("%Y-%m-%d %H:%M:%SZ"),
                line.currency,
                line.expected,
                line.posted,
                line.difference,
                line.transactions,
                line.unposted,
                line.tie,
                line.status,
            )
            for line in lines
        ),
    )
    _print(render(table, report_format))
