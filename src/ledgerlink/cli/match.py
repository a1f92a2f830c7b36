"""``ledgerlink match``: run matching over the store, and export who is linked to whom.

``match run`` normalises every landed party, matches them into customers (human decisions
first, then cross-references, then scores) and saves customers, links and the review queue.
``match export`` writes one row per source record as CSV (safe to open in a spreadsheet) or
JSON. The helpers here (engine, actor, spreadsheet-safe CSV) are shared by ``conflicts`` and
``customer``.
"""

from __future__ import annotations

import getpass
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledgerlink.cli._common import fail, out, state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.mapping import MappingSet

__all__ = [
    "EXPORT_COLUMNS",
    "OutputFormat",
    "app",
    "default_actor",
    "open_engine",
    "open_mappings",
    "render_rows",
    "spreadsheet_safe",
]

app = typer.Typer(
    help=(
        "Match Salesforce Accounts, Stripe customers and QuickBooks customers into one "
        "customer per company, and export the result. Doubtful pairs wait in "
        "`ledgerlink conflicts list`."
    ),
    no_args_is_help=True,
)

EXPORT_COLUMNS = (
    "record_id",
    "system",
    "object",
    "cluster_id",
    "customer_id",
    "link_method",
    "score",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class OutputFormat(StrEnum):
    """How a listing is written."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class ExportFormat(StrEnum):
    """File formats of ``match export``."""

    CSV = "csv"
    JSON = "json"


def spreadsheet_safe(value: object) -> str:
    """Return a CSV cell that a spreadsheet shows as text, never runs as a formula.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
    with ``'`` (the OWASP advice against CSV injection).

    Args:
        value: the cell value (None is an empty cell).

    Returns:
        The cell text.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: OutputFormat | ExportFormat
) -> str:
    """Write rows as CSV (spreadsheet-safe) or JSON.

    Args:
        rows: the rows.
        columns: the CSV columns, in order.
        fmt: ``csv`` or ``json``.

    Returns:
        The text.
    """
    if fmt == "json":
        return json.dumps(list(rows), indent=2, ensure_ascii=False, default=str) + "\n"
    from ledgerlink.revenue.report import write_csv_row

    buffer = io.StringIO()
    write_csv_row(buffer, list(columns))
    for row in rows:
        write_csv_row(buffer, [spreadsheet_safe(row.get(c)) for c in columns])
    return buffer.getvalue()


def default_actor() -> str:
    """Return who runs the command: ``$LEDGERLINK_ACTOR``, else the login name."""
    actor = os.environ.get("LEDGERLINK_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextmanager
def open_engine(ctx: typer.Context) -> Iterator[Engine]:
    """Open the configured store for one command and dispose of it afterwards."""
    from ledgerlink.store import create_engine_for

    engine = create_engine_for(state(ctx).config().database.url)
    try:
        yield engine
    finally:
        engine.dispose()


def open_mappings(ctx: typer.Context) -> MappingSet:
    """Load the configured mappings (exit 2 with the problems when they are invalid)."""
    from ledgerlink.mapping import MappingError, load_mappings

    try:
        return load_mappings(state(ctx).config().mappings_dir)
    except MappingError as exc:
        fail(str(exc), code=2)


@app.command("run")
def run(
    ctx: typer.Context,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit", help="Fit the scoring model on this store's parties instead of reusing it."
        ),
    ] = False,
    link_threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Match probability from which pairs are linked."),
    ] = 0.95,
    review_threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Match probability from which pairs are reviewed."),
    ] = 0.50,
) -> None:
    """Match every landed party into customers and save customers, links and the review queue.

    Human decisions (`ledgerlink conflicts link|split|never-link`) are applied first and never
    overridden; then cross-references; then scores. Customer ids stay the same across runs.
    """
    from ledgerlink.matching import MatchConfig
    from ledgerlink.matching.persist import run_matching

    try:
        config = MatchConfig(link_threshold=link_threshold, review_threshold=review_threshold)
    except ValueError as exc:
        fail(str(exc), code=2)
    mappings = open_mappings(ctx)
    with (
        open_engine(ctx) as engine,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} records"),
            TimeElapsedColumn(),
            console=out,
            transient=True,
        ) as progress,
    ):
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, count: int) -> None:
            if stage not in tasks:
                for task in tasks.values():
                    progress.update(task, total=progress.tasks[task].completed)
                tasks[stage] = progress.add_task(stage, total=None)
            progress.advance(tasks[stage], count)

        summary = run_matching(
            engine, mappings, now=datetime.now(UTC), config=config, refit=refit, progress=advance
        )
    table = Table("", "", title="matching run", show_header=False)
    for label, value in (
        ("parties", summary.parties),
        ("matched this run", f"{summary.changed} ({summary.mode})"),
        ("customers", summary.customers),
        ("customers with several records", summary.multi_record_customers),
        ("automatic links", summary.auto_links),
        ("links decided by people", summary.human_links),
        ("review queue", summary.review_queue),
        ("new customers", summary.customers_created),
        ("customers merged away", summary.customers_retired),
        ("rows written", summary.rows_written),
        ("model", summary.model),
        ("time", f"{summary.seconds:.2f} s"),
    ):
        table.add_row(label, str(value))
    out.print(table)
    if summary.review_queue:
        out.print("review the doubtful pairs with `ledgerlink conflicts list`")


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="File to write ('-' for standard output).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = (
        ExportFormat.CSV
    ),
) -> None:
    """Export one row per source record: record_id, system, object, cluster_id, customer_id,
    link_method, score.

    cluster_id is the customer the record sits in; customer_id is set only when the link is
    settled (empty while the record waits in the review queue); link_method and score are
    empty for a customer of one record. CSV cells are safe to open in a spreadsheet.
    """
    from ledgerlink.matching.persist import load_links

    with open_engine(ctx) as engine:
        links = load_links(engine)
    rows = []
    for link in links:
        alone = any(r.get("kind") == "alone" for r in link.reasons)
        rows.append(
            {
                "record_id": link.ref.id,
                "system": link.ref.system,
                "object": link.ref.object,
                "cluster_id": link.customer_id,
                "customer_id": link.customer_id if link.status == "linked" else "",
                "link_method": "" if alone else link.method,
                "score": None if alone else link.score,
            }
        )
    text = render_rows(rows, EXPORT_COLUMNS, fmt)
    if str(file) == "-":
        out.file.write(text)
        return
    file.write_text(text, encoding="utf-8")
    out.print(f"wrote {len(rows)} records to {file}")
