"""Secret scan: the test run fails when a secret shows up anywhere a person could read it.

Enabled for the whole suite from ``tests/conftest.py``. For the run it:

* puts canary secrets into the environment (:data:`CANARIES`; configs in tests read them with
  ``"env:LEDGERLINK_TEST_CANARY_..."`` references) and registers them with the log redactor,
  as a production configuration would;
* captures every rendered structlog event (the output of the JSON and console renderers, that
  is after redaction), every stdlib log record, the message and repr of every ledgerlink error
  (configuration, mapping and connector errors, webhook signature errors), every body the
  daemon's HTTP endpoints answer (``/status``, ``/metrics``, ``/healthz``, ``/readyz``,
  webhooks), each test's captured stdout, stderr and log sections and its failure report, and
  at the end the Prometheus text of every registry;
* after each test, checks what it captured against the canaries and every value registered with
  :func:`ledgerlink.log.register_secret` so far (values shorter than eight characters are
  skipped: they cannot be told apart from ordinary words);
* fails the run (exit status 1) and lists each leak, with the test, the channel and a masked
  hint of the secret (never the secret itself), in a "secret scan" section of the summary.

With pytest-xdist (``-n``) each worker scans the tests it runs and hands its leaks and counts to
the controller, which fails the run and prints the summary; the controller does not scan the
reports the workers forward again.

``tests/security/test_secret_scan.py`` plants a leak in a separate run and checks that it fails.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

CANARY_PREFIX = "LEDGERLINK_TEST_CANARY_"
CANARIES: dict[str, str] = {
    f"{CANARY_PREFIX}STRIPE_API_KEY": "sk_test_51CanaryStripeKey7f3d9a2b",
    f"{CANARY_PREFIX}STRIPE_WEBHOOK_SECRET": "whsec_CanaryWebhookSecret5e8c1d4f",
    f"{CANARY_PREFIX}QUICKBOOKS_CLIENT_SECRET": "qbo-canary-client-secret-91b7e2",
    f"{CANARY_PREFIX}QUICKBOOKS_REFRESH_TOKEN": "AB11-canary-refresh-token-6c0a4f",
    f"{CANARY_PREFIX}SALESFORCE_CLIENT_SECRET": "sf-canary-consumer-secret-3d5b8e",
    f"{CANARY_PREFIX}STATUS_TOKEN": "canary-status-token-2a9f61c7",
    # A valid Fernet key (32 url-safe base64 bytes), for DbSecretStore.
    f"{CANARY_PREFIX}ENCRYPTION_KEY": "Y2FuYXJ5LWZlcm5ldC1rZXktZm9yLXRlc3RzLTAwMDE=",
}
"""Environment variable name -> canary secret value, set for the whole run."""

MIN_SECRET_LENGTH = 8
_HTTP_BODY_LIMIT = 1_000_000


def hint(secret: str) -> str:
    """A recognisable but harmless stand-in for ``secret`` in reports."""
    return f"{secret[:3]}…({len(secret)} chars)"


@dataclass(frozen=True)
class Leak:
    """A secret found in captured text."""

    test: str
    channel: str
    secret_hint: str

    def __str__(self) -> str:
        return f"{self.test}: {self.secret_hint} in {self.channel}"


class SecretScanner:
    """Collects text from every channel during a test and checks it against the secrets."""

    def __init__(self, canaries: dict[str, str]) -> None:
        self.canaries = dict(canaries)
        self.leaks: list[Leak] = []
        self.texts_checked = 0
        self.secrets_known = 0  # the most secrets an xdist worker checked against
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._restore: list[Callable[[], None]] = []

    # -- what to look for ------------------------------------------------------------------

    def secrets(self) -> list[str]:
        """The canaries and every secret registered with the log redactor, long enough to tell."""
        from ledgerlink import log

        with log._secrets_lock:
            registered = set(log._secrets)
        found = registered | set(self.canaries.values())
        return sorted(s for s in found if len(s) >= MIN_SECRET_LENGTH)

    # -- collecting ------------------------------------------------------------------------

    def record(self, channel: str, text: object) -> None:
        """Keep ``text`` (seen on ``channel``) for the check at the end of the current test."""
        if text is None:
            return
        value = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        if value:
            with self._lock:
                self._pending.append((channel, value))

    def check(self, test: str) -> list[Leak]:
        """Check everything recorded since the last check; remember and return the leaks."""
        with self._lock:
            pending, self._pending = self._pending, []
        secrets = self.secrets()
        found: list[Leak] = []
        seen: set[tuple[str, str]] = set()
        for channel, text in pending:
            self.texts_checked += 1
            for secret in secrets:
                if secret in text and (channel, secret) not in seen:
                    seen.add((channel, secret))
                    found.append(Leak(test, channel, hint(secret)))
        self.leaks.extend(found)
        return found

    # -- xdist: workers scan, the controller adds up ------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        """What a worker hands to the controller: its leaks and counts (hints only, no secret)."""
        return {
            "leaks": [[leak.test, leak.channel, leak.secret_hint] for leak in self.leaks],
            "texts_checked": self.texts_checked,
            "secrets": len(self.secrets()),
        }

    def add_worker_output(self, output: dict[str, Any]) -> None:
        """On the controller, take in what a finished worker found."""
        self.leaks.extend(Leak(*leak) for leak in output.get("leaks", []))
        self.texts_checked += int(output.get("texts_checked", 0))
        self.secrets_known = max(self.secrets_known, int(output.get("secrets", 0)))

    # -- hooks into the code under test ------------------------------------------------------

    def install(self) -> None:
        """Start capturing on every channel (undone by :meth:`uninstall`)."""
        for name, value in self.canaries.items():
            previous = os.environ.get(name)
            os.environ[name] = value
            self._restore.append(_env_restorer(name, previous))
        from ledgerlink.log import register_secret

        register_secret(*self.canaries.values())
        self._wrap_renderers()
        self._add_log_handler()
        self._wrap_errors()
        self._wrap_daemon_app()

    def uninstall(self) -> None:
        """Undo :meth:`install`."""
        while self._restore:
            self._restore.pop()()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, replacement)
        self._restore.append(lambda: setattr(owner, name, original))

    def _wrap_renderers(self) -> None:
        import structlog

        for renderer in (
            structlog.processors.JSONRenderer,
            structlog.processors.KeyValueRenderer,
            structlog.processors.LogfmtRenderer,
            structlog.dev.ConsoleRenderer,
        ):
            self._patch(renderer, "__call__", _recording_call(self, renderer.__call__))

    def _add_log_handler(self) -> None:
        handler = _RecordingHandler(self)
        root = logging.getLogger()
        root.addHandler(handler)
        self._restore.append(lambda: root.removeHandler(handler))

    def _wrap_errors(self) -> None:
        from ledgerlink.config import ConfigError
        from ledgerlink.connector.errors import ConnectorError
        from ledgerlink.mapping import MappingError, RecordMappingError

        classes: list[type[BaseException]] = [
            ConfigError,
            ConnectorError,
            MappingError,
            RecordMappingError,
        ]
        try:
            from ledgerlink_stripe.signature import SignatureError
        except ImportError:  # pragma: no cover - the Stripe connector is part of the workspace
            pass
        else:
            classes.append(SignatureError)
        for cls in classes:
            if "__init__" in cls.__dict__:
                self._patch(cls, "__init__", _recording_init(self, cls.__dict__["__init__"]))

    def _wrap_daemon_app(self) -> None:
        from ledgerlink.daemon import http, service

        original = http.create_app

        def create_app(daemon: Any) -> Any:
            return _RecordingASGI(original(daemon), self)

        for module in (http, service):
            if module.__dict__.get("create_app") is original:
                self._patch(module, "create_app", create_app)

    def check_metrics(self) -> None:
        """Record the Prometheus text of the ledgerlink and the default registries."""
        import prometheus_client

        from ledgerlink.metrics import REGISTRY

        for registry in (REGISTRY, prometheus_client.REGISTRY):
            self.record("metrics", prometheus_client.generate_latest(registry))


def _env_restorer(name: str, previous: str | None) -> Callable[[], None]:
    def restore() -> None:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    return restore


def _recording_call(scanner: SecretScanner, call: Any) -> Any:
    def __call__(self: Any, logger: Any, name: str, event_dict: Any) -> Any:  # noqa: N807 - replaces __call__
        rendered = call(self, logger, name, event_dict)
        scanner.record("structlog output", rendered)
        return rendered

    return __call__


def _recording_init(scanner: SecretScanner, init: Any) -> Any:
    def __init__(self: BaseException, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces __init__
        init(self, *args, **kwargs)
        scanner.record(f"{type(self).__name__} message", str(self))
        scanner.record(f"{type(self).__name__} repr", repr(self))

    return __init__


class _RecordingHandler(logging.Handler):
    """Records every stdlib log record that reaches the root logger, formatted."""

    def __init__(self, scanner: SecretScanner) -> None:
        super().__init__(level=logging.NOTSET)
        self.scanner = scanner
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.scanner.record(f"stdlib log ({record.name})", self.format(record))
        except Exception:  # a broken record must not break the test's logging
            self.handleError(record)


class _RecordingASGI:
    """ASGI middleware recording the body of every HTTP answer of the daemon."""

    def __init__(self, app: Any, scanner: SecretScanner) -> None:
        self.app = app
        self.scanner = scanner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        channel = f"daemon HTTP {scope.get('method')} {scope.get('path')}"
        body = bytearray()

        async def recording_send(message: Any) -> None:
            if message.get("type") == "http.response.body" and len(body) < _HTTP_BODY_LIMIT:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self.scanner.record(channel, bytes(body))
            await send(message)

        await self.app(scope, receive, recording_send)


# -- pytest hooks ------------------------------------------------------------------------------

_SCANNER = SecretScanner(CANARIES)


@pytest.fixture(scope="session")
def canary_secrets() -> dict[str, str]:
    """Environment variable name -> canary value; configs reference them as ``env:NAME``."""
    return dict(_SCANNER.canaries)


def pytest_configure(config: pytest.Config) -> None:
    """Start capturing before any test module is imported."""
    config.stash[_ACTIVE] = True
    _SCANNER.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop capturing."""
    if config.stash.get(_ACTIVE, False):
        _SCANNER.uninstall()


_ACTIVE = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Check what each test (setup, call and teardown) made visible, once it is over."""
    try:
        return (yield)
    finally:
        _SCANNER.check(item.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record a test's captured output and its failure report."""
    if getattr(report, "node", None) is not None:
        return  # forwarded by an xdist worker, which scanned it already
    for title, content in report.sections:
        _SCANNER.record(f"test output ({title})", content)
    if report.failed:
        _SCANNER.record("failure report", report.longreprtext)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Check the metrics and anything recorded outside tests; fail the run on any leak."""
    _SCANNER.check_metrics()
    _SCANNER.check("(outside any test)")
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["secret_scan"] = _SCANNER.worker_output()
    if _SCANNER.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """On the xdist controller, take in the leaks and counts of a finished worker."""
    workeroutput: dict[str, Any] = getattr(node, "workeroutput", None) or {}
    _SCANNER.add_worker_output(workeroutput.get("secret_scan", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the leaks, or say how much was checked."""
    secrets = max(len(_SCANNER.secrets()), _SCANNER.secrets_known)
    if not _SCANNER.leaks:
        terminalreporter.write_line(
            f"secret scan: {_SCANNER.texts_checked} texts checked against {secrets} secrets, "
            "no leak"
        )
        return
    terminalreporter.section("secret scan", red=True)
    for leak in _SCANNER.leaks:
        terminalreporter.write_line(f"LEAK {leak}")
    terminalreporter.write_line(
        f"secret scan: {len(_SCANNER.leaks)} leak(s) in {_SCANNER.texts_checked} texts; "
        "the run fails"
    )
