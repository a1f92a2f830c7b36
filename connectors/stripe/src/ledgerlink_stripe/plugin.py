"""The Stripe plugin object the ``ledgerlink.connectors`` entry point names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import ConnectorContext, SandboxOptions, Stream
from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.sandbox import StripeSandbox
from ledgerlink_stripe.settings import StripeSettings
from ledgerlink_stripe.streams import STREAMS

__all__ = ["StripePlugin"]


class StripePlugin:
    """Stripe for ledgerlink: Events-based incremental reads, idempotent writes, a sandbox."""

    name = "stripe"
    version = "0.1.0"
    description = (
        "Stripe billing: customers, catalogue, subscriptions, invoices, payments, refunds, "
        "credit notes, disputes, payouts and fees; signed webhooks; idempotent writes."
    )
    settings_model = StripeSettings

    def stream_catalog(self) -> Sequence[Stream]:
        """Return every stream, without connecting."""
        return [spec.stream for spec in STREAMS]

    def connect(
        self,
        settings: Mapping[str, Any],
        context: ConnectorContext,  # noqa: ARG002 - Stripe keys do not rotate: no secret store
    ) -> StripeConnector:
        """Validate ``settings`` and return a connection.

        Raises:
            ConfigurationError: the settings are invalid (the message names the fields, never
                their secret values).
        """
        try:
            parsed = StripeSettings.model_validate(dict(settings))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors(include_input=False)
            )
            msg = f"invalid Stripe settings: {problems}"
            raise ConfigurationError(msg) from None
        return StripeConnector(parsed)

    def start_sandbox(self, options: SandboxOptions) -> StripeSandbox:
        """Start the Stripe sandbox on loopback and return it, serving."""
        return StripeSandbox(options)
