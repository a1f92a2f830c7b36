"""Structured logging: structlog configured once, with secrets redacted from every event.

On a terminal events render for people; otherwise one JSON object per line. The redaction
processor runs last before rendering, so no processor or caller can leak a secret around it:
values of keys that name secrets (token, password, authorization, api_key, ...) are masked,
and every secret value registered with :func:`register_secret` is masked wherever it appears
inside any string of the event.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact", "register_secret"]

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|auth|cookie|private[_-]?key|"
    r"client[_-]?secret|signature|session[_-]?id|credential)",
    re.IGNORECASE,
)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_MIN_SECRET_LEN = 4


def register_secret(*values: str | None) -> None:
    """Remember secret values so that they are masked wherever they appear in a log event."""
    with _secrets_lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_LEN:
                _secrets.add(value)


def _mask_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str | None, value: Any, secrets: list[str]) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return _mask_text(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(None, v, secrets) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _mask_text(str(value), secrets)


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and registered secret values."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    return {
        key: (
            _mask_text(value, secrets)
            if key == "event" and isinstance(value, str)
            else _redact_value(key, value, secrets)
        )
        for key, value in event_dict.items()
    }


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for the process.

    Args:
        level: minimum level name.
        json: force JSON (True) or console (False) rendering; None picks console on a terminal.
        stream: where to write; defaults to stderr.
    """
    out: Any = stream or _CurrentStderr()
    use_json = not out.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """Return a structlog logger with ``bound`` key-values.

    The logger stays lazy: it takes the configuration in force when it logs, not the one in
    force when it was made, so module-level loggers follow a later :func:`configure_logging`
    (level, renderer, redaction).
    """
    return structlog.get_logger(**bound)
