"""The Stripe plugin object the ``ledgerlink.connectors`` entry point names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import ConnectorContext, Record, SandboxOptions, Stream
from ledgerlink.store import Store
from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.sandbox import StripeSandbox
from ledgerlink_stripe.settings import StripeSettings
from ledgerlink_stripe.streams import STREAMS
from ledgerlink_stripe.webhooks import WebhookEvent, WebhookIntake

__all__ = ["StripePlugin"]


def _parse(settings: Mapping[str, Any]) -> StripeSettings:
    try:
        return StripeSettings.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        msg = f"invalid Stripe settings: {problems}"
        raise ConfigurationError(msg) from None


class StoreEventSink:
    """Lands accepted webhook events in the store as ``stripe/events`` source records.

    The store's unique key (system, object, id) makes a redelivered event a no-op, across
    replicas and restarts; the pull of the affected stream does the work.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def accept(self, event: WebhookEvent) -> None:
        """Store ``event`` durably (committed before returning)."""
        created = datetime.fromtimestamp(event.created, UTC)
        record = Record(
            object="events",
            id=event.id,
            payload=dict(event.payload),
            cursor_value=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.store.land("stripe", [record])


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

    def webhook_handler(self, settings: Mapping[str, Any], store: Store) -> WebhookIntake | None:
        """Return the intake for ``POST /webhooks/stripe``, storing accepted events in ``store``.

        Returns None when no ``webhook_secrets`` are configured: webhooks are then not served
        (the Events API alone keeps the store current).

        Raises:
            ConfigurationError: the settings are invalid.
        """
        parsed = _parse(settings)
        if not parsed.webhook_secrets:
            return None
        return WebhookIntake(
            parsed.webhook_secrets,
            StoreEventSink(store),
            tolerance_seconds=parsed.webhook_tolerance_seconds,
            max_body_bytes=parsed.webhook_max_body_bytes,
        )

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
        return StripeConnector(_parse(settings))

    def start_sandbox(self, options: SandboxOptions) -> StripeSandbox:
        """Start the Stripe sandbox on loopback and return it, serving."""
        return StripeSandbox(options)
