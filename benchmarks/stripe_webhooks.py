"""Benchmark: Stripe webhook intake throughput and latency.

Signs realistic invoice events and feeds them to :class:`WebhookIntake` (signature check,
time window, de-duplication, ordering, hand-over to an in-memory sink), first in-process and
then over HTTP on loopback to a Starlette endpoint served by uvicorn in its own process, with
one sender and with several concurrent senders (Stripe delivers concurrently).

    .venv/bin/python benchmarks/stripe_webhooks.py --events 5000 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from ledgerlink_stripe.signature import sign_payload
from ledgerlink_stripe.webhooks import WebhookEvent, WebhookIntake
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledgerlink.connector.sandbox import LoopbackServer
from ledgerlink.log import configure_logging

SECRET = "whsec_benchmarkSecret0001"


class _Sink:
    def __init__(self) -> None:
        self.events: list[str] = []

    def accept(self, event: WebhookEvent) -> None:
        self.events.append(event.id)


def _bodies(n: int) -> list[bytes]:
    now = int(time.time())
    out = []
    for i in range(n):
        invoice = {
            "id": f"in_bench{i % 997:06d}",
            "object": "invoice",
            "status": "paid",
            "amount_paid": 4_900 + i,
            "currency": "eur",
            "lines": {"object": "list", "data": [{"id": f"il_{i}", "amount": 4_900}]},
        }
        event = {
            "id": f"evt_bench{i:08d}",
            "object": "event",
            "type": "invoice.paid",
            "created": now,
            "api_version": "2026-10-28.endive",
            "livemode": False,
            "data": {"object": invoice},
        }
        out.append(json.dumps(event).encode())
    return out


def _report(name: str, latencies: list[float], seconds: float) -> dict[str, float | str]:
    ordered = sorted(latencies)
    return {
        "mode": name,
        "events": len(latencies),
        "events_per_second": round(len(latencies) / seconds),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
    }


def serve() -> None:
    """Serve a WebhookIntake on loopback; print the base URL; run until terminated."""
    configure_logging(level="WARNING", json=True)
    intake = WebhookIntake([SECRET], _Sink())

    async def endpoint(request: Request) -> Response:
        result = intake.handle(await request.body(), request.headers)
        return Response(result.outcome, status_code=result.status)

    app = Starlette(routes=[Route("/webhooks/stripe", endpoint, methods=["POST"])])
    server = LoopbackServer(app, loop="auto").start()  # as the daemon serves: uvloop
    print(server.base_url, flush=True)
    signal.sigwait({signal.SIGTERM})
    server.stop()


def main() -> None:
    if "--serve" in sys.argv:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        serve()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True)
    bodies = _bodies(args.events)
    results = []

    intake = WebhookIntake([SECRET], _Sink())
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        headers = {"Stripe-Signature": sign_payload(body, SECRET, int(time.time()))}
        result = intake.handle(body, headers)
        latencies.append(time.perf_counter() - t0)
        assert result.status == 200
    results.append(_report("in-process", latencies, time.perf_counter() - started))

    # The receiving server runs in its own process, as the daemon would; the senders here.
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    base_url = server.stdout.readline().strip()

    def deliver(chunk: list[bytes]) -> list[float]:
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        times = []
        with httpx.Client(base_url=base_url, transport=transport) as client:
            for body in chunk:
                headers = {
                    "Stripe-Signature": sign_payload(body, SECRET, int(time.time())),
                    "content-type": "application/json",
                }
                t0 = time.perf_counter()
                response = client.post("/webhooks/stripe", content=body, headers=headers)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text
        return times

    try:
        for run, senders in enumerate((1, args.concurrency)):
            # Distinct event ids per run, so the second run is not all duplicates.
            run_bodies = [b.replace(b"evt_bench", f"evt_r{run}_".encode()) for b in bodies]
            chunks = [run_bodies[i::senders] for i in range(senders)]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=senders) as pool:
                latencies = [t for part in pool.map(deliver, chunks) for t in part]
            results.append(
                _report(f"http-loopback x{senders}", latencies, time.perf_counter() - started)
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
