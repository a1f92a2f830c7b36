"""The plugin surface the core relies on, and the sandbox's own guarantees."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import entry_points

import httpx
import ledgerlink_quickbooks
import pytest
from ledgerlink_quickbooks import plugin
from ledgerlink_quickbooks.sandbox import QuickBooksSandbox

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import (
    ConnectorContext,
    ConnectorPlugin,
    Cursor,
    Sandbox,
    SandboxOptions,
)
from ledgerlink.connector.sandbox import Fault


class Store:
    def __init__(self):
        self.values = {}

    def get(self, name):
        return self.values.get(name)

    def put(self, name, value):
        self.values[name] = value


def test_entry_point_names_the_plugin():
    """The ledgerlink.connectors entry point 'quickbooks' loads this plugin."""
    [ep] = [e for e in entry_points(group="ledgerlink.connectors") if e.name == "quickbooks"]
    assert ep.load() is plugin
    assert isinstance(plugin, ConnectorPlugin)
    assert plugin.name == "quickbooks"


def test_public_surface_is_pinned():
    """The package exports exactly its documented names."""
    assert sorted(ledgerlink_quickbooks.__all__) == [
        "QuickBooksConnector",
        "QuickBooksPlugin",
        "QuickBooksSettings",
        "plugin",
    ]


def test_catalog_lists_every_issue_stream():
    """The catalog holds the eleven QuickBooks entities the hub reads."""
    assert [s.name for s in plugin.stream_catalog()] == [
        "Customer",
        "Item",
        "Account",
        "Invoice",
        "Payment",
        "CreditMemo",
        "RefundReceipt",
        "Deposit",
        "JournalEntry",
        "TaxCode",
        "Currency",
    ]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"realm_id": "abc"}, "realm_id"),
        ({"client_secret": None}, "client_secret"),
        ({"page_size": 5000}, "page_size"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_settings_raise_configuration_error(change, needle):
    """Invalid settings are refused with a message naming the field, never the secret."""
    settings = {"client_id": "c", "client_secret": "s3cr3t-value", "realm_id": "123", **change}
    with pytest.raises(ConfigurationError) as excinfo:
        plugin.connect(settings, ConnectorContext(secrets=Store()))
    assert needle in str(excinfo.value)
    assert "s3cr3t-value" not in str(excinfo.value)


def test_sandbox_reached_through_plugin_connect():
    """start_sandbox serves on loopback and its settings let plugin.connect read from it."""
    box = plugin.start_sandbox(SandboxOptions(seed=3, size=12))
    try:
        assert isinstance(box, Sandbox)
        assert box.base_url.startswith("http://127.0.0.1:")
        conn = plugin.connect(box.connector_settings(), ConnectorContext(secrets=Store()))
        try:
            assert conn.check().ok
            pages = list(conn.read("Customer", Cursor()))
            assert len([r for p in pages for r in p.records]) == 12
        finally:
            conn.close()
    finally:
        box.stop()


def test_same_seed_gives_the_same_company():
    """Two sandboxes with one seed hold identical customers and invoices."""
    a = QuickBooksSandbox(SandboxOptions(seed=5, size=30))
    b = QuickBooksSandbox(SandboxOptions(seed=5, size=30))
    try:
        for entity in ("Customer", "Invoice", "Payment"):
            assert list(a.company.tables[entity].by_id()) == list(b.company.tables[entity].by_id())
        assert a.trial_balance() == b.trial_balance()
    finally:
        a.stop()
        b.stop()


def test_seeded_customers_are_messy_like_real_books():
    """Seeded customers include missing emails, case variants and hand-made duplicates."""
    box = QuickBooksSandbox(SandboxOptions(seed=7, size=400))
    try:
        customers = list(box.company.tables["Customer"].by_id())
        assert any("PrimaryEmailAddr" not in c for c in customers)
        names = [c["DisplayName"] for c in customers]
        assert len(set(names)) == len(names)
        assert any(n.isupper() for n in names)
        assert any(n.endswith(" Inc.") for n in names)
        assert any(c["CurrencyRef"]["value"] == "EUR" for c in customers)
    finally:
        box.stop()


def test_injected_faults_use_quickbooks_error_bodies(sandbox):
    """A switched-on 503 answers with QuickBooks' SystemFault body."""
    sandbox.faults.add(Fault(status=503, count=1, path_prefix="/v3/"))
    answer = httpx.get(f"{sandbox.base_url}/v3/company/1/query")
    assert answer.status_code == 503
    assert answer.json()["Fault"]["type"] == "SystemFault"


def test_query_language_errors_answer_code_4000(connector):
    """A query outside the language is refused with QuickBooks' parser fault."""
    answer = connector.http.client.get(
        "query", params={"query": "SELECT Id FROM Customer MAXRESULTS 5000"}
    )
    assert answer.status_code == 400
    assert answer.json()["Fault"]["Error"][0]["code"] == "4000"


def test_batch_of_more_than_thirty_items_is_refused(connector):
    """The sandbox, like QuickBooks, refuses a batch of 31 items."""
    items = [
        {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"x{i}"}}
        for i in range(31)
    ]
    answer = connector.http.client.post("batch", json={"BatchItemRequest": items})
    assert answer.status_code == 400
    assert "30" in answer.json()["Fault"]["Error"][0]["Detail"]


def test_sandbox_refuses_the_eleventh_concurrent_request():
    """The sandbox admits at most ten requests in flight per realm, like QuickBooks."""
    from ledgerlink_quickbooks.sandbox.app import OAuthServer, SandboxLimits, SandboxState
    from ledgerlink_quickbooks.sandbox.store import Clock

    clock = Clock()
    limits = SandboxLimits(requests_per_second=None)
    state = SandboxState(clock=clock, companies={}, oauth=OAuthServer(clock), limits=limits)
    assert all(state.admit("r", batch=False) for _ in range(10))
    assert not state.admit("r", batch=False)
    state.release("r")
    assert state.admit("r", batch=False)


def test_sandbox_refuses_the_eleventh_request_within_a_second():
    """The sandbox answers 429 past ten requests in one second per realm, like QuickBooks."""
    from ledgerlink_quickbooks.sandbox.app import OAuthServer, SandboxLimits, SandboxState
    from ledgerlink_quickbooks.sandbox.store import Clock

    clock = Clock()
    limits = SandboxLimits(concurrent=None)
    state = SandboxState(clock=clock, companies={}, oauth=OAuthServer(clock), limits=limits)
    for _ in range(10):
        assert state.admit("r", batch=False)
        state.release("r")
    assert not state.admit("r", batch=False)
    clock.advance(dt.timedelta(seconds=1))
    assert state.admit("r", batch=False)
