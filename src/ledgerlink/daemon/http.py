"""The daemon's HTTP surface: health, readiness, metrics, status and webhook intake.

* ``GET /healthz``: liveness. 200 while the process serves and the scheduler thread is alive.
* ``GET /readyz``: readiness. 200 when the database answers, its migrations are at head and
  every scheduled stream had a successful pull within its threshold; otherwise 503. The JSON
  body lists each check and says which one fails.
* ``GET /metrics``: Prometheus text exposition of :data:`ledgerlink.metrics.REGISTRY`.
* ``GET /status``: JSON summary for people and scripts (per-stream lag, last success, errors by
  kind, jobs and their next run). Protected by a bearer token when one is configured.
* ``POST /webhooks/{name}``: hands the raw body and headers to the webhook handler that
  connector ``name`` offers (``plugin.webhook_handler(settings, store)``); 404 when it offers none.

No endpoint returns secrets or customer data: errors appear by kind, labels are names.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledgerlink.daemon.status import Readiness
from ledgerlink.metrics import REGISTRY

__all__ = ["MAX_WEBHOOK_BYTES", "DaemonView", "WebhookAnswer", "create_app"]

#: Webhook bodies larger than this are refused with 413 before any handler sees them.
MAX_WEBHOOK_BYTES = 1024 * 1024

WebhookAnswer = tuple[int, Mapping[str, Any]]
"""HTTP status and JSON body returned to a webhook sender."""


class DaemonView(Protocol):
    """What the HTTP surface needs from the daemon."""

    def liveness(self) -> tuple[bool, str]:
        """Return whether the process and its scheduler are alive, and why not."""
        ...

    def readiness(self) -> Readiness:
        """Run the readiness checks."""
        ...

    def status(self) -> dict[str, Any]:
        """Return the ``/status`` document (no secrets, no customer data)."""
        ...

    def refresh_metrics(self) -> None:
        """Update the gauges computed from the store before a scrape."""
        ...

    def status_token(self) -> str | None:
        """Return the bearer token ``/status`` requires, or None when it is open."""
        ...

    def webhook(self, name: str, body: bytes, headers: Mapping[str, str]) -> WebhookAnswer | None:
        """Hand a webhook delivery to connector ``name``; None when it takes no webhooks."""
        ...


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(daemon: DaemonView) -> Starlette:
    """Build the Starlette application serving ``daemon``'s endpoints.

    Args:
        daemon: the running daemon (or any object with the same methods, in tests).

    Returns:
        An ASGI application; synchronous daemon calls run in a worker thread.
    """

    async def healthz(_request: Request) -> Response:
        alive, reason = daemon.liveness()
        return JSONResponse({"alive": alive, "detail": reason}, status_code=200 if alive else 503)

    async def readyz(_request: Request) -> Response:
        readiness = await run_in_threadpool(daemon.readiness)
        return JSONResponse(readiness.to_json(), status_code=200 if readiness.ok else 503)

    async def metrics(_request: Request) -> Response:
        await run_in_threadpool(daemon.refresh_metrics)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def status(request: Request) -> Response:
        if not _authorized(request, daemon.status_token()):
            return JSONResponse(
                {"error": "a bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="ledgerlink"'},
            )
        document = await run_in_threadpool(daemon.status)
        return Response(
            json.dumps(document, sort_keys=True, indent=2), media_type="application/json"
        )

    async def webhook(request: Request) -> Response:
        name = request.path_params["name"]
        body = await _read_limited(request, MAX_WEBHOOK_BYTES)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {key.lower(): value for key, value in request.headers.items()}
        answer = await run_in_threadpool(daemon.webhook, name, body, headers)
        if answer is None:
            return JSONResponse({"error": f"no webhook intake for {name!r}"}, status_code=404)
        code, document = answer
        return JSONResponse(dict(document), status_code=code)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
            Route("/webhooks/{name}", webhook, methods=["POST"]),
        ]
    )
