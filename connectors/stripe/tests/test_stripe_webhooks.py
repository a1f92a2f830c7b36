"""Webhook intake: signatures, rotation, time window both ways, duplicates, order, size."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from ledgerlink_stripe.signature import sign_payload
from ledgerlink_stripe.webhooks import WebhookIntake

NOW = 1_800_000_000
OLD_SECRET = "whsec_oldSecretValue123"
NEW_SECRET = "whsec_newSecretValue456"


def _event(
    event_id: str,
    created: int,
    object_id: str = "in_1",
    status: str = "paid",
    type_: str = "invoice.updated",
) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": type_,
            "created": created,
            "data": {"object": {"id": object_id, "object": "invoice", "status": status}},
        }
    ).encode()


def _headers(body: bytes, secret: str = OLD_SECRET, at: int = NOW) -> dict[str, str]:
    return {"Stripe-Signature": sign_payload(body, secret, at)}


@pytest.fixture
def sink(st: Any) -> Any:
    """An in-memory sink."""
    return st.ListSink()


@pytest.fixture
def intake(sink: Any) -> WebhookIntake:
    """An intake with one secret and a fixed clock."""
    return WebhookIntake([OLD_SECRET], sink, tolerance_seconds=300, clock=lambda: NOW)


def test_valid_event_is_accepted_and_handed_to_the_sink(intake: WebhookIntake, sink: Any) -> None:
    """A correctly signed event answers 200 and reaches the sink."""
    body = _event("evt_1", NOW)
    result = intake.handle(body, _headers(body))
    assert (result.status, result.outcome) == (200, "accepted")
    assert [e.id for e in sink.events] == ["evt_1"]
    assert sink.events[0].object_id == "in_1"
    assert not sink.events[0].superseded


def test_bad_signature_is_refused(intake: WebhookIntake, sink: Any) -> None:
    """A body signed with another secret answers 400 and stores nothing."""
    body = _event("evt_1", NOW)
    result = intake.handle(body, _headers(body, secret="whsec_attacker"))
    assert result.status == 400
    assert sink.events == []


def test_tampered_body_is_refused(intake: WebhookIntake) -> None:
    """Changing the body after signing invalidates the signature."""
    body = _event("evt_1", NOW)
    headers = _headers(body)
    assert intake.handle(body.replace(b"paid", b"void"), headers).status == 400


def test_missing_signature_is_refused(intake: WebhookIntake) -> None:
    """A delivery without Stripe-Signature answers 400."""
    assert intake.handle(_event("evt_1", NOW), {}).status == 400


def test_rotation_accepts_old_and_new_secrets(sink: Any) -> None:
    """During rotation events signed with either configured secret are accepted."""
    intake = WebhookIntake([OLD_SECRET, NEW_SECRET], sink, clock=lambda: NOW)
    first, second = _event("evt_a", NOW), _event("evt_b", NOW, object_id="in_2")
    assert intake.handle(first, _headers(first, OLD_SECRET)).status == 200
    assert intake.handle(second, _headers(second, NEW_SECRET)).status == 200
    intake.rotate([NEW_SECRET])
    third = _event("evt_c", NOW, object_id="in_3")
    assert intake.handle(third, _headers(third, OLD_SECRET)).status == 400


def test_header_with_two_v1_signatures_passes_with_either(intake: WebhookIntake) -> None:
    """Stripe signs with old and new secrets at once during rotation; one match suffices."""
    body = _event("evt_1", NOW)
    header = sign_payload(body, NEW_SECRET, NOW, extra_secrets=[OLD_SECRET])
    assert intake.handle(body, {"stripe-signature": header}).status == 200


@pytest.mark.parametrize("offset", [-301, 301, 3600])
def test_timestamps_outside_tolerance_are_refused_both_ways(
    intake: WebhookIntake, offset: int
) -> None:
    """A signature older or newer than the tolerance is refused (replays and clock games)."""
    body = _event("evt_1", NOW)
    result = intake.handle(body, _headers(body, at=NOW + offset))
    assert result.status == 400
    assert ("future" in result.reason) == (offset > 0)


def test_duplicate_delivery_is_acknowledged_once(intake: WebhookIntake, sink: Any) -> None:
    """The same event delivered twice answers 200 both times but reaches the sink once."""
    body = _event("evt_1", NOW)
    intake.handle(body, _headers(body))
    again = intake.handle(body, _headers(body))
    assert (again.status, again.outcome) == (200, "duplicate")
    assert len(sink.events) == 1


def test_older_event_after_newer_is_marked_superseded(intake: WebhookIntake, sink: Any) -> None:
    """An event older than one already accepted for the same object is kept but superseded."""
    newer = _event("evt_new", NOW - 10, status="paid")
    older = _event("evt_old", NOW - 60, status="open")
    intake.handle(newer, _headers(newer))
    result = intake.handle(older, _headers(older))
    assert result.outcome == "superseded"
    assert [(e.id, e.superseded) for e in sink.events] == [("evt_new", False), ("evt_old", True)]


def test_oversize_body_is_refused_unread(sink: Any) -> None:
    """A body over the size limit answers 413 before any signature work."""
    intake = WebhookIntake([OLD_SECRET], sink, max_body_bytes=1024, clock=lambda: NOW)
    body = _event("evt_big", NOW).replace(b'"paid"', b'"' + b"x" * 2000 + b'"')
    assert intake.handle(body, _headers(body)).status == 413
    assert sink.events == []


def test_sink_failure_answers_500_and_allows_redelivery(intake: WebhookIntake, sink: Any) -> None:
    """When the sink cannot store, the answer is 500 and the redelivery is accepted."""
    body = _event("evt_1", NOW)
    sink.fail = True
    assert intake.handle(body, _headers(body)).status == 500
    sink.fail = False
    assert intake.handle(body, _headers(body)).outcome == "accepted"


def test_malformed_json_with_valid_signature_is_refused(intake: WebhookIntake) -> None:
    """A signed body that is not an event answers 400."""
    body = b'{"object": "not-an-event"}'
    assert intake.handle(body, _headers(body)).status == 400


def test_secrets_do_not_leak_in_repr(intake: WebhookIntake) -> None:
    """The intake's repr names how many secrets it holds, never their values."""
    assert OLD_SECRET not in repr(intake)


@pytest.mark.parametrize("header", ["t=abc,v1=00", "v1=00", "t=1800000000", "garbage"])
def test_malformed_signature_headers_are_refused(intake: WebhookIntake, header: str) -> None:
    """Headers without a usable timestamp or v1 signature answer 400."""
    assert intake.handle(_event("evt_1", NOW), {"Stripe-Signature": header}).status == 400


def test_sdk_verifies_sandbox_style_signatures() -> None:
    """stripe-python's own verifier accepts the signatures this package makes."""
    import stripe

    body = _event("evt_sdk", NOW)
    header = sign_payload(body, OLD_SECRET, int(time.time()))
    event = stripe.Webhook.construct_event(body.decode(), header, OLD_SECRET)
    assert event.id == "evt_sdk"
