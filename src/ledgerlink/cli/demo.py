"""``ledgerlink demo``: the whole loop on the embedded SQLite store and the sandbox fakes.

It starts every installed connector's sandbox on loopback, pulls every stream into a fresh
SQLite store (showing progress), then runs a second cycle to show that nothing changed costs
next to nothing. Nothing leaves the machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

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
    from ledgerlink.store import DbSecretStore, Store, generate_key, upgrade
    from ledgerlink.store.db import create_engine_for
    from ledgerlink.sync.engine import pull
    from ledgerlink.sync.runtime import connect

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
    engine.dispose()
