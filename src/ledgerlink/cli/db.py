"""``ledgerlink db``: create and migrate the store."""

from __future__ import annotations

from typing import Annotated

import typer

from ledgerlink.cli._common import out, state

__all__ = ["app"]

app = typer.Typer(
    help="Create and migrate the database (SQLite or PostgreSQL).", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION (default: the newest).

    Safe to run at any time: applied migrations are skipped. Works on SQLite and PostgreSQL.
    """
    from ledgerlink.store import current_revision
    from ledgerlink.store import upgrade as run_upgrade
    from ledgerlink.store.db import create_engine_for

    config = state(ctx).config()
    engine = create_engine_for(config.database.url)
    try:
        run_upgrade(engine, revision)
        out.print(f"database at revision [bold]{current_revision(engine)}[/]")
    finally:
        engine.dispose()


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the database's migration revision and the newest one this version ships.

    When they differ, run `ledgerlink db upgrade` (the daemon refuses to report ready until then).
    """
    from ledgerlink.store import current_revision, head_revision
    from ledgerlink.store.db import create_engine_for

    config = state(ctx).config()
    engine = create_engine_for(config.database.url)
    try:
        out.print(f"current: {current_revision(engine) or 'empty'}  head: {head_revision()}")
    finally:
        engine.dispose()
