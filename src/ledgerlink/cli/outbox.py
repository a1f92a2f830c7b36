"""``ledgerlink outbox``: the writes waiting for, sent to, or refused by the target systems."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from ledgerlink.cli._common import fail, out, state

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Every write the hub makes to Salesforce, Stripe or QuickBooks waits in the outbox "
        "with its idempotency key until the push worker sends it. See what is pending, in "
        "flight, done or failed; retry failed writes after fixing the cause; cancel a write "
        "that must not happen."
    ),
    no_args_is_help=True,
)

_ERROR_WIDTH = 60
_STATUSES = "pending, in_flight, done, failed, cancelled"
_STYLE = {
    "pending": "yellow",
    "in_flight": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "dim",
}


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status(value: str) -> str:
    return f"[{_STYLE.get(value, 'default')}]{value}[/]"


def _short(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= _ERROR_WIDTH else text[:_ERROR_WIDTH] + "…"


@app.command("list")
def list_command(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help=f"Only rows with this status ({_STATUSES}).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Only writes to this connector (salesforce, stripe, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 50,
) -> None:
    """List outbox rows, newest first, with a count per status.

    Each row shows its target, object and action, the hub entity it belongs to, its status,
    how many sends it took, when it is due next, the target's id once written, and the last
    error.
    """
    from ledgerlink.store import create_engine_for
    from ledgerlink.sync.outbox import count_by_status, list_rows

    if status is not None and status not in _STYLE:
        fail(f"unknown status {status!r}; use one of {_STATUSES}", 2)
    engine = create_engine_for(state(ctx).config().database.url)
    try:
        listed = list_rows(engine, status=status, target=target, limit=limit)
        counts = count_by_status(engine, target=target)
    finally:
        engine.dispose()
    summary = ", ".join(f"{name} {counts.get(name, 0)}" for name in _STYLE)
    if not listed:
        out.print(f"no outbox rows match ({summary})")
        return
    table = Table(
        "id", "target", "write", "entity", "status", "sends", "next", "remote id", "last error"
    )
    for row in listed:
        entity = f"{row.entity_kind}/{row.entity_id}" if row.entity_id else "-"
        table.add_row(
            str(row.id),
            row.target,
            f"{row.action} {row.object}",
            entity,
            _status(row.status),
            str(row.attempts),
            _when(row.next_attempt_at) if row.status == "pending" else "-",
            row.remote_id or "-",
            _short(row.last_error),
        )
    out.print(table)
    out.print(summary)


@app.command("show")
def show(
    ctx: typer.Context,
    row_id: Annotated[int, typer.Argument(metavar="ID", help="Outbox row id, from `outbox list`.")],
) -> None:
    """Show one outbox row: its key, status, claim, full last error and payload."""
    from ledgerlink.store import create_engine_for
    from ledgerlink.sync.outbox import OutboxRowNotFoundError, get_row

    engine = create_engine_for(state(ctx).config().database.url)
    try:
        row = get_row(engine, row_id)
    except OutboxRowNotFoundError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    table = Table(show_header=False)
    entity = f"{row.entity_kind}/{row.entity_id}" if row.entity_id else "-"
    for label, value in (
        ("id", str(row.id)),
        ("target", row.target),
        ("write", f"{row.action} {row.object}"),
        ("entity", entity),
        ("status", _status(row.status)),
        ("idempotency key", row.idempotency_key),
        ("sends", str(row.attempts)),
        ("next attempt", _when(row.next_attempt_at)),
        ("remote id", row.remote_id or "-"),
        ("claimed by", row.claimed_by or "-"),
        ("lease until", _when(row.claimed_until)),
        ("created", _when(row.created_at)),
        ("updated", _when(row.updated_at)),
        ("last error", row.last_error or "-"),
    ):
        table.add_row(label, value)
    out.print(table)
    out.print(Syntax(json.dumps(row.payload, indent=2, sort_keys=True, ensure_ascii=False), "json"))


@app.command("retry")
def retry(
    ctx: typer.Context,
    row_ids: Annotated[
        list[int] | None,
        typer.Argument(metavar="[ID]...", help="Failed or cancelled rows to send again."),
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed row.")] = False,
    target: Annotated[
        str | None, typer.Option(help="With --failed: only this connector's rows.")
    ] = None,
) -> None:
    """Send failed (or cancelled) writes again: they become pending, due now, attempts reset.

    The idempotency key stays the same, so a write that did reach the target is answered with
    the object it made, never a second one. Fix the cause first (see `outbox show ID` and
    `quarantine list --stage push`). Exits 1 when a row does not exist or is not failed or
    cancelled (then nothing changes).
    """
    from ledgerlink.store import create_engine_for
    from ledgerlink.sync.outbox import OutboxError, retry_rows

    if bool(row_ids) == failed:
        fail("give row ids or --failed (not both)", 2)
    engine = create_engine_for(state(ctx).config().database.url)
    try:
        retried = retry_rows(engine, row_ids, all_failed=failed, target=target)
    except OutboxError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    if not retried:
        out.print("nothing to retry")
        return
    out.print(f"{len(retried)} row(s) pending again: {', '.join(map(str, retried))}")


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    row_id: Annotated[int, typer.Argument(metavar="ID", help="Pending or failed row to cancel.")],
) -> None:
    """Cancel a pending or failed write so it is never sent (`outbox retry ID` undoes it).

    A row in flight cannot be cancelled: it may be reaching the target right now. Exits 1
    when the row does not exist or cannot be cancelled.
    """
    from ledgerlink.store import create_engine_for
    from ledgerlink.sync.outbox import OutboxError, cancel_row

    engine = create_engine_for(state(ctx).config().database.url)
    try:
        row = cancel_row(engine, row_id)
    except OutboxError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    out.print(f"outbox row {row.id} ({row.action} {row.object} to {row.target}) cancelled")
