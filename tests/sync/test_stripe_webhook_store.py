"""Tests that Stripe webhook deliveries are stored durably, once, in the store."""

from __future__ import annotations

import json
import time

from ledgerlink_stripe.signature import sign_payload
from sqlalchemy import func, select

from ledgerlink.connector import load_plugin
from ledgerlink.store import SourceRecord, Store

SECRET = "whsec_test_store_sink_123"


def event(event_id: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "invoice.paid",
            "created": int(time.time()),
            "data": {"object": {"id": "in_1", "object": "invoice"}},
        }
    ).encode()


def stored_events(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    SourceRecord.system == "stripe",  # type: ignore[arg-type]
                    SourceRecord.object == "events",  # type: ignore[arg-type]
                )
            ).scalar_one()
        )


def test_signed_event_is_stored_once_even_when_redelivered(store: Store) -> None:
    """An accepted delivery lands one stripe/events record; a redelivery adds nothing."""
    plugin = load_plugin("stripe")
    intake = plugin.webhook_handler(  # type: ignore[attr-defined]
        {"api_key": "sk_test_x", "webhook_secrets": [SECRET]}, store
    )
    body = event("evt_store_1")
    headers = {"Stripe-Signature": sign_payload(body, SECRET, int(time.time()))}
    first = intake.handle(body, headers)
    assert first.status == 200
    intake_after_restart = plugin.webhook_handler(  # type: ignore[attr-defined]
        {"api_key": "sk_test_x", "webhook_secrets": [SECRET]}, store
    )
    again = intake_after_restart.handle(body, headers)
    assert again.status == 200
    assert stored_events(store) == 1


def test_forged_event_is_not_stored(store: Store) -> None:
    """A delivery signed with another secret is refused and leaves nothing in the store."""
    plugin = load_plugin("stripe")
    intake = plugin.webhook_handler(  # type: ignore[attr-defined]
        {"api_key": "sk_test_x", "webhook_secrets": [SECRET]}, store
    )
    body = event("evt_forged")
    headers = {"Stripe-Signature": sign_payload(body, "whsec_someone_else", int(time.time()))}
    assert intake.handle(body, headers).status == 400
    assert stored_events(store) == 0


def test_without_webhook_secrets_no_intake_is_offered(store: Store) -> None:
    """A Stripe connector configured without webhook secrets serves no webhook endpoint."""
    plugin = load_plugin("stripe")
    assert plugin.webhook_handler({"api_key": "sk_test_x"}, store) is None  # type: ignore[attr-defined]
