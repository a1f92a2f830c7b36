"""Serving a connector's sandbox: an ASGI app on loopback, optional TLS, switchable faults.

Each connector owns its fake of a vendor API as a Starlette (or any ASGI) app. This module
runs such an app on ``127.0.0.1`` in a background thread with uvicorn, optionally over TLS
with a throw-away self-signed certificate (clients that force ``https://`` need it), and wraps
it with :class:`FaultInjector` so tests and benchmarks can switch on throttling, server errors,
dropped connections and slow answers, rendered in the vendor's own error format.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import ipaddress
import random
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn

__all__ = [
    "ASGIApp",
    "ErrorRenderer",
    "Fault",
    "FaultInjector",
    "LoopbackServer",
    "Message",
    "Receive",
    "Scope",
    "SelfSignedCertificate",
    "Send",
    "make_self_signed_certificate",
    "pack_record",
    "unpack_record",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ErrorRenderer = Callable[[int], tuple[bytes, dict[str, str]]]
"""Turns an injected HTTP status into the vendor's error body and headers."""


@dataclass
class Fault:
    """One switchable fault.

    Attributes:
        kind: ``status`` (answer ``status`` with the vendor's error body), ``drop`` (start the
            answer, then cut the connection), or ``delay`` (answer normally after ``delay`` s).
        status: HTTP status for ``status`` faults (429, 500, 503, ...).
        rate: share of matching requests hit, 0..1.
        count: hit at most this many requests, None for no limit.
        path_prefix: only requests whose path starts with this are candidates.
        method: only this HTTP method, None for any.
        retry_after: value of the ``Retry-After`` header on 429/503, None to omit it.
        delay: seconds for ``delay`` faults.
    """

    kind: str = "status"
    status: int = 503
    rate: float = 1.0
    count: int | None = None
    path_prefix: str = ""
    method: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hits: int = field(default=0, init=False)

    def matches(self, method: str, path: str) -> bool:
        """True when a request with ``method`` and ``path`` is a candidate for this fault."""
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path_prefix)


def _default_renderer(status: int) -> tuple[bytes, dict[str, str]]:  # noqa: ARG001 - ErrorRenderer
    return b'{"error": "injected fault"}', {"content-type": "application/json"}


class FaultInjector:
    """ASGI middleware that applies :class:`Fault` rules before the wrapped app answers.

    It also counts every request it sees (``request_count``, ``requests``), which benchmarks
    use as the server-side truth of how many API calls a client made, and the time the app
    took to answer each one it let through (``served``: method, path, seconds), which tells
    the vendor's share of a client's wait.
    """

    def __init__(self, app: ASGIApp, *, render_error: ErrorRenderer | None = None, seed: int = 0):
        self.app = app
        self.render_error = render_error or _default_renderer
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.served: list[tuple[str, str, float]] = []
        self._random = random.Random(seed)  # noqa: S311 - fault sampling, not security
        self._lock = threading.Lock()

    @property
    def request_count(self) -> int:
        """Number of HTTP requests received so far."""
        return len(self.requests)

    def add(self, fault: Fault) -> Fault:
        """Switch on ``fault`` and return it (its ``hits`` counts what it did)."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Switch off every fault."""
        with self._lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        """Forget the requests counted so far."""
        with self._lock:
            self.requests.clear()
            self.served.clear()

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.matches(method, path) and self._random.random() < fault.rate:
                    fault.hits += 1
                    return fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, injecting a fault when one matches."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fault = self._pick(scope["method"], scope["path"])
        if fault is None:
            started = time.perf_counter()
            await self.app(scope, receive, send)
            seconds = time.perf_counter() - started
            with self._lock:
                self.served.append((scope["method"], scope["path"], seconds))
            return
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            await self.app(scope, receive, send)
            return
        if fault.kind == "drop":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"partial', "more_body": True})
            raise ConnectionAbortedError("sandbox fault: connection dropped")
        body, headers = self.render_error(fault.status)
        if fault.retry_after is not None:
            headers = {**headers, "retry-after": f"{fault.retry_after:g}"}
        await send(
            {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class SelfSignedCertificate:
    """PEM files of a certificate for 127.0.0.1 and localhost, and its key."""

    cert_path: Path
    key_path: Path


def make_self_signed_certificate(directory: Path) -> SelfSignedCertificate:
    """Write a fresh self-signed certificate for ``127.0.0.1``/``localhost`` into ``directory``.

    The certificate is its own CA, so a client trusts it with ``verify=cert_path``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledgerlink sandbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "sandbox-cert.pem"
    key_path = directory / "sandbox-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCertificate(cert_path=cert_path, key_path=key_path)


class LoopbackServer:
    """Runs an ASGI app on 127.0.0.1 in a daemon thread until :meth:`stop`.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``base_url`` is known after
    start; with ``tls=True`` the server speaks HTTPS with a self-signed certificate whose PEM
    path is ``ca_path``.
    """

    def __init__(
        self, app: ASGIApp, *, port: int = 0, tls: bool = False, loop: str = "asyncio"
    ) -> None:
        self.app = app
        self.port = port
        self.tls = tls
        # The plain asyncio loop by default: sandboxes favour predictable teardown (TLS
        # transports closed inside the loop) over speed; pass "auto" to measure a server as the
        # daemon runs it (uvloop when installed).
        self.loop = loop
        self.ca_path: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` of the running server."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        """Bind, start serving in the background and wait until ready.

        Raises:
            RuntimeError: the server did not start within ``timeout`` seconds.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn writes a response's head and body separately; with Nagle's algorithm the body
        # waits for the client's delayed ACK (~40 ms a call on loopback). Accepted sockets
        # inherit TCP_NODELAY from the listener on Linux.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        ssl_kwargs: dict[str, Any] = {}
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="ledgerlink-sandbox-")
            cert = make_self_signed_certificate(Path(self._tmp.name))
            self.ca_path = cert.cert_path
            ssl_kwargs = {"ssl_certfile": str(cert.cert_path), "ssl_keyfile": str(cert.key_path)}
        config = uvicorn.Config(
            self.app,
            log_level="critical",
            access_log=False,
            lifespan="off",
            loop=self.loop,
            timeout_graceful_shutdown=2,
            **ssl_kwargs,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox"
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                msg = f"sandbox server did not start on port {self.port}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- kept records ------------------------------------------------------------------------------


def pack_record(record: dict[str, Any]) -> bytes | dict[str, Any]:
    """``record`` as JSON bytes, the form a sandbox keeps records in (a fifth of the dict).

    A copy the size of the JSON: orjson's own output keeps its whole write buffer (4 KiB at
    least). One that orjson cannot encode (an integer beyond 64 bits, say) is kept as a
    private copy instead, so that whatever a client sent is kept and answered as before.
    """
    try:
        return bytes(memoryview(orjson.dumps(record)))
    except TypeError:
        return copy.deepcopy(record)


def unpack_record(stored: bytes | dict[str, Any]) -> dict[str, Any]:
    """A fresh record from its kept form (:func:`pack_record`): callers may change it."""
    if isinstance(stored, bytes):
        decoded: dict[str, Any] = orjson.loads(stored)
        return decoded
    return copy.deepcopy(stored)
