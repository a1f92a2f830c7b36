"""Wiring for commands and the daemon: the store, the secret store and connections from config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import Connector, ConnectorContext, ConnectorPlugin, SecretStore
from ledgerlink.log import register_secret

__all__ = [
    "SCHEDULE_KEYS",
    "UnconfiguredSecretStore",
    "connect",
    "connector_settings_without_schedule",
    "register_model_secrets",
    "secret_store_for",
]

SCHEDULE_KEYS = frozenset({"interval_seconds", "stream_intervals", "stale_after_seconds"})
"""Keys of a ``[connectors.NAME]`` table that belong to the scheduler, not the connector."""


def connector_settings_without_schedule(table: Mapping[str, Any]) -> dict[str, Any]:
    """Return a connector's settings table without the scheduler's keys."""
    return {key: value for key, value in table.items() if key not in SCHEDULE_KEYS}


class UnconfiguredSecretStore:
    """Stands in when no encryption key is configured: reads nothing, refuses to store."""

    def get(self, name: str) -> str | None:  # noqa: ARG002 - SecretStore signature
        """Nothing is stored without a key."""
        return None

    def put(self, name: str, value: str) -> None:  # noqa: ARG002 - SecretStore signature
        """Refuse: a credential must never be stored unencrypted.

        Raises:
            ConfigurationError: always.
        """
        msg = "secrets.encryption_key is not set; it is needed to store rotated credentials"
        raise ConfigurationError(msg)


def secret_store_for(config: LedgerlinkConfig) -> SecretStore:
    """Return the encrypted store-backed secret store, or a refusing one without a key."""
    key = config.secrets.encryption_key
    if key is None:
        return UnconfiguredSecretStore()
    from ledgerlink.store import DbSecretStore
    from ledgerlink.store.db import create_engine_for

    return DbSecretStore(create_engine_for(config.database.url), key.get_secret_value())


def register_model_secrets(model: BaseModel) -> None:
    """Register every SecretStr value of ``model`` (recursively) with the log redactor."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
        elif isinstance(value, BaseModel):
            register_model_secrets(value)


def connect(
    plugin: ConnectorPlugin,
    settings: Mapping[str, Any],
    secrets: SecretStore,
    *,
    run_id: str = "",
) -> Connector:
    """Connect ``plugin`` with ``settings``, after registering its secrets with the redactor.

    The scheduler's own keys (:data:`SCHEDULE_KEYS`) are removed first, so one table in the
    configuration serves both the connector and ``ledgerlink serve``.

    Raises:
        ConfigurationError: the settings do not validate against the plugin's model.
    """
    settings = connector_settings_without_schedule(settings)
    try:
        register_model_secrets(plugin.settings_model.model_validate(dict(settings)))
    except ValidationError as exc:
        # include_input=False: the offending value may be a secret.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(table)'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        msg = f"[connectors.{plugin.name}] {problems}"
        raise ConfigurationError(msg) from None
    return plugin.connect(settings, ConnectorContext(secrets=secrets, run_id=run_id))
