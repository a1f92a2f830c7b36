"""The plugin's public surface: entry point, catalog, writers, settings hygiene."""

from __future__ import annotations

from importlib.metadata import entry_points

import ledgerlink_salesforce
import pytest
from ledgerlink_salesforce import plugin
from ledgerlink_salesforce.settings import SalesforceSettings

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import ConnectorPlugin, WriteAction

BASE = {
    "instance_url": "https://acme.my.salesforce.com",
    "client_id": "cid",
    "username": "u@acme.test",
    "private_key": "-----BEGIN PRIVATE KEY-----MIIEvq",
}


def test_public_names_are_pinned() -> None:
    """The package exports exactly its documented names."""
    assert sorted(ledgerlink_salesforce.__all__) == [
        "SalesforceConnector",
        "SalesforcePlugin",
        "SalesforceSettings",
        "plugin",
    ]


def test_entry_point_names_the_plugin() -> None:
    """The ledgerlink.connectors entry point 'salesforce' loads this plugin."""
    (point,) = [e for e in entry_points(group="ledgerlink.connectors") if e.name == "salesforce"]
    assert point.load() is plugin
    assert isinstance(plugin, ConnectorPlugin)
    assert plugin.name == "salesforce"


def test_catalog_lists_the_eight_streams_on_systemmodstamp() -> None:
    """Every stream follows SystemModstamp, keys on Id and reports deletes."""
    streams = {s.name: s for s in plugin.stream_catalog()}
    assert set(streams) == {
        "Account",
        "Contact",
        "Opportunity",
        "OpportunityLineItem",
        "Quote",
        "QuoteLineItem",
        "Product2",
        "PricebookEntry",
    }
    assert all(
        s.cursor_field == "SystemModstamp" and s.primary_key == "Id" and s.supports_deletes
        for s in streams.values()
    )
    assert streams["Account"].entity == "party"


def test_writers_batch_200_with_the_external_id_field() -> None:
    """Writers advertise batches of 200 and the configured external-id field per object."""
    conn = plugin.connect({**BASE, "external_id_fields": {"Contact": "Hub_Key__c"}}, None)  # type: ignore[arg-type]
    try:
        specs = {w.object: w for w in conn.writers()}
        assert specs["Account"].batch_size == 200
        assert specs["Account"].external_id_field == "Ledgerlink_Id__c"
        assert specs["Contact"].external_id_field == "Hub_Key__c"
        assert WriteAction.UPSERT in specs["Quote"].actions
    finally:
        conn.close()


def test_settings_repr_hides_secrets() -> None:
    """The private key never shows in the settings' repr."""
    settings = SalesforceSettings.model_validate(BASE)
    assert "MIIEvq" not in repr(settings)
    assert settings.api_version == "64.0"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"auth": "password"}, "password"),
        ({"api_version": "v64"}, "api_version"),
        ({"streams": ["Lead"]}, "Lead"),
        ({"fields": {"Account": ["Name; DROP"]}}, "fields"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_bad_settings_are_configuration_errors(change: dict[str, object], needle: str) -> None:
    """Each kind of bad setting raises ConfigurationError naming what is wrong."""
    with pytest.raises(ConfigurationError, match=needle):
        plugin.connect({**BASE, **change}, None)  # type: ignore[arg-type]
