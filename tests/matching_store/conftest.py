"""Fixtures for matching in the store: small hand-made parties, and the three sandboxes.

``land_parties`` lands, in the vendors' own formats, two companies that several systems hold
(Acme Analytics in all three, Zephyr Tools in Salesforce and QuickBooks) and one that only
Stripe knows. ``sandboxes`` starts the Salesforce, Stripe and QuickBooks sandboxes once per
session with 20 seeded customers each, and creates through their APIs the same kind of
overlap, since their seed data share no company (see ``docs/matching.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, Record, Sandbox, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import CustomerLink, DbSecretStore, Store, generate_key
from ledgerlink.sync.engine import pull
from ledgerlink.sync.runtime import connect

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def link_created(engine: Engine, external_id: str, customer_id: str, at: datetime = NOW) -> None:
    """Link QuickBooks customer ``external_id`` to ``customer_id`` as one the hub created (a
    ``created`` link, as the push writes it once the create is done)."""
    with engine.begin() as conn:
        conn.execute(
            insert(CustomerLink.__table__).values(  # type: ignore[attr-defined]
                system="quickbooks",
                object="Customer",
                external_id=external_id,
                customer_id=customer_id,
                score=1.0,
                method="created",
                status="linked",
                reasons=[{"kind": "created"}],
                created_at=at,
                updated_at=at,
            )
        )


PARTY_STREAMS = {"salesforce": "Account", "stripe": "customers", "quickbooks": "Customer"}

SF_ACME = "salesforce:Account:001Hs00000ACME1AAA"
STRIPE_ACME = "stripe:customers:cus_acme"
QB_ACME = "quickbooks:Customer:7"
SF_ZEPHYR = "salesforce:Account:001Hs00000ZEPH1AAA"
QB_ZEPHYR = "quickbooks:Customer:8"
STRIPE_UMBRA = "stripe:customers:cus_umbra"


@pytest.fixture(scope="session")
def mappings() -> MappingSet:
    """The default mappings shipped in ``mappings/``."""
    return load_mappings()


def salesforce_account(record_id: str, name: str, **fields: Any) -> Record:
    """A Salesforce Account as the REST API returns it."""
    payload = {
        "Id": record_id,
        "Name": name,
        "LastModifiedDate": "2026-02-01T10:00:00.000+0000",
        "SystemModstamp": "2026-02-01T10:00:00.000+0000",
        **fields,
    }
    return Record("Account", record_id, payload)


def stripe_customer(record_id: str, name: str, **fields: Any) -> Record:
    """A Stripe customer object."""
    payload = {"id": record_id, "object": "customer", "name": name, "created": 1767225600}
    payload.update(fields)
    return Record("customers", record_id, payload)


def quickbooks_customer(record_id: str, name: str, **fields: Any) -> Record:
    """A QuickBooks Online Customer entity."""
    payload = {
        "Id": record_id,
        "DisplayName": name,
        "MetaData": {"LastUpdatedTime": "2026-02-02T10:00:00-08:00"},
        **fields,
    }
    return Record("Customer", record_id, payload)


def land_parties(store: Store, now: datetime = NOW) -> None:
    """Land Acme Analytics (3 systems), Zephyr Tools (2 systems) and Umbra Labs (Stripe)."""
    store.land(
        "salesforce",
        [
            salesforce_account(
                "001Hs00000ACME1AAA",
                "Acme Analytics Inc",
                Website="https://www.acme-analytics.com",
                Phone="+1 415 555 0100",
                BillingStreet="100 Market Street",
                BillingCity="San Francisco",
                BillingPostalCode="94105",
                BillingCountry="United States",
            ),
            salesforce_account(
                "001Hs00000ZEPH1AAA",
                "Zephyr Tools GmbH",
                Website="zephyr-tools.de",
                Phone="+49 30 9876543",
                BillingStreet="Hauptstraße 5",
                BillingCity="Berlin",
                BillingPostalCode="10115",
                BillingCountry="Germany",
            ),
        ],
        now=now,
    )
    store.land(
        "stripe",
        [
            stripe_customer(
                "cus_acme",
                "ACME Analytics",
                email="billing@acme-analytics.com",
                metadata={"salesforce_account_id": "001Hs00000ACME1"},  # the 15-character form
                address={"country": "US", "postal_code": "94105", "line1": "100 Market St"},
            ),
            stripe_customer("cus_umbra", "Umbra Labs Ltd", email="umbra.labs@gmail.com"),
        ],
        now=now,
    )
    store.land(
        "quickbooks",
        [
            quickbooks_customer(
                "7",
                "Acme Analytics, LLC",
                PrimaryEmailAddr={"Address": "ap@acme-analytics.com"},
                PrimaryPhone={"FreeFormNumber": "(415) 555-0100"},
                WebAddr={"URI": "acme-analytics.com"},
                BillAddr={
                    "Line1": "100 Market St",
                    "City": "San Francisco",
                    "PostalCode": "94105",
                    "Country": "USA",
                },
            ),
            quickbooks_customer(
                "8",
                "Zephyr Tools",
                PrimaryEmailAddr={"Address": "finance@zephyr-tools.de"},
                PrimaryPhone={"FreeFormNumber": "030 9876543"},
                BillAddr={
                    "Line1": "Hauptstr. 5",
                    "City": "Berlin",
                    "PostalCode": "10115",
                    "Country": "DE",
                },
            ),
        ],
        now=now,
    )


@dataclass
class Sandboxes:
    """The running sandboxes, their connectors, and the records created in them."""

    sandboxes: dict[str, Sandbox]
    connectors: dict[str, Connector]
    created: dict[str, str]

    def pull_parties(self, store: Store) -> None:
        """Pull the party stream of every sandbox into ``store``."""
        for name, stream in PARTY_STREAMS.items():
            (result,) = pull(store, self.connectors[name], [stream])
            assert result.ok, result.error


def _create(connector: Connector, obj: str, payload: dict[str, Any], key: str) -> str:
    (result,) = list(connector.write([WriteOp(key, obj, WriteAction.CREATE, payload)]))
    assert result.error is None, result.error
    assert result.remote_id is not None
    return result.remote_id


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """The three sandboxes with 20 seeded customers each and two companies they share."""
    from ledgerlink.store import create_engine_for, upgrade

    path = tmp_path_factory.mktemp("sandbox-secrets") / "secrets.db"
    secrets_engine: Engine = create_engine_for(f"sqlite:///{path}")
    upgrade(secrets_engine)
    secrets = DbSecretStore(secrets_engine, generate_key())
    running: dict[str, Sandbox] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in PARTY_STREAMS:
            plugin = load_plugin(name)
            running[name] = plugin.start_sandbox(SandboxOptions(seed=11, size=20))
            connectors[name] = connect(plugin, running[name].connector_settings(), secrets)
        sf, st, qb = connectors["salesforce"], connectors["stripe"], connectors["quickbooks"]
        northwind = _create(
            sf,
            "Account",
            {
                "Name": "Northwind Traders Inc",
                "Website": "https://www.northwindtraders.com",
                "Phone": "+1 415 555 0199",
                "BillingStreet": "1 Harbor Way",
                "BillingCity": "San Francisco",
                "BillingPostalCode": "94105",
                "BillingCountry": "United States",
            },
            "test-sf-northwind",
        )
        northwind_stripe = _create(
            st,
            "customers",
            {
                "name": "Northwind Traders",
                "email": "billing@northwindtraders.com",
                "metadata": {"salesforce_account_id": northwind},
            },
            "test-stripe-northwind",
        )
        northwind_qb = _create(
            qb,
            "Customer",
            {
                "DisplayName": "NORTHWIND TRADERS LLC",
                "PrimaryEmailAddr": {"Address": "ap@northwindtraders.com"},
                "PrimaryPhone": {"FreeFormNumber": "(415) 555-0199"},
                "WebAddr": {"URI": "northwindtraders.com"},
                "BillAddr": {
                    "Line1": "1 Harbor Way",
                    "City": "San Francisco",
                    "PostalCode": "94105",
                    "Country": "US",
                },
            },
            "test-qb-northwind",
        )
        fjord = _create(
            sf,
            "Account",
            {
                "Name": "Blue Fjord Analytics GmbH",
                "Website": "bluefjord.de",
                "Phone": "+49 30 1234567",
                "BillingStreet": "Hauptstraße 5",
                "BillingCity": "Berlin",
                "BillingPostalCode": "10115",
                "BillingCountry": "Germany",
            },
            "test-sf-fjord",
        )
        fjord_qb = _create(
            qb,
            "Customer",
            {
                "DisplayName": "Blue Fjord Analytics",
                "PrimaryEmailAddr": {"Address": "finance@bluefjord.de"},
                "PrimaryPhone": {"FreeFormNumber": "030 1234567"},
                "BillAddr": {
                    "Line1": "Hauptstr. 5",
                    "City": "Berlin",
                    "PostalCode": "10115",
                    "Country": "DE",
                },
            },
            "test-qb-fjord",
        )
        yield Sandboxes(
            running,
            connectors,
            {
                "northwind_sf": f"salesforce:Account:{northwind}",
                "northwind_stripe": f"stripe:customers:{northwind_stripe}",
                "northwind_qb": f"quickbooks:Customer:{northwind_qb}",
                "fjord_sf": f"salesforce:Account:{fjord}",
                "fjord_qb": f"quickbooks:Customer:{fjord_qb}",
            },
        )
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in running.values():
            sandbox.stop()
        secrets_engine.dispose()
