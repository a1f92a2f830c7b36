"""What every command shares: the loaded configuration, consoles, and clean failure exits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from ledgerlink.config import LedgerlinkConfig, load_config

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "State", "err", "fail", "out"]

EXIT_FAILED = 1
EXIT_CONFIG = 2

out = Console()
err = Console(stderr=True)


@dataclass
class State:
    """Options given before the command (``--config``), and the configuration, loaded lazily."""

    config_path: Path | None = None
    _config: LedgerlinkConfig | None = field(default=None, repr=False)

    def config(self, *, required: bool = False) -> LedgerlinkConfig:
        """Load (once) and return the configuration."""
        if self._config is None:
            self._config = load_config(self.config_path, required=required)
        return self._config


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def state(ctx: typer.Context) -> State:
    """Return the shared :class:`State` of this invocation."""
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj
