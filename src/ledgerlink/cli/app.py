"""Entry point of the ``ledgerlink`` command and its top-level options."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ledgerlink import __version__
from ledgerlink.cli import conflicts as conflicts_cmd
from ledgerlink.cli import connectors as connectors_cmd
from ledgerlink.cli import customer as customer_cmd
from ledgerlink.cli import db as db_cmd
from ledgerlink.cli import demo as demo_cmd
from ledgerlink.cli import importer as import_cmd
from ledgerlink.cli import init as init_cmd
from ledgerlink.cli import mappings as mappings_cmd
from ledgerlink.cli import match as match_cmd
from ledgerlink.cli import outbox as outbox_cmd
from ledgerlink.cli import quarantine as quarantine_cmd
from ledgerlink.cli import report as report_cmd
from ledgerlink.cli import sandbox as sandbox_cmd
from ledgerlink.cli import serve as serve_cmd
from ledgerlink.cli import sync as sync_cmd
from ledgerlink.cli import trace as trace_cmd
from ledgerlink.cli._common import EXIT_CONFIG, State, err
from ledgerlink.config import ConfigError
from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.log import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="ledgerlink",
    help=(
        "ledgerlink keeps Salesforce, Stripe and QuickBooks in step: one customer everywhere, "
        "quote to cash. Start with `ledgerlink init`, then `ledgerlink connectors list`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(db_cmd.app, name="db")
app.add_typer(connectors_cmd.app, name="connectors")
app.add_typer(mappings_cmd.app, name="mappings")
app.add_typer(quarantine_cmd.app, name="quarantine")
app.add_typer(outbox_cmd.app, name="outbox")
app.add_typer(match_cmd.app, name="match")
app.add_typer(conflicts_cmd.app, name="conflicts")
app.add_typer(customer_cmd.app, name="customer")
app.add_typer(import_cmd.app, name="import")
app.add_typer(report_cmd.app, name="report")
app.add_typer(sync_cmd.app, name="sync")
app.command("init")(init_cmd.init)
app.command("sandbox")(sandbox_cmd.sandbox)
app.command("demo")(demo_cmd.demo)
app.command("serve")(serve_cmd.serve)
app.command("trace")(trace_cmd.trace)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ledgerlink {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration file [default: $LEDGERLINK_CONFIG or ./ledgerlink.toml].",
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    log_level: Annotated[
        str | None, typer.Option(help="Override the log level (DEBUG, INFO, WARNING, ERROR).")
    ] = None,
) -> None:
    """Global options."""
    state = State(config_path=config)
    ctx.obj = state
    cfg = state.config()
    configure_logging(
        level=log_level or cfg.logging.level,
        json={"json": True, "console": False}.get(cfg.logging.format),
    )


def main() -> None:
    """Run the CLI; configuration problems exit with status 2 and one clear line."""
    try:
        app()
    except ConfigError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        sys.exit(EXIT_CONFIG)
    except ConfigurationError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        sys.exit(EXIT_CONFIG)
