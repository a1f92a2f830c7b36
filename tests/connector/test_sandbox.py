"""Tests of sandbox serving: loopback sockets, TLS, and switchable faults."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ledgerlink.connector.sandbox import Fault, FaultInjector, LoopbackServer


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def render(status: int) -> tuple[bytes, dict[str, str]]:
    return json.dumps([{"errorCode": f"E{status}"}]).encode(), {"content-type": "application/json"}


@pytest.fixture
def served() -> tuple[LoopbackServer, FaultInjector]:
    app = FaultInjector(Starlette(routes=[Route("/hello", hello)]), render_error=render, seed=1)
    with LoopbackServer(app) as server:
        yield server, app


def test_serves_over_a_real_socket_and_counts_requests(
    served: tuple[LoopbackServer, FaultInjector],
) -> None:
    """The app answers on 127.0.0.1 and every request is counted."""
    server, faults = served
    assert httpx.get(f"{server.base_url}/hello").json() == {"hello": "world"}
    assert faults.request_count == 1


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(0.05)
    return JSONResponse({"slow": True})


def test_the_time_the_app_took_is_kept_for_each_request_it_answered() -> None:
    """Benchmarks read the vendor's share of a client's wait: each answered request is kept
    with the seconds the app took; a request a fault answered is counted but not timed."""
    app = FaultInjector(Starlette(routes=[Route("/hello", hello), Route("/slow", slow)]), seed=1)
    with LoopbackServer(app) as server:
        assert httpx.get(f"{server.base_url}/slow").json() == {"slow": True}
        httpx.get(f"{server.base_url}/hello")
        app.add(Fault(status=500, count=1))
        assert httpx.get(f"{server.base_url}/hello").status_code == 500
    assert app.request_count == 3
    assert [(method, path) for method, path, _ in app.served] == [
        ("GET", "/slow"),
        ("GET", "/hello"),
    ]
    assert app.served[0][2] >= 0.05
    app.reset_counts()
    assert not app.served


def test_status_fault_uses_vendor_error_body_and_retry_after(
    served: tuple[LoopbackServer, FaultInjector],
) -> None:
    """A status fault answers in the vendor's error format with Retry-After, then stops after its count."""
    server, faults = served
    fault = faults.add(Fault(status=429, count=1, retry_after=3))
    first = httpx.get(f"{server.base_url}/hello")
    assert first.status_code == 429
    assert first.json() == [{"errorCode": "E429"}]
    assert first.headers["retry-after"] == "3"
    assert httpx.get(f"{server.base_url}/hello").status_code == 200
    assert fault.hits == 1


def test_drop_fault_cuts_the_connection(served: tuple[LoopbackServer, FaultInjector]) -> None:
    """A drop fault breaks the response mid-way, as a dying connection would."""
    server, faults = served
    faults.add(Fault(kind="drop", count=1))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/hello")


def test_tls_server_is_trusted_with_its_own_certificate() -> None:
    """With tls=True the server speaks HTTPS with a certificate a client can pin."""
    app = Starlette(routes=[Route("/hello", hello)])
    with LoopbackServer(app, tls=True) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        assert server.ca_path is not None
        response = httpx.get(
            f"{server.base_url}/hello", verify=ssl.create_default_context(cafile=server.ca_path)
        )
        assert response.json() == {"hello": "world"}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/hello")
