"""The Stripe plugin's public surface and settings validation."""

from __future__ import annotations

from typing import Any

import ledgerlink_stripe
import pytest

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import (
    Connector,
    ConnectorContext,
    ConnectorPlugin,
    Sandbox,
    SandboxOptions,
)
from ledgerlink.connector.registry import discover


class _Secrets:
    def get(self, name: str) -> str | None:
        return None

    def put(self, name: str, value: str) -> None:
        return None


CONTEXT = ConnectorContext(secrets=_Secrets())


def test_public_names_are_pinned() -> None:
    """The package exports exactly its documented names."""
    assert sorted(ledgerlink_stripe.__all__) == sorted(
        [
            "PINNED_API_VERSION",
            "EventSink",
            "IntakeResult",
            "StripeConnector",
            "StripePlugin",
            "StripeSettings",
            "WebhookEvent",
            "WebhookIntake",
            "plugin",
        ]
    )


def test_plugin_satisfies_the_protocol_and_is_registered() -> None:
    """The entry point 'stripe' names a ConnectorPlugin with every Stripe stream."""
    plugin = ledgerlink_stripe.plugin
    assert isinstance(plugin, ConnectorPlugin)
    assert plugin.name == "stripe"
    names = {s.name for s in plugin.stream_catalog()}
    assert names == {
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "payment_intents",
        "charges",
        "refunds",
        "credit_notes",
        "disputes",
        "payouts",
        "payout_transactions",
        "balance_transactions",
    }
    loaded = discover()["stripe"]
    assert loaded.plugin is plugin


def test_connect_to_sandbox_and_check() -> None:
    """The sandbox's own settings connect, and check() passes."""
    plugin = ledgerlink_stripe.plugin
    sandbox = plugin.start_sandbox(SandboxOptions(size=10))
    try:
        assert isinstance(sandbox, Sandbox)
        conn = plugin.connect(sandbox.connector_settings(), CONTEXT)
        assert isinstance(conn, Connector)
        assert conn.check().ok
        conn.close()
    finally:
        sandbox.stop()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "api_key"),
        ({"api_key": "pk_live_publishableKey"}, "api_key"),
        ({"api_key": "sk_test_abcdefgh", "api_base": "http://evil.example"}, "api_base"),
        ({"api_key": "sk_test_abcdefgh", "page_size": 500}, "page_size"),
    ],
)
def test_bad_settings_raise_configuration_error_without_secrets(
    settings: dict[str, Any], field: str
) -> None:
    """Invalid settings raise ConfigurationError naming the field and not the key."""
    with pytest.raises(ConfigurationError) as info:
        ledgerlink_stripe.plugin.connect(settings, CONTEXT)
    assert field in str(info.value)
    assert "publishableKey" not in str(info.value)


def test_check_reports_a_refused_key() -> None:
    """check() reports failure (not an exception) when the key is refused."""
    plugin = ledgerlink_stripe.plugin
    sandbox = plugin.start_sandbox(SandboxOptions(size=10))
    try:
        settings = {**sandbox.connector_settings(), "api_key": "sk_test_revokedKey000000"}
        conn = plugin.connect(settings, CONTEXT)
        report = conn.check()
        assert not report.ok
        assert "revokedKey" not in str(report)
        conn.close()
    finally:
        sandbox.stop()
