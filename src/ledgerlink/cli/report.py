"""``ledgerlink report``: MRR, ARR and MRR movements from the subscriptions in the store.

The reports read the Stripe subscriptions and invoices landed in the store, map them through
the configured mappings (records that do not map are quarantined, as in a sync cycle) and hand
them to :mod:`ledgerlink.revenue`. Customers are keyed by their Stripe customer until matching
links them to golden customers.

Two Stripe facts have no canonical field, so they are read from the landed records themselves:
which prices are metered (``recurring.usage_type``), so usage is never counted as MRR, and
disputes (funds withdrawn and reinstated, from each dispute's balance transactions), so cash
goes down when a bank takes a payment back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlink.cli._common import fail, out, state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.domain.entities import CreditNote, Invoice, Payment, Quote, Refund, SourceRef
    from ledgerlink.mapping import MappingSet
    from ledgerlink.revenue import Dispute, Month, RevenuePolicy, SubscriptionHistory

__all__ = [
    "Billing",
    "RevenueInputs",
    "app",
    "load_billing",
    "load_revenue",
    "metered_references",
    "months_ending",
    "stripe_disputes",
]

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
PastDueOption = Annotated[
    str,
    typer.Option(
        "--past-due",
        help=(
            "include: past-due subscriptions count while Stripe retries the payment; "
            "exclude: they churn at the failed payment and come back as reactivation."
        ),
    ),
]


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


def _stripe_payloads(engine: Engine, object_name: str) -> Iterator[dict[str, Any]]:
    """Yield the landed payloads of one Stripe object (not deleted), page by page."""
    from sqlalchemy import select

    from ledgerlink.store.models import SourceRecord

    table = SourceRecord.__table__  # type: ignore[attr-defined]
    last_id = 0
    while True:
        query = (
            select(table.c.id, table.c.payload)
            .where(
                table.c.system == "stripe",
                table.c.object == object_name,
                table.c.deleted_at.is_(None),
                table.c.id > last_id,
            )
            .order_by(table.c.id)
            .limit(500)
        )
        with engine.connect() as conn:
            rows = list(conn.execute(query))
        if not rows:
            return
        for row in rows:
            if isinstance(row.payload, dict):
                yield row.payload
        last_id = rows[-1].id


def _metered_price(price: Any) -> bool:
    recurring = price.get("recurring") if isinstance(price, dict) else None
    return isinstance(recurring, dict) and recurring.get("usage_type") == "metered"


def metered_references(engine: Engine) -> set[SourceRef]:
    """The Stripe subscription items and prices billed on usage, from the landed records.

    The canonical subscription has no usage type, so Stripe's ``recurring.usage_type`` is read
    from the prices, the subscriptions' items and, for items removed since, invoice lines.
    """
    from ledgerlink.domain.entities import SourceRef

    def item_ref(item_id: str) -> SourceRef:
        return SourceRef(system="stripe", object="subscription_item", id=item_id)

    prices = {p["id"] for p in _stripe_payloads(engine, "prices") if _metered_price(p)}
    items: set[str] = set()
    for subscription in _stripe_payloads(engine, "subscriptions"):
        for item in (subscription.get("items") or {}).get("data") or []:
            if isinstance(item, dict) and _metered_price(item.get("price")):
                prices.add(item["price"]["id"])
                items.add(item["id"])
    if prices:
        for invoice in _stripe_payloads(engine, "invoices"):
            for line in (invoice.get("lines") or {}).get("data") or []:
                price = line.get("price") if isinstance(line, dict) else None
                billed = isinstance(price, dict) and price.get("id") in prices
                if billed and line.get("subscription_item"):
                    items.add(line["subscription_item"])
    return {item_ref(i) for i in items} | {
        SourceRef(system="stripe", object="prices", id=p) for p in prices
    }


def load_billing(engine: Engine, mappings: MappingSet) -> Billing:
    """Map the Stripe subscriptions and invoices in the store into revenue inputs.

    Each subscription's history is rebuilt from its invoices (one snapshot per billed period
    and per mid-period change, then its current state), so upgrades, downgrades and
    cancellations show as movements in the months they happened. Metered items are marked so
    that usage is reported apart from MRR. Records that do not map are quarantined (as in a
    sync cycle) and left out.
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
    snapshots = rebuild_histories(subscriptions, invoices, metered=metered_references(engine))
    return Billing(histories=list(histories(snapshots)), invoices=invoices)


def _policy(past_due: str) -> RevenuePolicy:
    """The revenue policy the options choose; exit 2 on an unknown choice."""
    from ledgerlink.revenue import PastDueTreatment, RevenuePolicy

    try:
        treatment = PastDueTreatment(past_due.strip().lower())
    except ValueError:
        fail(f"--past-due {past_due!r}: use include or exclude", 2)
    return RevenuePolicy(past_due=treatment)


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
    past_due: PastDueOption = "include",
) -> None:
    """MRR and ARR per month, customer and currency, with metered usage and one-off charges apart.

    With --explain CUSTOMER, list the subscription items that make that customer's MRR in the
    last month: normalisation to a month, discounts, and why an item is left out.
    """
    from ledgerlink.revenue import explain, explain_table, mrr_table, render

    start, end = _months(first, last)
    policy = _policy(past_due)
    billing = _load_billing(ctx)
    if explain_customer:
        table = explain_table(explain(billing.histories, explain_customer, end, policy))
    else:
        table = mrr_table(
            billing.histories,
            start,
            end,
            policy,
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
    past_due: PastDueOption = "include",
) -> None:
    """Monthly MRR movements: opening + new + expansion - contraction - churn + reactivation = closing."""
    from ledgerlink.revenue import compute_movements, movements_table, render

    start, end = _months(first, last)
    policy = _policy(past_due)
    billing = _load_billing(ctx)
    report = compute_movements(billing.histories, start, end, policy, customer=customer)
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
    disputes: list[Dispute] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether the store holds nothing the report counts."""
        return not (
            self.quotes
            or self.invoices
            or self.credit_notes
            or self.payments
            or self.refunds
            or self.disputes
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


def _stripe_exponents(mappings: MappingSet) -> dict[str, int]:
    """The decimals Stripe uses per currency where ISO 4217 differs (the charges mapping's)."""
    charges = mappings.object_mapping("stripe", "charges")
    spec = charges.fields.get("amount") if charges is not None else None
    for step in spec.transforms if spec is not None else ():
        exponents = getattr(step.params, "exponents", None)
        if step.name == "money_minor" and isinstance(exponents, dict):
            return dict(exponents)
    return {}


def _dispute(payload: dict[str, Any], exponents: dict[str, int]) -> Dispute | None:
    """A dispute's cash effect; None when no funds were withdrawn (an inquiry)."""
    from ledgerlink.domain.currencies import get_currency
    from ledgerlink.domain.entities import SourceRef
    from ledgerlink.domain.money import Money
    from ledgerlink.revenue import Dispute

    moves = [t for t in payload.get("balance_transactions") or [] if isinstance(t, dict)]
    withdrawn = [int(t["created"]) for t in moves if int(t["amount"]) < 0]
    reinstated = [int(t["created"]) for t in moves if int(t["amount"]) > 0]
    if not withdrawn:
        return None
    code = get_currency(str(payload["currency"])).code
    amount = Money.from_scaled(
        int(payload["amount"]), exponents.get(code, get_currency(code).exponent), code
    )
    charge = payload["charge"]
    charge_id = str(charge["id"] if isinstance(charge, dict) else charge)
    return Dispute(
        payment=SourceRef(system="stripe", object="charges", id=charge_id),
        amount=amount,
        withdrawn_at=datetime.fromtimestamp(min(withdrawn), UTC),
        reinstated_at=datetime.fromtimestamp(max(reinstated), UTC) if reinstated else None,
    )


def stripe_disputes(engine: Engine, mappings: MappingSet) -> list[Dispute]:
    """Disputes from the landed Stripe dispute records, for the cash column.

    A dispute moves money only through its balance transactions: the negative one withdraws
    the disputed amount, a positive one (a won dispute) gives it back; an inquiry has none and
    is left out. Amounts use the scale the charges mapping uses for the currency. A record that
    cannot be read is logged and left out.
    """
    from ledgerlink.log import get_logger

    exponents = _stripe_exponents(mappings)
    disputes: list[Dispute] = []
    for payload in _stripe_payloads(engine, "disputes"):
        try:
            dispute = _dispute(payload, exponents)
        except (KeyError, TypeError, ValueError) as exc:  # ValueError: a bad amount or currency
            get_logger().warning(
                "report.dispute_unreadable", dispute=str(payload.get("id")), error=str(exc)
            )
            continue
        if dispute is not None:
            disputes.append(dispute)
    return disputes


def load_revenue(engine: Engine, mappings: MappingSet) -> RevenueInputs:
    """Map the quotes (Salesforce) and invoices, credit notes, charges, refunds and disputes (Stripe).

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
    inputs.disputes.extend(stripe_disputes(engine, mappings))
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
    discounts, less credit notes; cash succeeded payments less refunds and disputes (a won
    dispute comes back); recognised revenue
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
        disputes=inputs.disputes,
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
