"""``ledgerlink import csv``: land vendor CSV exports as source records, to try before connecting.

Exit codes: 0 when every row landed, 1 when rows or a whole file were rejected (the other files
and rows still land), 2 for usage and configuration errors (unknown system or object, a bad
``--map``, a missing file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from ledgerlink.cli._common import EXIT_CONFIG, EXIT_FAILED, err, fail, out, state

__all__ = ["app", "import_csv"]

app = typer.Typer(
    help=(
        "Import vendor exports (CSV) as if a connector had read them, so matching and the "
        "reports can be tried before handing over API credentials."
    ),
    no_args_is_help=True,
)

_PROGRESS_MIN_BYTES = 1 << 20  # a bar for files of a megabyte and more
_SHOWN_PROBLEMS = 20


def _overrides(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        column, sep, api_field = pair.partition("=")
        if not sep or not column.strip() or not api_field.strip():
            fail(f"--map expects COLUMN=FIELD, got {pair!r}", EXIT_CONFIG)
        result[column.strip()] = api_field.strip()
    return result


def _advance(bar: Progress, task: TaskID) -> Callable[[int, int], None]:
    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return advance


@app.command("csv")
def import_csv(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="CSV files to import.", dir_okay=False)],
    system: Annotated[
        str, typer.Option(help="The system the export comes from: salesforce, stripe, quickbooks.")
    ],
    object_name: Annotated[
        str,
        typer.Option(
            "--object", help="The exported object: Account, customers (or customer), Customer..."
        ),
    ],
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="COLUMN=FIELD: the API field a column holds (nested with . or _). Repeatable.",
        ),
    ] = None,
) -> None:
    """Land each FILE's rows as source records of SYSTEM/OBJECT; each file all or nothing.

    Headers may be API field names (``address_line1``, ``BillAddr.City``) or the vendor's
    export labels (``Address Line1``, ``Account Name``, ``Company name``).
    """
    from ledgerlink.csvimport import (
        FileRefusedError,
        UnknownObjectError,
        UnknownSystemError,
        import_file,
        object_spec,
    )
    from ledgerlink.store import Store, create_engine_for

    overrides = _overrides(maps or [])
    try:
        object_spec(system, object_name)
    except (UnknownSystemError, UnknownObjectError) as exc:
        fail(str(exc), EXIT_CONFIG)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", EXIT_CONFIG)
    engine = create_engine_for(state(ctx).config().database.url)
    rejected = False
    try:
        store = Store(engine)
        for path in files:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=path.stat().st_size < _PROGRESS_MIN_BYTES,
            ) as bar:
                task = bar.add_task(path.name, total=path.stat().st_size)
                try:
                    summary = import_file(
                        store,
                        path,
                        system=system,
                        object_name=object_name,
                        overrides=overrides,
                        progress=_advance(bar, task),
                    )
                except FileRefusedError as exc:
                    err.print(
                        f"[bold red]{path}: refused, nothing imported:[/] {escape(str(exc))}",
                        highlight=False,
                        soft_wrap=True,
                    )
                    rejected = True
                    continue
            result = summary.result
            out.print(
                f"{path}: {summary.rows} rows ({summary.encoding}) -> {summary.system}/"
                f"{summary.object}: {result.inserted} inserted, {result.updated} updated, "
                f"{result.unchanged} unchanged, {len(summary.problems)} problems",
                highlight=False,
                soft_wrap=True,
            )
            for problem in summary.problems[:_SHOWN_PROBLEMS]:
                err.print(
                    f"  {path.name}: {problem}", highlight=False, markup=False, soft_wrap=True
                )
            if len(summary.problems) > _SHOWN_PROBLEMS:
                err.print(f"  ... and {len(summary.problems) - _SHOWN_PROBLEMS} more")
            rejected = rejected or bool(summary.problems)
    finally:
        engine.dispose()
    if rejected:
        raise typer.Exit(EXIT_FAILED)
