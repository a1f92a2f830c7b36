"""Framework-free intake of Stripe webhooks: verify, refuse, deduplicate, order, hand over.

The daemon mounts :meth:`WebhookIntake.handle` on ``/webhooks/stripe`` and answers with the
returned status. In order, a delivery is:

1. refused with 413 when its body exceeds the size limit (before any parsing), and with 415
   when it declares a content type other than ``application/json`` (what Stripe sends);
2. refused with 400 when ``Stripe-Signature`` matches none of the endpoint secrets (several
   are accepted while a secret is rotated) or its timestamp is outside the tolerance in
   *either* direction (stripe-python alone accepts future timestamps);
3. answered 200 ``duplicate`` when its event id was already accepted (Stripe delivers at
   least once);
4. handed to the :class:`EventSink` with ``superseded=True`` when an event about the same
   object with a later ``created`` was already accepted, so older state never overwrites
   newer; the sink stores it for the record but must not apply it;
5. otherwise handed to the sink as the newest known state of its object.

The sink only stores; the sync engine does the work later, so the answer is fast. When the
sink fails the answer is 500 and the event is not remembered, so Stripe's retry brings it back.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import SecretStr

from ledgerlink.log import get_logger, register_secret
from ledgerlink_stripe.signature import SignatureError, verify_signature

__all__ = ["EventSink", "IntakeResult", "WebhookEvent", "WebhookIntake"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified Stripe event as the sink receives it.

    Attributes:
        id: the event id (``evt_...``).
        type: the event type (``invoice.paid``).
        created: unix seconds the event was created.
        object_type: ``data.object.object`` (``invoice``).
        object_id: ``data.object.id``.
        payload: the whole event JSON.
        superseded: a later event about the same object was already accepted: keep, do not
            apply.
    """

    id: str
    type: str
    created: int
    object_type: str
    object_id: str
    payload: Mapping[str, Any]
    superseded: bool = False


@runtime_checkable
class EventSink(Protocol):
    """Where accepted events go (the store-backed sink writes them to the database)."""

    def accept(self, event: WebhookEvent) -> None:
        """Store ``event`` durably before returning; raise to have Stripe redeliver it."""
        ...


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What to answer Stripe and why.

    Attributes:
        status: HTTP status for the answer (200, 400, 413, 415, 500).
        outcome: ``accepted``, ``superseded``, ``duplicate`` or ``rejected``.
        reason: a short reason for logs (never a secret).
        event_id: the event id when the body was readable.
    """

    status: int
    outcome: str
    reason: str = ""
    event_id: str | None = None


class WebhookIntake:
    """Verifies and hands over Stripe webhook deliveries.

    Args:
        secrets: endpoint secrets (``whsec_...``) currently valid.
        sink: where accepted events go.
        tolerance_seconds: allowed distance of the signature timestamp from now, both ways.
        max_body_bytes: larger bodies are refused with 413.
        remember: how many event ids (and object versions) are kept for deduplication.
        clock: unix time source.
    """

    def __init__(
        self,
        secrets: Sequence[str | SecretStr],
        sink: EventSink,
        *,
        tolerance_seconds: float = 300,
        max_body_bytes: int = 256 * 1024,
        remember: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        plain = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets]
        if not plain:
            msg = "at least one webhook endpoint secret is needed"
            raise ValueError(msg)
        register_secret(*plain)
        self._secrets = tuple(plain)
        self.sink = sink
        self.tolerance = tolerance_seconds
        self.max_body_bytes = max_body_bytes
        self.remember = remember
        self.clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._log = get_logger(connector="stripe", component="webhooks")

    def __repr__(self) -> str:
        return f"WebhookIntake(secrets={len(self._secrets)}, tolerance={self.tolerance})"

    def rotate(self, secrets: Sequence[str | SecretStr]) -> None:
        """Replace the accepted endpoint secrets (keep the old one until rotation ends)."""
        plain = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets]
        if not plain:
            msg = "at least one webhook endpoint secret is needed"
            raise ValueError(msg)
        register_secret(*plain)
        self._secrets = tuple(plain)

    def handle(self, body: bytes, headers: Mapping[str, str]) -> IntakeResult:
        """Process one delivery and return what to answer.

        Args:
            body: the raw request body, exactly as received.
            headers: request headers (any case).

        Returns:
            The :class:`IntakeResult`; it never raises for bad input.
        """
        refused = self._refuse_unread(body, headers)
        if refused is not None:
            return refused
        signature = _header(headers, "stripe-signature")
        try:
            verify_signature(
                body, signature, self._secrets, now=self.clock(), tolerance=self.tolerance
            )
        except SignatureError as exc:
            return self._reject(400, str(exc))
        try:
            event = _parse(body)
        except (ValueError, KeyError, TypeError) as exc:
            return self._reject(400, f"malformed event: {type(exc).__name__}")
        with self._lock:
            if event.id in self._seen:
                self._seen.move_to_end(event.id)
                return IntakeResult(200, "duplicate", "event already received", event.id)
            latest = self._versions.get(event.object_id)
            superseded = latest is not None and event.created < latest
        if superseded:
            event = WebhookEvent(
                event.id,
                event.type,
                event.created,
                event.object_type,
                event.object_id,
                event.payload,
                superseded=True,
            )
        try:
            self.sink.accept(event)
        except Exception as exc:  # noqa: BLE001 - any sink failure means "redeliver later"
            self._log.error(
                "stripe.webhook_sink_failed", event_id=event.id, error=type(exc).__name__
            )
            return IntakeResult(500, "rejected", "sink failed", event.id)
        with self._lock:
            self._remember(event)
        outcome = "superseded" if superseded else "accepted"
        self._log.debug("stripe.webhook", event_id=event.id, type=event.type, outcome=outcome)
        return IntakeResult(200, outcome, "", event.id)

    def _refuse_unread(self, body: bytes, headers: Mapping[str, str]) -> IntakeResult | None:
        """Refuse, before any parsing, a body too large or declared as something not JSON."""
        if len(body) > self.max_body_bytes:
            return self._reject(413, "body too large")
        content_type = _header(headers, "content-type")
        if content_type is not None and not _is_json(content_type):
            return self._reject(415, "content type must be application/json")
        return None

    def _remember(self, event: WebhookEvent) -> None:
        self._seen[event.id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        latest = self._versions.get(event.object_id)
        if latest is None or event.created > latest:
            self._versions[event.object_id] = event.created
        self._versions.move_to_end(event.object_id)
        if len(self._versions) > self.remember:
            self._versions.popitem(last=False)

    def _reject(self, status: int, reason: str) -> IntakeResult:
        self._log.warning("stripe.webhook_rejected", status=status, reason=reason)
        return IntakeResult(status, "rejected", reason)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def _is_json(content_type: str) -> bool:
    """True for ``application/json`` with any parameters (Stripe adds ``charset=utf-8``)."""
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _parse(body: bytes) -> WebhookEvent:
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("object") != "event":
        msg = "not an event"
        raise ValueError(msg)
    inner = data.get("data")
    obj = inner.get("object") if isinstance(inner, dict) else None
    if not isinstance(obj, dict):
        msg = "event without a data.object"
        raise ValueError(msg)
    return WebhookEvent(
        id=str(data["id"]),
        type=str(data["type"]),
        created=int(data["created"]),
        object_type=str(obj.get("object", "")),
        object_id=str(obj.get("id", "")),
        payload=data,
    )
