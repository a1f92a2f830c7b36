"""The ``salesforce`` plugin: settings, stream catalog, connect, sandbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import ConnectorContext, SandboxOptions, Stream
from ledgerlink_salesforce.auth import Authenticator, Credentials
from ledgerlink_salesforce.client import SalesforceClient, SalesforceRetryPolicy
from ledgerlink_salesforce.connector import SalesforceConnector
from ledgerlink_salesforce.settings import SalesforceSettings
from ledgerlink_salesforce.streams import stream_catalog

if TYPE_CHECKING:
    from ledgerlink_salesforce.sandbox import SalesforceSandbox

__all__ = ["REFRESH_TOKEN_SECRET", "SalesforcePlugin", "connect_settings"]

REFRESH_TOKEN_SECRET = "salesforce.refresh_token"  # noqa: S105 - the name of a secret, not one


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def connect_settings(
    settings: SalesforceSettings, context: ConnectorContext | None = None
) -> SalesforceConnector:
    """Build a connection from validated settings (no network call is made).

    With the refresh-token flow, a rotated refresh token is written to ``context.secrets`` at
    once (``salesforce.refresh_token``) and preferred over the configured one afterwards.
    """
    stored = None
    if context is not None and settings.auth == "refresh_token":
        stored = context.secrets.get(REFRESH_TOKEN_SECRET)
    credentials = Credentials(
        flow=settings.auth,
        login_url=settings.login_url,
        client_id=settings.client_id,
        username=settings.username,
        private_key=_secret(settings.private_key),
        client_secret=_secret(settings.client_secret),
        refresh_token=stored or _secret(settings.refresh_token),
        password=_secret(settings.password),
        security_token=_secret(settings.security_token),
    )
    verify: str | bool = settings.ca_bundle or True
    persist = None
    if context is not None:
        secrets = context.secrets

        def persist(token: str) -> None:
            secrets.put(REFRESH_TOKEN_SECRET, token)

    auth = Authenticator(
        credentials, verify=verify, timeout=settings.timeout_seconds, on_refresh_token=persist
    )
    client = SalesforceClient(
        auth,
        instance_url=settings.instance_url,
        api_version=settings.api_version,
        ca_bundle=settings.ca_bundle,
        timeout=settings.timeout_seconds,
        budget_share=settings.api_budget_share,
        retry=SalesforceRetryPolicy(max_attempts=settings.max_attempts),
    )
    return SalesforceConnector(settings, client, context)


class SalesforcePlugin:
    """Entry point ``ledgerlink.connectors: salesforce``."""

    name = "salesforce"
    version = "0.1.0"
    description = (
        "Salesforce CRM: accounts, contacts, opportunities, quotes, products and "
        "prices through REST and Bulk API 2.0; batched upsert by external id."
    )
    settings_model = SalesforceSettings

    def stream_catalog(self) -> Sequence[Stream]:
        """Every stream the connector can read."""
        return stream_catalog()

    def connect(
        self, settings: Mapping[str, Any], context: ConnectorContext
    ) -> SalesforceConnector:
        """Validate ``settings`` and return a connection.

        Raises:
            ConfigurationError: the settings are invalid (the message names each field, never
                a secret value).
        """
        try:
            validated = SalesforceSettings.model_validate(dict(settings))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            msg = f"invalid Salesforce settings: {problems}"
            raise ConfigurationError(msg) from None
        return connect_settings(validated, context)

    def start_sandbox(self, options: SandboxOptions) -> SalesforceSandbox:
        """Start the Salesforce sandbox on loopback (TLS) and return it, serving."""
        from ledgerlink_salesforce.sandbox import start_sandbox

        return start_sandbox(options)
