"""``ledgerlink demo``: the whole loop on the embedded SQLite store and the sandbox fakes.

It starts every installed connector's sandbox on loopback, pulls every stream into a fresh
SQLite store (showing progress), runs a second cycle to show that nothing changed costs next to
nothing, maps every record to canonical entities (quarantining what does not map), matches the parties
of every system into golden customers with a review queue for doubt, and prints the MRR
movements of the last six months. Nothing leaves the machine.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ledgerlink.cli._common import fail, out
from ledgerlink.connector import SandboxOptions, discover
from ledgerlink.connector.errors import ConnectorError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["demo"]


def demo(
    directory: Annotated[
        Path,
        typer.Option(help="Working folder for the demo database (recreated).", file_okay=False),
    ] = Path(".ledgerlink-demo"),
    size: Annotated[int, typer.Option(help="Customers per sandbox.", min=1)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox data.")] = 7,
) -> None:
    """Run ledgerlink end to end against the sandboxes, on a fresh SQLite database."""
    from ledgerlink.log import configure_logging
    from ledgerlink.store import DbSecretStore, Store, generate_key, upgrade
    from ledgerlink.store.db import create_engine_for
    from ledgerlink.sync.engine import pull
    from ledgerlink.sync.runtime import connect

    # The demo's tables say what happened; per-stream log events would only interleave.
    configure_logging(level="WARNING")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    engine = create_engine_for(f"sqlite:///{(directory / 'demo.db').resolve().as_posix()}")
    upgrade(engine)
    store = Store(engine)
    secrets = DbSecretStore(engine, generate_key())
    out.print(f"[bold]ledgerlink demo[/]: SQLite store in {directory}/demo.db")

    plugins = {name: lc.plugin for name, lc in discover().items() if lc.plugin is not None}
    if not plugins:
        fail("no connector is installed; run `python3 dev.py setup`")
    summary = Table(
        "connector", "stream", "records", "API calls (1st)", "API calls (2nd)", "changed (2nd)"
    )
    for name, plugin in plugins.items():
        try:
            sandbox = plugin.start_sandbox(SandboxOptions(seed=seed, size=size))
        except ConnectorError as exc:
            out.print(f"[yellow]{name}: no sandbox ({exc}); skipped[/]")
            continue
        try:
            connector = connect(plugin, sandbox.connector_settings(), secrets)
            first_calls: dict[str, int] = {}
            with Progress(
                TextColumn(f"{name} {{task.description}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out,
                transient=True,
            ) as progress:
                firsts = []
                for stream in connector.streams():
                    task = progress.add_task(stream.name, total=None)
                    before = sandbox.faults.request_count

                    def advance(_stream: str, count: int, task: TaskID = task) -> None:
                        progress.advance(task, count)

                    firsts.extend(pull(store, connector, [stream.name], progress=advance))
                    first_calls[stream.name] = sandbox.faults.request_count - before
            for result in firsts:
                before = sandbox.faults.request_count
                (second,) = pull(store, connector, [result.stream])
                summary.add_row(
                    name,
                    result.stream,
                    str(result.read) if result.ok else f"[red]failed: {result.error}[/]",
                    str(first_calls[result.stream]),
                    str(sandbox.faults.request_count - before),
                    str(second.inserted + second.updated + second.deleted),
                )
            connector.close()
        finally:
            sandbox.stop()
    out.print(summary)
    _normalise_and_report(engine, list(plugins))
    config_path = directory / "ledgerlink.toml"
    config_path.write_text(
        f'[database]\nurl = "sqlite:///{(directory / "demo.db").resolve().as_posix()}"\n',
        encoding="utf-8",
    )
    engine.dispose()
    out.print("\n[bold]Try next[/] (the demo database stays for you to explore):")
    for command in (
        "conflicts list",
        "customer show stripe:customers:<id>",
        "match export matches.csv",
        "quarantine list",
        "report mrr",
        "report movements --by-customer",
        "report mrr --explain stripe/customers/<id>",
        "mappings show stripe",
    ):
        out.print(f"  ledgerlink -c {config_path} {command}", highlight=False, soft_wrap=True)


def _normalise_and_report(engine: Engine, systems: list[str]) -> None:
    """Map every landed record to canonical entities, then show MRR movements."""
    from ledgerlink.cli.report import load_billing, months_ending
    from ledgerlink.mapping import load_mappings
    from ledgerlink.mapping.normalize import normalize_changed
    from ledgerlink.revenue import compute_movements, movements_table, render

    mappings = load_mappings(None)
    now = datetime.now(UTC)
    table = Table("system", "mapped", "quarantined", "tombstones", "no mapping")
    for system in systems:
        report = normalize_changed(engine, mappings, system, since=None, now=now)
        table.add_row(
            system,
            str(report.mapped),
            str(report.quarantined),
            str(report.deleted),
            str(report.unmapped),
        )
    out.print(table)
    from ledgerlink.matching.persist import run_matching

    matched = run_matching(engine, mappings, now=now)
    out.print(
        f"[bold]matching[/]: {matched.parties} parties -> {matched.customers} customers "
        f"({matched.multi_record_customers} seen in several records), "
        f"{matched.auto_links} automatic links, {matched.review_queue} pairs for review "
        f"({matched.seconds:.1f} s, {matched.model} model)"
    )
    billing = load_billing(engine, mappings)
    first, last = months_ending()
    movements = compute_movements(billing.histories, first, last)
    out.print(
        render(movements_table(movements), "table"), markup=False, highlight=False, soft_wrap=True
    )
