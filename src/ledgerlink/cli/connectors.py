"""``ledgerlink connectors``: what is installed, and whether it can connect."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ledgerlink.cli._common import EXIT_FAILED, fail, out, state
from ledgerlink.connector import SandboxOptions, discover, load_plugin
from ledgerlink.connector.errors import ConnectorError

__all__ = ["app"]

app = typer.Typer(
    help="List installed connectors and check their credentials.", no_args_is_help=True
)


@app.command("list")
def list_connectors(
    streams: Annotated[bool, typer.Option("--streams", help="Show every stream's name.")] = False,
) -> None:
    """List the connectors installed in this environment (entry-point group ledgerlink.connectors)."""
    found = discover()
    if not found:
        out.print("no connectors installed")
        return
    table = Table("name", "distribution", "version", "streams", "status")
    for name, loaded in found.items():
        if loaded.plugin is None:
            table.add_row(
                name,
                loaded.distribution,
                loaded.distribution_version,
                "-",
                f"[red]failed: {loaded.error}[/]",
            )
            continue
        catalog = loaded.plugin.stream_catalog()
        stream_text = ", ".join(s.name for s in catalog) if streams else str(len(catalog))
        table.add_row(name, loaded.distribution, loaded.distribution_version, stream_text, "ok")
    out.print(table)


@app.command("check")
def check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Connector name, as `connectors list` shows it.")],
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Check against the connector's own sandbox.")
    ] = False,
) -> None:
    """Connect with the configured credentials and check access and permissions.

    Exits 1 when a check fails, 2 when the configuration is wrong.
    """
    from ledgerlink.sync.runtime import connect, secret_store_for

    plugin = load_plugin(name)
    config = state(ctx).config()
    running = None
    try:
        if sandbox:
            running = plugin.start_sandbox(SandboxOptions())
            settings = running.connector_settings()
        else:
            if name not in config.connectors:
                fail(
                    f"connector {name!r} is not configured: add [connectors.{name}] to the config",
                    2,
                )
            settings = config.connectors[name]
        connector = connect(plugin, settings, secret_store_for(config))
        try:
            report = connector.check()
        finally:
            connector.close()
    except ConnectorError as exc:
        fail(f"{name}: {exc}", 2 if exc.kind == "configuration" else EXIT_FAILED)
    finally:
        if running is not None:
            running.stop()
    table = Table("check", "result", "detail")
    for item in report.items:
        table.add_row(item.name, "[green]ok[/]" if item.ok else "[red]failed[/]", item.detail)
    out.print(table)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
