"""``ledgerlink sync run``: one full cycle (pull, match, plan, push) with progress and a summary.

``--dry-run`` pulls and matches into the local store, then prints every write the plan would
make, field by field (old -> new), and queues and sends nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledgerlink.cli._common import EXIT_CONFIG, EXIT_FAILED, fail, out, state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.connector.protocol import Connector
    from ledgerlink.mapping import MappingSet
    from ledgerlink.sync.cycle import CycleReport
    from ledgerlink.sync.ledger import LedgerOptions

__all__ = ["app"]

app = typer.Typer(
    help="Run the sync cycle: pull every system, match customers, plan and push the writes.",
    no_args_is_help=True,
)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _print_writes(report: CycleReport) -> None:
    plan = report.plan
    if plan is None:
        return
    if not plan.ops:
        out.print("no writes: every target already holds what the plan wants")
        return
    table = Table("target", "action", "record", "customer", "field", "old", "new", "from")
    for op in plan.ops:
        record = f"{op.object} {op.remote_id or '(new)'}"
        for number, change in enumerate(op.changes):
            first = number == 0
            table.add_row(
                op.target if first else "",
                op.action.value if first else "",
                record if first else "",
                op.customer_id if first else "",
                change.field,
                _show(change.old),
                _show(change.new),
                change.source,
            )
    out.print(table)


def _print_summary(report: CycleReport, dry_run: bool) -> None:
    table = Table(
        "system",
        "read",
        "changed",
        "matched",
        "queued for review",
        "written",
        "failed",
        "quarantined",
        title="sync run (dry run: nothing queued or sent)" if dry_run else "sync run",
    )
    for line in report.systems.values():
        table.add_row(
            line.system,
            str(line.read),
            str(line.changed),
            str(line.matched),
            str(line.review),
            "-" if dry_run else str(line.written),
            "-" if dry_run else str(line.failed),
            str(line.quarantined),
        )
    out.print(table)
    if report.plan is not None:
        plan = report.plan
        queued = "nothing queued" if dry_run else f"{plan.queued} newly queued"
        out.print(
            f"plan: {plan.customers} customers, {len(plan.ops)} writes ({queued}), "
            f"{len(plan.conflicts)} fields held for review",
            highlight=False,
        )
        for note in plan.notes:
            out.print(f"  note: {note}", highlight=False, markup=False)
    for result in report.pulls:
        if not result.ok:
            out.print(f"[red]{result.connector} {result.stream} failed: {result.error}[/]")
    for pushed in report.pushes:
        if pushed.stopped:
            out.print(f"[red]{pushed.target} stopped: {pushed.stopped}[/]")


def _connect(ctx: typer.Context, engine: Engine, names: list[str] | None) -> dict[str, Connector]:
    from ledgerlink.connector import load_plugin
    from ledgerlink.store import DbSecretStore
    from ledgerlink.sync.runtime import UnconfiguredSecretStore, connect

    config = state(ctx).config()
    configured = sorted(config.connectors)
    if not configured:
        fail("no connector is configured: add [connectors.NAME] tables to the config", EXIT_CONFIG)
    unknown = sorted(set(names or ()) - set(configured))
    if unknown:
        fail(
            f"not configured: {', '.join(unknown)} (configured: {', '.join(configured)})",
            EXIT_CONFIG,
        )
    key = config.secrets.encryption_key
    # The command's own engine holds the credentials too, so nothing is left open after it.
    secrets = (
        UnconfiguredSecretStore() if key is None else DbSecretStore(engine, key.get_secret_value())
    )
    return {
        name: connect(load_plugin(name), config.connectors[name], secrets)
        for name in (names or configured)
    }


@app.command("run")
def run(
    ctx: typer.Context,
    connector: Annotated[
        list[str] | None,
        typer.Option("--connector", help="Only pull from and push to this connector (repeat)."),
    ] = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only pull this stream (repeat).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the writes field by field; queue and send nothing."),
    ] = False,
) -> None:
    """Run one cycle: pull, match, plan, push; print what each stage did.

    Exits 1 when a stream failed or a write failed, 2 for configuration errors.
    """
    from ledgerlink.cli.match import open_engine, open_mappings
    from ledgerlink.connector.errors import ConnectorError
    from ledgerlink.sync.cycle import ledger_options

    mappings = open_mappings(ctx)
    with open_engine(ctx) as engine:
        connectors = _connect(ctx, engine, connector)
        try:
            report = _run(
                engine,
                connectors,
                mappings,
                stream=stream,
                dry_run=dry_run,
                ledger=ledger_options(state(ctx).config()),
            )
        except ConnectorError as exc:
            fail(str(exc), EXIT_CONFIG if exc.kind == "configuration" else EXIT_FAILED)
        finally:
            for connected in connectors.values():
                connected.close()
    if dry_run:
        _print_writes(report)
    _print_summary(report, dry_run)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _run(
    engine: Engine,
    connectors: dict[str, Connector],
    mappings: MappingSet,
    *,
    stream: list[str] | None,
    dry_run: bool,
    ledger: LedgerOptions,
) -> CycleReport:
    from ledgerlink.store import Store
    from ledgerlink.sync.cycle import run_cycle

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def advance(stage: str, detail: str, count: int) -> None:
            label = f"{stage}: {detail}"
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=None)
            progress.advance(tasks[label], count)

        return run_cycle(
            Store(engine),
            connectors,
            mappings,
            now=datetime.now(UTC),
            streams=stream,
            dry_run=dry_run,
            progress=advance,
            ledger=ledger,
        )
