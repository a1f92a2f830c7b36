"""Signed webhook deliveries from the sandbox to registered endpoints, with retries.

Each event an endpoint wants is POSTed to its URL as JSON with a ``Stripe-Signature`` header
(``t=<unix>,v1=<hmac-sha256 of "t.payload">``) from a background thread, so the API answer
never waits for a delivery. A delivery that fails (connection error or a non-2xx answer) is
retried after each delay of ``retry_delays``, as Stripe retries for days in production.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ledgerlink_stripe.sandbox.store import SandboxState
from ledgerlink_stripe.signature import sign_payload

__all__ = ["Delivery", "WebhookDeliverer"]


@dataclass
class Delivery:
    """One attempt log entry: which event went where and how it ended."""

    event_id: str
    endpoint_id: str
    attempts: int = 0
    status: int | None = None
    delivered: bool = False
    errors: list[str] = field(default_factory=list)


class WebhookDeliverer:
    """Delivers the state's events to its webhook endpoints in a daemon thread."""

    def __init__(
        self,
        state: SandboxState,
        *,
        retry_delays: Sequence[float] = (0.1, 0.5, 2.0),
        timeout: float = 5.0,
    ) -> None:
        self.state = state
        self.retry_delays = tuple(retry_delays)
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[dict[str, Any], float] | None] = queue.Queue()
        self._client = httpx.Client(timeout=timeout)
        self._thread = threading.Thread(target=self._run, daemon=True, name="stripe-webhooks")
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        state.listeners.append(self._on_event)
        self._thread.start()

    def _on_event(self, event: dict[str, Any]) -> None:
        if not any(ep.wants(event["type"]) for ep in self.state.endpoints.values()):
            return
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((event, 0.0))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery finished (delivered or out of retries)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, _ = item
            for endpoint in list(self.state.endpoints.values()):
                if endpoint.wants(event["type"]):
                    self._deliver(event, endpoint.id, endpoint.url, endpoint.secret)
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def _deliver(self, event: dict[str, Any], endpoint_id: str, url: str, secret: str) -> None:
        record = Delivery(event_id=event["id"], endpoint_id=endpoint_id)
        self.deliveries.append(record)
        payload = json.dumps(event, separators=(",", ":")).encode()
        delays = (0.0, *self.retry_delays)
        for delay in delays:
            if delay:
                time.sleep(delay)
            record.attempts += 1
            header = sign_payload(payload, secret, int(time.time()))
            try:
                response = self._client.post(
                    url,
                    content=payload,
                    headers={
                        "content-type": "application/json; charset=utf-8",
                        "stripe-signature": header,
                        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    },
                )
            except httpx.HTTPError as exc:
                record.errors.append(type(exc).__name__)
                continue
            record.status = response.status_code
            if response.is_success:
                record.delivered = True
                return
            record.errors.append(f"HTTP {response.status_code}")

    def stop(self) -> None:
        """Stop the delivery thread (queued deliveries are dropped)."""
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._client.close()
