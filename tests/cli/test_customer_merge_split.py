"""`ledgerlink customer merge`, `customer split`, `customer undo` and `customer history`.

Acme Analytics (Salesforce, Stripe with a cross-reference, QuickBooks) is matched first, so it
is the older customer; Zephyr Tools (Salesforce and QuickBooks) and Umbra Labs (Stripe only)
are matched in a second run. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from ledgerlink.cli.app import app
from ledgerlink.connector.protocol import Record
from ledgerlink.matching import PartyRef
from ledgerlink.matching.persist import link_of, load_links
from ledgerlink.store import AuditLog, Customer, CustomerLink, MatchDecision, Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SF_ACME = "salesforce:Account:001Hs00000ACME1AAA"
STRIPE_ACME = "stripe:customers:cus_acme"
QB_ACME = "quickbooks:Customer:7"
SF_ZEPHYR = "salesforce:Account:001Hs00000ZEPH1AAA"
QB_ZEPHYR = "quickbooks:Customer:8"
STRIPE_UMBRA = "stripe:customers:cus_umbra"
ACME = (SF_ACME, STRIPE_ACME, QB_ACME)
ZEPHYR = (SF_ZEPHYR, QB_ZEPHYR)
TABLES = (Customer, CustomerLink, MatchDecision, AuditLog)

Cli = Callable[..., Result]


def _account(record_id: str, name: str, **fields: Any) -> Record:
    stamp = "2026-02-01T10:00:00.000+0000"
    payload = {"Id": record_id, "Name": name, "LastModifiedDate": stamp, "SystemModstamp": stamp}
    return Record("Account", record_id, {**payload, **fields})


def _stripe(record_id: str, name: str, **fields: Any) -> Record:
    payload = {"id": record_id, "object": "customer", "name": name, "created": 1767225600}
    return Record("customers", record_id, {**payload, **fields})


def _quickbooks(record_id: str, name: str, **fields: Any) -> Record:
    meta = {"LastUpdatedTime": "2026-02-02T10:00:00-08:00"}
    return Record(
        "Customer", record_id, {"Id": record_id, "DisplayName": name, "MetaData": meta, **fields}
    )


def _land_acme(store: Store) -> None:
    store.land(
        "salesforce",
        [
            _account(
                "001Hs00000ACME1AAA",
                "Acme Analytics Inc",
                Website="https://www.acme-analytics.com",
                Phone="+1 415 555 0100",
                BillingStreet="100 Market Street",
                BillingCity="San Francisco",
                BillingPostalCode="94105",
                BillingCountry="United States",
            )
        ],
        now=NOW,
    )
    store.land(
        "stripe",
        [
            _stripe(
                "cus_acme",
                "ACME Analytics",
                email="billing@acme-analytics.com",
                metadata={"salesforce_account_id": "001Hs00000ACME1"},
                address={"country": "US", "postal_code": "94105", "line1": "100 Market St"},
            )
        ],
        now=NOW,
    )
    store.land(
        "quickbooks",
        [
            _quickbooks(
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
            )
        ],
        now=NOW,
    )


def _land_zephyr_and_umbra(store: Store) -> None:
    store.land(
        "salesforce",
        [
            _account(
                "001Hs00000ZEPH1AAA",
                "Zephyr Tools GmbH",
                Website="zephyr-tools.de",
                Phone="+49 30 9876543",
                BillingStreet="Hauptstraße 5",
                BillingCity="Berlin",
                BillingPostalCode="10115",
                BillingCountry="Germany",
            )
        ],
        now=NOW,
    )
    store.land(
        "quickbooks",
        [
            _quickbooks(
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
            )
        ],
        now=NOW,
    )
    store.land(
        "stripe", [_stripe("cus_umbra", "Umbra Labs Ltd", email="umbra.labs@gmail.com")], now=NOW
    )


@pytest.fixture
def cli(database_url: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Invoke the CLI on a store where Acme was matched before Zephyr Tools and Umbra Labs."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"LEDGERLINK_DATABASE__URL": database_url, "COLUMNS": "250", "LEDGERLINK_ACTOR": "ops"}

    def invoke(*args: str, keys: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=keys)

    _land_acme(store)
    assert invoke("match", "run").exit_code == 0
    _land_zephyr_and_umbra(store)
    assert invoke("match", "run").exit_code == 0
    return invoke


def customer_of(engine: Engine, ref: str) -> str:
    link = link_of(engine, PartyRef.parse(ref))
    assert link is not None, ref
    return link.customer_id


def records_of(engine: Engine, customer_id: str) -> set[str]:
    return {str(link.ref) for link in load_links(engine, customer_id=customer_id)}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a merge or split writes, in a stable order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for model in TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            query = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in conn.execute(query)]
    return rows


def test_the_fixture_matches_three_separate_customers(cli: Cli, engine: Engine) -> None:
    """Before any decision Acme (3 records), Zephyr (2) and Umbra (1) are three customers."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    assert records_of(engine, acme) == set(ACME)
    assert records_of(engine, zephyr) == set(ZEPHYR)
    assert customer_of(engine, STRIPE_UMBRA) not in (acme, zephyr)


def test_merge_keeps_the_older_id_and_survives_later_runs(cli: Cli, engine: Engine) -> None:
    """A merge puts every record under the older customer's id, audited; a full run keeps it."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    result = cli(
        "customer", "merge", zephyr, acme, "--reason", "Zephyr is Acme's German arm", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert f"merged {zephyr} into {acme}" in result.output
    assert "customer undo" in result.output
    assert records_of(engine, acme) == set(ACME) | set(ZEPHYR)
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(Customer.__table__).where(Customer.__table__.c.id == zephyr)
            ).first()
            is None
        )  # type: ignore[attr-defined]
    shown = cli("customer", "show", acme)
    assert shown.exit_code == 0, shown.output
    for ref in (*ACME, *ZEPHYR):
        assert ref in shown.output
    assert "decided by ops: Zephyr is Acme's German arm" in shown.output

    assert cli("match", "run").exit_code == 0
    assert records_of(engine, acme) == set(ACME) | set(ZEPHYR)

    decisions = cli("conflicts", "decisions").output
    assert decisions.count("link") >= 2
    with engine.connect() as conn:
        audit = AuditLog.__table__  # type: ignore[attr-defined]
        merge_row = conn.execute(select(audit).where(audit.c.action == "customer.merge")).one()
    assert merge_row.actor == "ops"
    assert merge_row.details["reason"] == "Zephyr is Acme's German arm"
    assert merge_row.details["survivor"] == acme
    assert len(merge_row.details["decisions"]) == len(ZEPHYR)


def test_merge_accepts_records_in_place_of_ids(cli: Cli, engine: Engine) -> None:
    """A customer can be named by one of its records, as `customer show` accepts."""
    acme = customer_of(engine, SF_ACME)
    result = cli("customer", "merge", QB_ZEPHYR, STRIPE_ACME, "--reason", "same group", "--yes")
    assert result.exit_code == 0, result.output
    assert customer_of(engine, QB_ZEPHYR) == acme


def test_split_detaches_a_record_for_good(cli: Cli, engine: Engine) -> None:
    """A split record leaves its customer, which keeps its id, and a full run keeps it apart."""
    acme = customer_of(engine, SF_ACME)
    result = cli(
        "customer",
        "split",
        acme,
        "--record",
        STRIPE_ACME,
        "--reason",
        "reseller account",
        "--actor",
        "alice",
        "--yes",
    )
    assert result.exit_code == 0, result.output
    assert customer_of(engine, SF_ACME) == acme
    assert records_of(engine, acme) == {SF_ACME, QB_ACME}
    alone = customer_of(engine, STRIPE_ACME)
    assert alone != acme
    assert records_of(engine, alone) == {STRIPE_ACME}

    assert cli("match", "run").exit_code == 0
    assert customer_of(engine, STRIPE_ACME) != customer_of(engine, SF_ACME)
    decisions = cli("conflicts", "decisions").output
    assert decisions.count("alice") == 2
    assert "reseller account" in decisions


def test_undo_of_a_merge_brings_both_customers_back(cli: Cli, engine: Engine) -> None:
    """`customer undo` revokes the merge's decisions and both ids come back with their records."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    merged = cli("customer", "merge", acme, zephyr, "--reason", "looked alike", "--yes")
    assert merged.exit_code == 0, merged.output
    history = cli("customer", "history", acme)
    assert "merge" in history.output
    assert "looked alike" in history.output
    change = merged.output.split("(change ", 1)[1].split(")", 1)[0]

    undone = cli("customer", "undo", change, "--reason", "they are not", "--yes")
    assert undone.exit_code == 0, undone.output
    assert records_of(engine, acme) == set(ACME)
    assert records_of(engine, zephyr) == set(ZEPHYR)
    assert "no decisions" in cli("conflicts", "decisions").output
    again = cli("customer", "undo", change, "--reason", "twice", "--yes")
    assert again.exit_code == 1
    assert "already undone" in again.output


def test_undo_of_a_split_lets_the_evidence_join_the_record_again(cli: Cli, engine: Engine) -> None:
    """After undoing a split, the cross-reference joins the Stripe record to Acme again."""
    acme = customer_of(engine, SF_ACME)
    split = cli("customer", "split", acme, "--record", STRIPE_ACME, "--reason", "x", "--yes")
    change = split.output.split("(change ", 1)[1].split(")", 1)[0]
    assert cli("customer", "undo", change, "--reason", "mistake", "--yes").exit_code == 0
    assert records_of(engine, acme) == set(ACME)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("merge", "cus_nobody", "{acme}"), "no customer cus_nobody"),
        (("merge", "{acme}", "stripe:customers:cus_nobody"), "no customer holds"),
        (("merge", "{acme}", "{acme}"), "one customer"),
        (("merge", "{acme}", SF_ACME), "one customer"),
        (("split", "cus_nobody", "--record", SF_ACME), "no customer cus_nobody"),
        (("split", "{acme}", "--record", "stripe:customers:cus_nobody"), "no customer holds"),
        (("split", "{acme}", "--record", SF_ZEPHYR), "is not a record of"),
        (("split", "{umbra}", "--record", STRIPE_UMBRA), "only record"),
        (("undo", "999"), "no customer merge or split 999"),
    ],
)
def test_refusals_exit_1_and_change_nothing(
    cli: Cli, engine: Engine, args: tuple[str, ...], message: str
) -> None:
    """Unknown ids, the same customer twice, a foreign or only record: exit 1, store unchanged."""
    ids = {"acme": customer_of(engine, SF_ACME), "umbra": customer_of(engine, STRIPE_UMBRA)}
    before = snapshot(engine)
    result = cli("customer", *(a.format(**ids) for a in args), "--reason", "r", "--yes")
    assert result.exit_code == 1, result.output
    assert "error" in result.output
    assert message in " ".join(result.output.split())
    assert snapshot(engine) == before


def test_merge_blocked_by_a_never_link_names_the_decision(cli: Cli, engine: Engine) -> None:
    """A never-link between the customers' records refuses the merge and says how to revoke it."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    assert (
        cli("conflicts", "never-link", QB_ACME, QB_ZEPHYR, "--reason", "competitors").exit_code == 0
    )
    before = snapshot(engine)
    result = cli("customer", "merge", acme, zephyr, "--reason", "r", "--yes")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "decision 1 (never-link" in text
    assert "competitors" in text
    assert "ledgerlink conflicts revoke" in text
    assert snapshot(engine) == before


def test_split_blocked_by_a_link_decision_changes_nothing(cli: Cli, engine: Engine) -> None:
    """A link decision joining the record to the others refuses the split; nothing is written."""
    acme = customer_of(engine, SF_ACME)
    assert cli("conflicts", "link", STRIPE_ACME, QB_ACME, "--reason", "same").exit_code == 0
    before = snapshot(engine)
    result = cli("customer", "split", acme, "--record", STRIPE_ACME, "--reason", "r", "--yes")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "decision 1 (link" in text
    assert "ledgerlink conflicts revoke" in text
    assert snapshot(engine) == before


def test_usage_errors_exit_2_and_change_nothing(cli: Cli, engine: Engine) -> None:
    """A malformed --record, or --yes without a reason, is a usage error; nothing is written."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    before = snapshot(engine)
    assert cli("customer", "split", acme, "--record", "stripe-cus_acme", "--yes").exit_code == 2
    assert cli("customer", "merge", acme, zephyr, "--yes").exit_code == 2
    assert cli("customer", "merge", acme, zephyr, "--reason", " ", "--yes").exit_code == 2
    assert snapshot(engine) == before


def test_merge_asks_for_a_reason_and_confirmation(cli: Cli, engine: Engine) -> None:
    """Without --yes the merge asks why and whether to go on; answering no changes nothing."""
    acme, zephyr = customer_of(engine, SF_ACME), customer_of(engine, SF_ZEPHYR)
    before = snapshot(engine)
    declined = cli("customer", "merge", acme, zephyr, keys="same group\nn\n")
    assert declined.exit_code == 1
    assert "nothing changed" in declined.output
    assert snapshot(engine) == before
    accepted = cli("customer", "merge", acme, zephyr, keys="same group\ny\n")
    assert accepted.exit_code == 0, accepted.output
    assert customer_of(engine, SF_ZEPHYR) == acme
