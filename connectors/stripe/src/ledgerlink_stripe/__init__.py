"""ledgerlink's Stripe connector: reads through lists and the Events API, writes with
idempotency keys, verifies webhooks, and ships a loopback sandbox of the Stripe API.

The entry point ``ledgerlink.connectors: stripe`` names :data:`plugin`.
"""

from __future__ import annotations

from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.plugin import StripePlugin
from ledgerlink_stripe.settings import PINNED_API_VERSION, StripeSettings
from ledgerlink_stripe.webhooks import EventSink, IntakeResult, WebhookEvent, WebhookIntake

__all__ = [
    "PINNED_API_VERSION",
    "EventSink",
    "IntakeResult",
    "StripeConnector",
    "StripePlugin",
    "StripeSettings",
    "WebhookEvent",
    "WebhookIntake",
    "plugin",
]

plugin = StripePlugin()
