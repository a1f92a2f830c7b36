"""``ledgerlink sandbox NAME``: serve a connector's fake vendor API for people and scripts."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer

from ledgerlink.cli._common import out
from ledgerlink.connector import SandboxOptions, load_plugin

__all__ = ["sandbox"]


def sandbox(
    name: Annotated[str, typer.Argument(help="Connector name, as `connectors list` shows it.")],
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 7,
    size: Annotated[int, typer.Option(help="Number of customers/accounts to generate.")] = 50,
) -> None:
    """Serve NAME's sandbox on 127.0.0.1 until interrupted, and print how to connect to it."""
    plugin = load_plugin(name)
    running = plugin.start_sandbox(SandboxOptions(seed=seed, size=size, port=port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.print(f"{name} sandbox serving on [bold]{running.base_url}[/] (Ctrl-C stops it)")
    out.print("connector settings for it:")
    out.print_json(json.dumps(running.connector_settings(), default=str))
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
