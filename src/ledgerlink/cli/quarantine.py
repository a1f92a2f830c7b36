"""``ledgerlink quarantine``: records that failed a stage, why, and retrying them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from ledgerlink.cli._common import EXIT_FAILED, fail, out, state

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Records that failed to map (or to match, plan or push) wait in quarantine with their "
        "reason while the sync goes on. List them, look at one, retry after fixing the cause."
    ),
    no_args_is_help=True,
)

_REASON_WIDTH = 80


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("list")
def list_rows(
    ctx: typer.Context,
    include_resolved: Annotated[
        bool, typer.Option("--all", help="Include resolved rows too.")
    ] = False,
    system: Annotated[str | None, typer.Option(help="Only this system.")] = None,
    stage: Annotated[
        str | None, typer.Option(help="Only this stage (map, match, plan, push).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 100,
) -> None:
    """List quarantined records, newest first: id, record, stage and reason."""
    from ledgerlink.mapping import list_quarantine
    from ledgerlink.store import create_engine_for

    engine = create_engine_for(state(ctx).config().database.url)
    try:
        rows = list_quarantine(
            engine, include_resolved=include_resolved, system=system, stage=stage, limit=limit
        )
    finally:
        engine.dispose()
    if not rows:
        out.print("quarantine is empty")
        return
    table = Table("id", "record", "stage", "since", "resolved", "reason")
    for row in rows:
        reason = (
            row.reason if len(row.reason) <= _REASON_WIDTH else row.reason[:_REASON_WIDTH] + "…"
        )
        table.add_row(
            str(row.id),
            f"{row.system}/{row.object}/{row.external_id}",
            row.stage,
            _when(row.created_at),
            _when(row.resolved_at),
            reason,
        )
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    quarantine_id: Annotated[
        int, typer.Argument(metavar="ID", help="Quarantine id, from `quarantine list`.")
    ],
) -> None:
    """Show one quarantined record: where it comes from, the full reason and its payload."""
    from ledgerlink.mapping import get_quarantine
    from ledgerlink.store import create_engine_for

    engine = create_engine_for(state(ctx).config().database.url)
    try:
        row = get_quarantine(engine, quarantine_id)
    finally:
        engine.dispose()
    if row is None:
        fail(f"no quarantine row {quarantine_id}")
    table = Table(show_header=False)
    for label, value in (
        ("id", str(row.id)),
        ("record", f"{row.system}/{row.object}/{row.external_id}"),
        ("stage", row.stage),
        ("since", _when(row.created_at)),
        ("resolved", _when(row.resolved_at)),
        ("reason", row.reason),
    ):
        table.add_row(label, value)
    out.print(table)
    out.print(Syntax(json.dumps(row.payload, indent=2, sort_keys=True, ensure_ascii=False), "json"))


@app.command("retry")
def retry(
    ctx: typer.Context,
    quarantine_ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID]...", help="Quarantine ids to retry.")
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--all", help="Retry every open record of stage map.")
    ] = False,
) -> None:
    """Map quarantined records again with the current mappings and the latest landed data.

    A record that maps now is resolved and flows on in the next sync cycle; one that still
    fails keeps its row with the new reason. Exits 1 when any record still fails.
    """
    from ledgerlink.mapping import MappingError, Normalizer, load_mappings, retry_quarantined
    from ledgerlink.store import create_engine_for

    if bool(quarantine_ids) == retry_all:
        fail("give quarantine ids or --all (not both)", 2)
    config = state(ctx).config()
    try:
        mappings = load_mappings(config.mappings_dir)
    except MappingError as exc:
        fail(f"the mappings have problems; run `ledgerlink mappings check`\n{exc}", 2)
    engine = create_engine_for(config.database.url)
    try:
        outcomes = retry_quarantined(
            engine,
            Normalizer(mappings),
            ids=None if retry_all else quarantine_ids,
            now=datetime.now(UTC),
        )
    finally:
        engine.dispose()
    if not outcomes:
        out.print("nothing to retry")
        return
    table = Table("id", "record", "result", "reason")
    for outcome in outcomes:
        result = "[green]resolved[/]" if outcome.ok else "[red]still failing[/]"
        table.add_row(str(outcome.id), str(outcome.ref), result, outcome.reason or "")
    out.print(table)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(EXIT_FAILED)
