"""``ledgerlink demo``: one story across three systems, on the embedded SQLite store.

It starts every installed connector's sandbox on loopback, all seeded from one shared roster of
messy companies (some in one system, some in two or three, with conflicting spellings), and
runs full sync cycles (pull, match, plan, ledger, push) into a fresh SQLite store: a first load,
then one cycle per month while Stripe's test clock moves a cohort of new subscriptions through
upgrades, added seats, downgrades, failed payments and cancellations. It ends with what was
read, matched, queued for review and written in each system, how many customers each system
count holds, the MRR movements, and the commands to explore the database it leaves behind.
Nothing leaves the machine.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledgerlink.cli._common import fail, out
from ledgerlink.connector import SandboxOptions, discover
from ledgerlink.connector.errors import ConnectorError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.connector.protocol import Connector, ConnectorPlugin, Sandbox, SecretStore
    from ledgerlink.connector.roster import Roster
    from ledgerlink.mapping import MappingSet
    from ledgerlink.store import Store
    from ledgerlink.sync.cycle import CycleReport

__all__ = ["demo"]

#: Illustrative exchange rates (USD per unit) for the demo's books, used where a Stripe balance
#: transaction carries none; a real deployment sets its own under ``[ledger.rates]``.
DEMO_RATES = {"CAD": "0.73", "EUR": "1.08", "GBP": "1.27", "JPY": "0.0067"}


@dataclass
class _Totals:
    """What every cycle of the demo read, per system, and the last cycle's report."""

    read: Counter[str] = field(default_factory=Counter)
    last: CycleReport | None = None
    cycles: int = 0

    def add(self, report: CycleReport) -> None:
        for result in report.pulls:
            self.read[result.connector] += result.read
        self.last = report
        self.cycles += 1


def demo(
    directory: Annotated[
        Path,
        typer.Option(help="Working folder for the demo database (recreated).", file_okay=False),
    ] = Path(".ledgerlink-demo"),
    size: Annotated[
        int, typer.Option(help="Companies in the shared roster of the sandboxes.", min=1)
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox data.")] = 7,
    months: Annotated[
        int, typer.Option(help="Months of Stripe subscription life to play.", min=0, max=12)
    ] = 4,
) -> None:
    """Run ledgerlink end to end against the sandboxes, on a fresh SQLite database."""
    from ledgerlink.connector.roster import Roster
    from ledgerlink.log import configure_logging
    from ledgerlink.mapping import load_mappings
    from ledgerlink.store import DbSecretStore, Store, generate_key, upgrade
    from ledgerlink.store.db import create_engine_for

    # The demo's tables say what happened; per-stream log events would only interleave.
    configure_logging(level="WARNING")
    started = time.monotonic()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    database_url = f"sqlite:///{(directory / 'demo.db').resolve().as_posix()}"
    engine = create_engine_for(database_url)
    upgrade(engine)
    store = Store(engine)
    secrets = DbSecretStore(engine, generate_key())
    out.print(f"[bold]ledgerlink demo[/]: SQLite store in {directory}/demo.db")

    plugins = {name: lc.plugin for name, lc in discover().items() if lc.plugin is not None}
    if not plugins:
        fail("no connector is installed; run `python3 dev.py setup`")
    roster = Roster(companies=size, seed=seed)
    sandboxes: dict[str, Sandbox] = {}
    connectors: dict[str, Connector] = {}
    totals = _Totals()
    try:
        _start(
            plugins,
            SandboxOptions(seed=seed, size=size, roster=roster),
            secrets,
            sandboxes,
            connectors,
        )
        _print_roster(roster, list(connectors))
        _seed_deals(sandboxes)
        mappings = load_mappings(None)
        totals.add(_cycle(store, connectors, mappings, "cycle 1 (first load)"))
        if "stripe" in sandboxes and months:
            _play_stripe_months(
                store, connectors, mappings, sandboxes["stripe"], roster, months, seed, totals
            )
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in sandboxes.values():
            sandbox.stop()
    _print_summary(engine, totals)
    _print_movements(engine)
    example = _three_system_record(engine)
    engine.dispose()
    config_path = directory / "ledgerlink.toml"
    rates = "".join(f'{currency} = "{rate}"\n' for currency, rate in DEMO_RATES.items())
    config_path.write_text(
        f'[database]\nurl = "{database_url}"\n\n[ledger]\nhome_currency = "USD"\n\n'
        f"[ledger.rates]\n{rates}",
        encoding="utf-8",
    )
    out.print(f"\n{totals.cycles} cycles in {time.monotonic() - started:.1f} s.", highlight=False)
    out.print("[bold]Try next[/] (the demo database stays for you to explore):")
    for command in try_next_commands(example):
        out.print(f"  ledgerlink -c {config_path} {command}", highlight=False, soft_wrap=True)


def _start(
    plugins: dict[str, ConnectorPlugin],
    options: SandboxOptions,
    secrets: SecretStore,
    sandboxes: dict[str, Sandbox],
    connectors: dict[str, Connector],
) -> None:
    """Start each plugin's sandbox and connect to it, filling ``sandboxes`` and ``connectors``
    as it goes so that the caller stops whatever started even when a later one fails."""
    from ledgerlink.sync.runtime import connect

    for name, plugin in plugins.items():
        try:
            sandbox = plugin.start_sandbox(options)
        except ConnectorError as exc:
            out.print(f"[yellow]{name}: no sandbox ({exc}); skipped[/]")
            continue
        sandboxes[name] = sandbox
        connectors[name] = connect(plugin, sandbox.connector_settings(), secrets)


def try_next_commands(example: str | None) -> list[str]:
    """The commands the demo suggests, ``example`` being a record of a customer to show."""
    return [
        "conflicts review",
        f"customer show {example}" if example else "customer show --name <text>",
        "report mrr",
        "report movements --by-customer",
        "outbox list",
        "quarantine list",
    ]


def _print_roster(roster: Roster, systems: list[str]) -> None:
    from ledgerlink.connector.roster import ROSTER_SYSTEMS

    held = [s for s in systems if s in ROSTER_SYSTEMS]
    companies = Counter(key for (system, _), key in roster.truth().items() if system in held)
    seen_in = Counter(
        len({s for (s, _), k in roster.truth().items() if k == key and s in held})
        for key in companies
    )
    records = ", ".join(f"{len(roster.rows(s))} in {s}" for s in held)
    spread = ", ".join(f"{seen_in[n]} in {n}" for n in sorted(seen_in))
    out.print(
        f"roster: {len(companies)} companies ({spread} systems); customer records: {records}",
        highlight=False,
    )


def _seed_deals(sandboxes: dict[str, Sandbox]) -> None:
    """Add fresh accepted quotes in Salesforce and their one-time prices in Stripe.

    Quotes accepted long ago are not billed when ledgerlink is switched on; these are accepted
    now, so the demo shows a deal becoming a Stripe subscription or invoice.
    """
    for sandbox, method in (
        (sandboxes.get("stripe"), "seed_one_time_prices"),
        (sandboxes.get("salesforce"), "seed_accepted_quotes"),
    ):
        seed = getattr(sandbox, method, None)
        if callable(seed):
            seed()


def _cycle(
    store: Store, connectors: dict[str, Connector], mappings: MappingSet, title: str
) -> CycleReport:
    """Run one full cycle with a progress line per stage, and print a one-line account."""
    from ledgerlink.sync.cycle import run_cycle
    from ledgerlink.sync.ledger import LedgerOptions

    with Progress(
        SpinnerColumn(),
        TextColumn(f"{title}: {{task.description}}"),
        TextColumn("{task.completed}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, detail: str, count: int) -> None:
            label = f"{stage} {detail}"
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=None)
            progress.advance(tasks[label], count)

        report = run_cycle(
            store,
            connectors,
            mappings,
            now=datetime.now(UTC),
            progress=advance,
            ledger=LedgerOptions(rates={c: Decimal(r) for c, r in DEMO_RATES.items()}),
        )
    read = sum(r.read for r in report.pulls)
    changed = sum(r.inserted + r.updated + r.deleted for r in report.pulls)
    sent = sum(p.done for p in report.pushes)
    matched = report.matching
    review = matched.review_queue if matched is not None else 0
    customers = matched.customers if matched is not None else 0
    out.print(
        f"[bold]{title}[/]: read {read} ({changed} changed), {customers} customers, "
        f"{review} pairs for review, {len(report.plan.ops) if report.plan else 0} writes planned, "
        f"{sent} written",
        highlight=False,
    )
    for result in report.pulls:
        if not result.ok:
            out.print(f"  [red]{result.connector} {result.stream} failed: {result.error}[/]")
    for pushed in report.pushes:
        if pushed.stopped:
            out.print(f"  [red]{pushed.target} stopped: {pushed.stopped}[/]")
    return report


def _play_stripe_months(
    store: Store,
    connectors: dict[str, Connector],
    mappings: MappingSet,
    sandbox: Sandbox,
    roster: Roster,
    months: int,
    seed: int,
    totals: _Totals,
) -> None:
    """Sign a cohort up on a Stripe test clock ``months`` ago, then play it month by month."""
    import httpx

    from ledgerlink.cli._stripe_story import StoryError, StripeStory, pick_cohort

    accounts = roster.rows("salesforce") if "salesforce" in connectors else ()
    billed = {
        str(row["metadata"]["salesforce_account_id"])
        for row in roster.rows("stripe")
        if (row.get("metadata") or {}).get("salesforce_account_id")
    }
    cohort = pick_cohort(accounts, billed, max(5, min(40, roster.companies // 8)))
    if not cohort:
        return
    story = StripeStory.connect(sandbox.connector_settings(), key_prefix=f"demo-{seed}")
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30 * months + 1)
        signed = story.begin(start, cohort)
        out.print(
            f"stripe: {signed} Salesforce accounts sign up on test clock {story.clock} "
            f"({start:%Y-%m-%d}); one card in five declines",
            highlight=False,
        )
        for month in range(1, months + 1):
            changes = story.play_month(month)
            made = ", ".join(f"{n} {what}" for what, n in changes.items() if n) or "renewals only"
            out.print(f"stripe clock -> {story.frozen:%Y-%m-%d}: {made}", highlight=False)
            totals.add(_cycle(store, connectors, mappings, f"cycle {month + 1} (month {month})"))
    except (StoryError, httpx.HTTPError) as exc:  # the story is a bonus: keep the rest
        out.print(f"[yellow]stripe test-clock story stopped: {exc}[/]")
    finally:
        story.close()


def _print_summary(engine: Engine, totals: _Totals) -> None:
    """Per system: read, matched, queued for review, written (created, updated), failed..."""
    from sqlalchemy import func, select

    from ledgerlink.store.models import CustomerLink, LinkStatus, Outbox, OutboxStatus

    outbox = Outbox.__table__  # type: ignore[attr-defined]
    links = CustomerLink.__table__  # type: ignore[attr-defined]
    written: Counter[tuple[str, str]] = Counter()
    failed: Counter[str] = Counter()
    with engine.connect() as conn:
        for target, action, status, count in conn.execute(
            select(outbox.c.target, outbox.c.action, outbox.c.status, func.count()).group_by(
                outbox.c.target, outbox.c.action, outbox.c.status
            )
        ):
            if status == OutboxStatus.DONE.value:
                written[target, "created" if action == "create" else "updated"] += count
            elif status == OutboxStatus.FAILED.value:
                failed[target] += count
        systems_of: dict[str, set[str]] = {}
        for customer_id, system in conn.execute(
            select(links.c.customer_id, links.c.system).where(
                links.c.status == LinkStatus.LINKED.value
            )
        ):
            systems_of.setdefault(customer_id, set()).add(system)
    table = Table(
        "system",
        "read",
        "matched",
        "queued for review",
        "written: created",
        "updated",
        "failed",
        "quarantined",
        title=f"what {totals.cycles} cycles did",
    )
    last = totals.last.systems if totals.last is not None else {}
    for system, line in last.items():
        table.add_row(
            system,
            str(totals.read[system]),
            str(line.matched),
            str(line.review),
            str(written[system, "created"]),
            str(written[system, "updated"]),
            str(failed[system]),
            str(line.quarantined),
        )
    out.print(table)
    spread = Counter(len(systems) for systems in systems_of.values())
    out.print(
        "customers seen in "
        + ", ".join(f"{spread[n]} in {n} system{'s' if n > 1 else ''}" for n in sorted(spread)),
        highlight=False,
    )


def _print_movements(engine: Engine) -> None:
    """The MRR movements of the last six months, from what the cycles landed."""
    from ledgerlink.cli.report import load_billing, months_ending
    from ledgerlink.mapping import load_mappings
    from ledgerlink.revenue import compute_movements, movements_table, render

    billing = load_billing(engine, load_mappings(None))
    first, last = months_ending()
    movements = compute_movements(billing.histories, first, last)
    out.print(
        render(movements_table(movements), "table"), markup=False, highlight=False, soft_wrap=True
    )


def _three_system_record(engine: Engine) -> str | None:
    """A record (``system:object:id``) of a customer linked in the most systems, to show."""
    from sqlalchemy import func, select

    from ledgerlink.store.models import CustomerLink, LinkStatus

    links = CustomerLink.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        best = conn.execute(
            select(links.c.customer_id)
            .where(links.c.status == LinkStatus.LINKED.value)
            .group_by(links.c.customer_id)
            .order_by(func.count(func.distinct(links.c.system)).desc(), links.c.customer_id)
            .limit(1)
        ).scalar()
        if best is None:
            return None
        row: Any = conn.execute(
            select(links.c.system, links.c.object, links.c.external_id)
            .where(links.c.customer_id == best, links.c.status == LinkStatus.LINKED.value)
            .order_by(links.c.system, links.c.external_id)
            .limit(1)
        ).one()
    return f"{row.system}:{row.object}:{row.external_id}"
