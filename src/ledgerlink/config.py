"""Configuration: one ``ledgerlink.toml`` plus ``LEDGERLINK_*`` environment variables.

Precedence, highest first: environment variables (nested keys joined with ``__``, e.g.
``LEDGERLINK_DATABASE__URL`` or ``LEDGERLINK_CONNECTORS__STRIPE__API_KEY``), then the TOML file,
then defaults. Any string value may be a reference instead of the secret itself:
``"env:NAME"`` reads environment variable NAME and ``"file:/run/secrets/x"`` reads a file
(trailing newline stripped), so secrets need not sit in the config file.

Every value whose key names a secret (token, password, key, secret, ...) is registered with the
log redactor as soon as the configuration is loaded. Errors are :class:`ConfigError` with the
file, the dotted key and the reason; the CLI prints them and exits with status 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ledgerlink.log import register_secret

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BudgetConfig",
    "ConfigError",
    "DaemonConfig",
    "DatabaseConfig",
    "LedgerConfig",
    "LedgerlinkConfig",
    "LoggingConfig",
    "SecretsConfig",
    "SyncConfig",
    "config_path_from_env",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("ledgerlink.toml")
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("ledgerlink_config_file", default=None)
_SECRET_WORDS = ("token", "password", "secret", "key", "assertion", "credential")


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` names the file, the key and the reason."""

    def __init__(self, source: str, key: str | None, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    """Where the store lives: ``sqlite:///path.db`` (embedded) or ``postgresql+psycopg://...``."""

    url: str = "sqlite:///ledgerlink.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            msg = "must start with sqlite:/// or postgresql+psycopg://"
            raise ValueError(msg)
        return value


class LoggingConfig(_Section):
    """Log level and format (``auto`` renders for people on a terminal, JSON otherwise)."""

    level: str = "INFO"
    format: str = Field(default="auto", pattern="^(auto|json|console)$")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            msg = "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            raise ValueError(msg)
        return value.upper()


class SecretsConfig(_Section):
    """Key that encrypts stored credentials (OAuth refresh tokens) at rest (a Fernet key)."""

    encryption_key: SecretStr | None = None


class SyncConfig(_Section):
    """Default schedule of the sync cycle."""

    interval_seconds: int = Field(default=300, ge=5)
    page_size: int = Field(default=1000, ge=1, le=100_000)


class LedgerConfig(_Section):
    """How the ledger values what it posts: the books' home currency and fallback rates.

    ``rates`` maps a currency to the number of home-currency units one unit of it is worth
    (``EUR = "1.0850"``). A rate is used only when Stripe's balance transaction carries none;
    a currency with neither is quarantined, never posted at a rate of 1. Write rates as
    strings: TOML floats are binary fractions.
    """

    home_currency: str = Field(default="USD", pattern="^[A-Z]{3}$")
    rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("rates")
    @classmethod
    def _positive(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, rate in value.items():
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
                msg = f"{currency!r} is not an ISO 4217 code (three capital letters)"
                raise ValueError(msg)
            if not rate.is_finite() or rate <= 0:
                msg = f"the rate of {currency} must be a positive number"
                raise ValueError(msg)
        return value


def _off_or_at_least_five(value: int) -> int:
    if value != 0 and value < 5:
        msg = "must be 0 (off) or at least 5 seconds"
        raise ValueError(msg)
    return value


class BudgetConfig(_Section):
    """An API budget the daemon keeps to: ``limit`` calls per ``window_seconds``, all replicas."""

    limit: int = Field(ge=1)
    window_seconds: int = Field(default=60, ge=1)


class DaemonConfig(_Section):
    """Jobs of ``ledgerlink serve`` beyond the pulls, and the vendor API budgets they share.

    An interval of 0 turns that job off. ``budgets`` replaces a connector's default budget
    (see docs/operations.md); ``quota_reserve`` is the share of every budget kept for normal
    jobs: low-priority jobs (first loads, revenue refresh) wait for the next window beyond it.
    """

    match_interval_seconds: int = 300
    plan_interval_seconds: int = 120
    push_interval_seconds: int = 30
    revenue_interval_seconds: int = 3600
    push_lease_seconds: int = Field(default=300, ge=5)
    quota_reserve: float = Field(default=0.1, ge=0, lt=1)
    budgets: dict[str, BudgetConfig] = Field(default_factory=dict)

    @field_validator(
        "match_interval_seconds",
        "plan_interval_seconds",
        "push_interval_seconds",
        "revenue_interval_seconds",
    )
    @classmethod
    def _interval(cls, value: int) -> int:
        return _off_or_at_least_five(value)


class LedgerlinkConfig(BaseSettings):
    """The whole configuration. ``connectors`` maps a connector name to its own settings,
    which that connector's ``settings_model`` validates when it connects."""

    model_config = SettingsConfigDict(
        env_prefix="LEDGERLINK_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database: DatabaseConfig = DatabaseConfig()
    logging: LoggingConfig = LoggingConfig()
    secrets: SecretsConfig = SecretsConfig()
    sync: SyncConfig = SyncConfig()
    daemon: DaemonConfig = DaemonConfig()
    ledger: LedgerConfig = LedgerConfig()
    mappings_dir: Path | None = None
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - "file:" refs instead
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over the TOML file over defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def config_path_from_env(explicit: Path | None = None) -> Path:
    """Return the config file to use: ``explicit``, ``$LEDGERLINK_CONFIG`` or ./ledgerlink.toml."""
    if explicit is not None:
        return explicit
    env = os.environ.get("LEDGERLINK_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def _resolve_references(value: Any, key: str, source: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _resolve_references(v, f"{key}.{k}" if key else k, source) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_references(v, key, source) for v in value]
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(source, key, f"environment variable {name} is not set")
        return os.environ[name]
    if isinstance(value, str) and value.startswith("file:"):
        file = Path(value[5:])
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                source, key, f"cannot read secret file {file}: {exc.strerror}"
            ) from exc
    return value


def _register_secrets(value: Any, key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _register_secrets(v, str(k))
    elif isinstance(value, SecretStr):
        register_secret(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _register_secrets(getattr(value, name), name)
    elif isinstance(value, str) and any(word in key.lower() for word in _SECRET_WORDS):
        register_secret(value)


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def load_config(path: Path | None = None, *, required: bool = False) -> LedgerlinkConfig:
    """Load and validate the configuration.

    Args:
        path: the TOML file; defaults to ``$LEDGERLINK_CONFIG`` or ``./ledgerlink.toml``.
        required: raise when the file does not exist (otherwise defaults and environment apply).

    Returns:
        The validated configuration, with secret references resolved.

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown key, bad value.
    """
    file = config_path_from_env(path)
    source = str(file)
    data: dict[str, Any] | None = None
    if file.exists():
        try:
            # The bytes as they are (no newline translation): the settings source reads the
            # file again in binary, where a lone carriage return is not valid TOML.
            data = tomllib.loads(file.read_bytes().decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, None, f"not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(source, None, f"cannot read: {exc}") from exc
    elif required:
        raise ConfigError(source, None, "file not found (run `ledgerlink init` to write one)")
    token = _CONFIG_FILE.set(file if data is not None else None)
    try:
        config = LedgerlinkConfig()
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _dotted(first["loc"])
        where = source if data is not None else "environment"
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        raise ConfigError(where, key, reason) from None
    finally:
        _CONFIG_FILE.reset(token)
    resolved = _resolve_references(config.connectors, "connectors", source)
    config = config.model_copy(update={"connectors": resolved})
    _register_secrets(config)
    return config


def connector_settings(config: LedgerlinkConfig, name: str) -> Mapping[str, Any]:
    """Return the settings table of connector ``name`` (empty when not configured)."""
    return config.connectors.get(name, {})
