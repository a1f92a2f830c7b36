"""Which of a customer's two Salesforce Accounts takes the hub's ids, and that it stays so.

Salesforce keeps ``Stripe_Customer_Id__c`` unique: an Account renamed (so that the golden
customer now takes its name from it) must not be sent the Stripe id another Account of the
same customer holds, which the org refuses with ``DUPLICATE_VALUE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, Record, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.matching.persist import run_matching
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import Customer, CustomerLink, Outbox
from ledgerlink.sync._landed import MappedRecords
from ledgerlink.sync.cycle import run_cycle
from ledgerlink.sync.plan import PlanReport, plan
from ledgerlink.sync.runtime import connect
from tests.matching_store.conftest import link_created

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIRST = "001Hs00000000AAAAA"
SECOND = "001Hs00000000BBBAA"
SYSTEMS = ("salesforce", "stripe", "quickbooks")


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _account(record_id: str, name: str, modified: str, **fields: Any) -> Record:
    """A Horizon Farms Account; both of the customer's Accounts share phone, site and address."""
    return Record(
        "Account",
        record_id,
        {
            "Id": record_id,
            "Name": name,
            "Phone": "+49 30 5550 1234",
            "Website": "horizonfarms.de",
            "BillingStreet": "Feldweg 3",
            "BillingCity": "Berlin",
            "BillingPostalCode": "10115",
            "BillingCountry": "Germany",
            "LastModifiedDate": modified,
            "SystemModstamp": modified,
            **fields,
        },
    )


def _stripe_customer(customer_id: str, account: str) -> Record:
    return Record(
        "customers",
        customer_id,
        {
            "id": customer_id,
            "object": "customer",
            "created": 1767225600,
            "name": "Horizon Farms AG",
            "email": "billing@horizonfarms.de",
            "metadata": {"salesforce_account_id": account},
        },
    )


def _lineage(store: Store) -> dict[str, str]:
    """The lineage of the golden customer all the landed records belong to."""
    with store.engine.connect() as conn:
        owners = set(conn.execute(select(CustomerLink.customer_id)).scalars())  # type: ignore[call-overload]
        assert len(owners) == 1, owners
        lineage: dict[str, str] = conn.execute(
            select(Customer.lineage).where(Customer.id == owners.pop())  # type: ignore[call-overload]
        ).scalar_one()
    return lineage


def _ids_written(report: PlanReport) -> dict[str, dict[str, Any]]:
    """Target record -> the hub ids the plan writes to it."""
    ids = ("Stripe_Customer_Id__c", "QuickBooks_Customer_Id__c")
    written: dict[str, dict[str, Any]] = {}
    for op in report.ops:
        metadata = op.payload.get("metadata") or {}
        found = {k: op.payload[k] for k in ids if k in op.payload}
        found |= {k: v for k, v in metadata.items() if k.endswith("_id")}
        if found:
            written[str(op.remote_id)] = found
    return written


def _land_first_holding_the_stripe_id(store: Store, mappings: MappingSet) -> None:
    """Both Accounts, modified a day apart, the first holding the Stripe customer's id."""
    store.land(
        "salesforce",
        [
            _account(
                FIRST,
                "Horizon Farms AG",
                "2026-02-02T10:00:00.000+0000",
                Stripe_Customer_Id__c="cus_horizon",
            ),
            _account(SECOND, "Horizon Farms", "2026-02-01T10:00:00.000+0000"),
        ],
        now=NOW,
    )
    store.land("stripe", [_stripe_customer("cus_horizon", FIRST)], now=NOW)
    run_matching(store.engine, mappings, now=NOW)


def _rename_second(store: Store, mappings: MappingSet, at: datetime) -> None:
    """Someone renames the second Account: the golden name now comes from it."""
    store.land(
        "salesforce",
        [_account(SECOND, "Horizon Farms Berlin AG", "2026-03-02T09:00:00.000+0000")],
        now=at,
    )
    run_matching(store.engine, mappings, now=at)
    assert _lineage(store)["name"] == f"salesforce:Account:{SECOND}"


def test_renamed_account_does_not_take_the_stripe_id_the_other_holds(
    store: Store, mappings: MappingSet
) -> None:
    """The Account holding the Stripe id stays the primary when the other one is renamed."""
    _land_first_holding_the_stripe_id(store, mappings)
    assert _ids_written(plan(store, mappings, now=NOW, dry_run=True)) == {}

    # Someone renames the second Account: the golden name now comes from it.
    later = NOW + timedelta(days=1)
    _rename_second(store, mappings, later)

    report = plan(store, mappings, now=later, dry_run=True)
    # Neither the Stripe id moves to the renamed Account nor the Account id in Stripe moves.
    assert _ids_written(report) == {}
    second = [op for op in report.ops if op.remote_id == SECOND]
    assert second  # it still gets the customer's shared values
    assert all("Stripe_Customer_Id__c" not in op.payload for op in second)


def test_two_accounts_holding_stripe_ids_keep_them(store: Store, mappings: MappingSet) -> None:
    """Each Account holds the id of one of the customer's Stripe customers: nothing moves."""
    store.land(
        "salesforce",
        [
            _account(
                FIRST,
                "Horizon Farms AG",
                "2026-02-01T10:00:00.000+0000",
                Stripe_Customer_Id__c="cus_horizon_a",
            ),
            _account(
                SECOND,
                "Horizon Farms",
                "2026-02-02T10:00:00.000+0000",
                Stripe_Customer_Id__c="cus_horizon_b",
            ),
        ],
        now=NOW,
    )
    store.land(
        "stripe",
        [_stripe_customer("cus_horizon_a", FIRST), _stripe_customer("cus_horizon_b", SECOND)],
        now=NOW,
    )
    run_matching(store.engine, mappings, now=NOW)
    lineage = _lineage(store)
    # The name comes from the second Account, the e-mail from the first Stripe customer.
    assert lineage["name"] == f"salesforce:Account:{SECOND}"
    assert lineage["email"] == "stripe:customers:cus_horizon_a"

    assert _ids_written(plan(store, mappings, now=NOW, dry_run=True)) == {}


def _land_bare_accounts(store: Store, mappings: MappingSet, *, newer: str) -> None:
    """Both Accounts without ids, ``newer`` modified last and named by the Stripe customer."""

    def modified(account: str) -> str:
        return f"2026-02-0{2 if account == newer else 1}T10:00:00.000+0000"

    store.land(
        "salesforce",
        [
            _account(FIRST, "Horizon Farms AG", modified(FIRST)),
            _account(SECOND, "Horizon Farms", modified(SECOND)),
        ],
        now=NOW,
    )
    store.land("stripe", [_stripe_customer("cus_horizon", newer)], now=NOW)
    run_matching(store.engine, mappings, now=NOW)


def test_an_id_written_but_not_pulled_back_yet_keeps_its_account_primary(
    store: Store, mappings: MappingSet
) -> None:
    """The hub writes the Stripe id to one Account; before that Account is pulled back, the
    other is renamed: the next plan does not send the id to the renamed one as well."""
    _land_bare_accounts(store, mappings, newer=FIRST)
    first = plan(store, mappings, now=NOW)  # stored: the write is on its way
    assert _ids_written(first)[FIRST]["Stripe_Customer_Id__c"] == "cus_horizon"

    later = NOW + timedelta(minutes=5)
    _rename_second(store, mappings, later)
    written = _ids_written(plan(store, mappings, now=later, dry_run=True))
    assert "Stripe_Customer_Id__c" not in written.get(SECOND, {})


def test_an_id_the_vendor_refused_does_not_keep_its_account_primary(
    store: Store, mappings: MappingSet
) -> None:
    """The hub sends the Stripe id to one Account, but Salesforce refuses it (the other
    Account holds it, ``DUPLICATE_VALUE``): the refused value does not count as held, so the
    next plan takes the Account that holds the id as primary and sends the id nowhere again."""
    _land_bare_accounts(store, mappings, newer=SECOND)
    first = plan(store, mappings, now=NOW)  # stored: the ids go to the second Account
    assert _ids_written(first)[SECOND]["Stripe_Customer_Id__c"] == "cus_horizon"
    # Meanwhile someone put the id on the first Account; Salesforce refuses the hub's write.
    later = NOW + timedelta(minutes=5)
    store.land(
        "salesforce",
        [
            _account(
                FIRST,
                "Horizon Farms AG",
                "2026-02-01T10:00:00.000+0000",
                Stripe_Customer_Id__c="cus_horizon",
            )
        ],
        now=later,
    )
    with store.engine.begin() as conn:
        conn.execute(
            Outbox.__table__.update()  # type: ignore[attr-defined]
            .where(Outbox.__table__.c.remote_id == SECOND)  # type: ignore[attr-defined]
            .values(
                status="failed",
                last_error="record: duplicate value found: Stripe_Customer_Id__c duplicates "
                f"value on record with id: {FIRST} [DUPLICATE_VALUE]",
            )
        )
    written = _ids_written(plan(store, mappings, now=later, dry_run=True))
    assert "Stripe_Customer_Id__c" not in written.get(SECOND, {})
    assert written.get("cus_horizon", {}).get("salesforce_account_id") == FIRST


def _land_with_the_holder_under_review(store: Store, mappings: MappingSet) -> None:
    """As :func:`_land_first_holding_the_stripe_id`, then matching puts the first Account
    under review (as it does, for a pass, when the hub's own id write makes it conflict)."""
    _land_first_holding_the_stripe_id(store, mappings)
    with store.engine.begin() as conn:
        conn.execute(
            CustomerLink.__table__.update()  # type: ignore[attr-defined]
            .where(CustomerLink.__table__.c.external_id == FIRST)  # type: ignore[attr-defined]
            .values(status="review")
        )


def test_an_id_a_record_under_review_holds_is_not_sent_to_another(
    store: Store, mappings: MappingSet
) -> None:
    """The Account holding the Stripe id leaves its customer for a while (matching put it
    under review): the customer's other Account, now its only one, gets the customer's values
    but not the Stripe id, which Salesforce would refuse (``DUPLICATE_VALUE``) with the whole
    write; once no landed Account holds the id, the next plan sends it."""
    _land_with_the_holder_under_review(store, mappings)

    report = plan(store, mappings, now=NOW, dry_run=True)
    second = [op for op in report.ops if op.remote_id == SECOND]
    assert second  # the customer's shared values still go out
    assert all("Stripe_Customer_Id__c" not in op.payload for op in second)
    assert any(FIRST in note and "Stripe_Customer_Id__c" in note for note in report.notes)

    # Someone empties the field on the first Account: the id is free.
    later = NOW + timedelta(minutes=5)
    store.land(
        "salesforce",
        [_account(FIRST, "Horizon Farms AG", "2026-03-01T12:04:00.000+0000")],
        now=later,
    )
    written = _ids_written(plan(store, mappings, now=later, dry_run=True))
    assert written[SECOND]["Stripe_Customer_Id__c"] == "cus_horizon"


def test_a_kept_plan_sends_a_held_id_once_the_holder_lets_it_go(
    store: Store, mappings: MappingSet
) -> None:
    """As above, with the records kept between plans (the daemon): the customer's inputs do
    not move when the other Account lets the id go, yet the next plan sends it."""
    _land_with_the_holder_under_review(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    assert "Stripe_Customer_Id__c" not in _ids_written(first).get(SECOND, {})

    later = NOW + timedelta(minutes=5)
    assert _ids_written(plan(store, mappings, now=later, mapped=kept)) == {}  # still held
    store.land(
        "salesforce",
        [_account(FIRST, "Horizon Farms AG", "2026-03-01T12:09:00.000+0000")],
        now=later + timedelta(minutes=5),
    )
    written = _ids_written(plan(store, mappings, now=later + timedelta(minutes=5), mapped=kept))
    assert written[SECOND]["Stripe_Customer_Id__c"] == "cus_horizon"


def _quickbooks_customer(record_id: str, name: str) -> Record:
    """A Horizon Farms QuickBooks customer, with the company fields the Accounts have."""
    return Record(
        "Customer",
        record_id,
        {
            "Id": record_id,
            "DisplayName": name,
            "PrimaryEmailAddr": {"Address": "billing@horizonfarms.de"},
            "PrimaryPhone": {"FreeFormNumber": "+49 30 5550 1234"},
            "WebAddr": {"URI": "horizonfarms.de"},
            "BillAddr": {"Line1": "Feldweg 3", "City": "Berlin", "PostalCode": "10115"},
            "MetaData": {"LastUpdatedTime": "2026-02-02T10:00:00-08:00"},
        },
    )


def _land_with_a_currency_copy(store: Store, mappings: MappingSet, *, copy_done: bool) -> None:
    """Horizon Farms in the three systems (QuickBooks customer 5204), then the customer the
    ledger created for its JPY invoices (11021, linked ``created`` as the push links it),
    landed; ``copy_done``: its outbox create is done (else that row is missing)."""
    _land_first_holding_the_stripe_id(store, mappings)
    store.land("quickbooks", [_quickbooks_customer("5204", "Horizon Farms AG")], now=NOW)
    run_matching(store.engine, mappings, now=NOW)
    with store.engine.connect() as conn:
        customer_id = conn.execute(
            select(CustomerLink.customer_id).where(CustomerLink.external_id == FIRST)  # type: ignore[call-overload]
        ).scalar_one()
    link_created(store.engine, "11021", customer_id, NOW)
    with store.engine.begin() as conn:
        if copy_done:
            conn.execute(
                Outbox.__table__.insert().values(  # type: ignore[attr-defined]
                    target="quickbooks",
                    object="Customer",
                    action="create",
                    payload={"DisplayName": "Horizon Farms AG (JPY)"},
                    idempotency_key="ledger-customer-jpy-horizon",
                    entity_kind="ledger_customer",
                    entity_id=f"JPY:{customer_id}",
                    status="done",
                    attempts=1,
                    next_attempt_at=NOW,
                    remote_id="11021",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    later = NOW + timedelta(minutes=5)
    store.land("quickbooks", [_quickbooks_customer("11021", "Horizon Farms AG (JPY)")], now=later)
    run_matching(store.engine, mappings, now=later)
    assert len(set(_lineage(store).values())) >= 1  # one customer holds all five records


@pytest.mark.parametrize("kept", [False, True], ids=["cold", "kept"])
def test_the_ledgers_currency_customer_never_becomes_the_primary(
    store: Store, mappings: MappingSet, kept: bool
) -> None:
    """The ledger created QuickBooks customer 11021 for the customer's JPY invoices; it comes
    before the customer's own (5204) in text order, yet the customer's own stays its primary:
    the Account is sent 5204, and the JPY customer keeps its name."""
    _land_with_a_currency_copy(store, mappings, copy_done=True)
    report = plan(
        store,
        mappings,
        now=NOW + timedelta(minutes=10),
        dry_run=True,
        mapped=MappedRecords() if kept else None,
    )
    assert _ids_written(report)[FIRST]["QuickBooks_Customer_Id__c"] == "5204"
    renames = [op for op in report.ops if op.remote_id == "11021" and "DisplayName" in op.payload]
    assert renames == []


def test_without_the_ledgers_create_the_lower_id_is_the_primary(
    store: Store, mappings: MappingSet
) -> None:
    """The same two QuickBooks customers, neither made by the ledger for another currency:
    the first id in text order (11021) is the primary, as for any two duplicates."""
    _land_with_a_currency_copy(store, mappings, copy_done=False)
    report = plan(store, mappings, now=NOW + timedelta(minutes=10), dry_run=True)
    assert _ids_written(report)[FIRST]["QuickBooks_Customer_Id__c"] == "11021"


def _landed_again(record: Record, report: PlanReport, **vendor: Any) -> Record:
    """``record`` as its vendor gives it once the plan's write to it landed (flat fields, or
    QuickBooks' nested ones merged), with fields no plan reads moved (``vendor``)."""
    payload = dict(record.payload)
    for op in report.ops:
        if op.remote_id == record.id:
            for name, value in op.payload.items():
                current = payload.get(name)
                merged = {**current, **value} if isinstance(current, dict) else value
                payload[name] = merged
    return Record(record.object, record.id, {**payload, **vendor})


def test_a_currency_copy_keeping_its_name_leaves_new_invoices_to_the_hub_values_alone(
    store: Store, mappings: MappingSet
) -> None:
    """The ledger's JPY customer keeps its name because the customer's own QuickBooks
    customer is its primary there, which follows from the customer's own records: once the
    plan's other writes landed back, a new invoice plans the customer's hub values alone,
    the writes a full read plans."""
    _land_with_a_currency_copy(store, mappings, copy_done=True)
    kept = MappedRecords()
    at = NOW + timedelta(minutes=10)
    first = plan(store, mappings, now=at, mapped=kept)
    later = at + timedelta(minutes=1)
    own = _quickbooks_customer("5204", "Horizon Farms AG")
    copy = _quickbooks_customer("11021", "Horizon Farms AG (JPY)")
    store.land("quickbooks", [_landed_again(r, first) for r in (own, copy)], now=later)
    stripe = _landed_again(_stripe_customer("cus_horizon", FIRST), first)
    store.land("stripe", [stripe], now=later)
    assert plan(store, mappings, now=later, mapped=kept).customers == 0
    invoice = {
        "id": "in_horizon_1",
        "object": "invoice",
        "customer": "cus_horizon",
        "currency": "eur",
        "status": "open",
        "total": 12_000,
        "amount_due": 12_000,
        "amount_paid": 0,
        "amount_remaining": 12_000,
        "created": 1_772_366_400,
    }
    billed = later + timedelta(minutes=1)
    store.land("stripe", [Record("invoices", "in_horizon_1", invoice)], now=billed)
    full = plan(store, mappings, now=billed, dry_run=True)
    report = plan(store, mappings, now=billed, mapped=kept)
    assert (report.customers, report.hubs_only) == (1, 1)

    def writes(planned: PlanReport) -> list[tuple[str, str, list[tuple[str, Any]]]]:
        return sorted(
            (op.target, str(op.remote_id), sorted(op.payload.items())) for op in planned.ops
        )

    assert writes(report) == writes(full)
    assert any(op.target == "salesforce" for op in report.ops)


def test_a_newer_landing_of_the_older_account_plans_its_customer_again(
    store: Store, mappings: MappingSet
) -> None:
    """Of a customer's two Accounts, the latest changed gives the values the golden record
    does not name a source for. The older one landing again, changed only where no plan
    reads, makes it the latest: a kept plan plans the customer again and sends Stripe its
    name, as a full read does."""
    _land_bare_accounts(store, mappings, newer=FIRST)
    with store.engine.begin() as conn:
        conn.execute(update(Customer.__table__).values(lineage={}))  # type: ignore[attr-defined]
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    assert [op.payload.get("name") for op in first.ops if op.target == "stripe"] == [None]
    second = _account(SECOND, "Horizon Farms", "2026-02-01T10:00:00.000+0000")
    later = NOW + timedelta(minutes=5)
    store.land("salesforce", [_landed_again(second, first, NumberOfEmployees=40)], now=later)

    def names(report: PlanReport) -> list[Any]:
        return [op.payload.get("name") for op in report.ops if op.target == "stripe"]

    assert names(plan(store, mappings, now=later, dry_run=True)) == ["Horizon Farms"]
    again = plan(store, mappings, now=later, dry_run=True, mapped=kept)
    assert again.customers == 1
    assert names(again) == ["Horizon Farms"]


def test_the_customers_own_record_landing_again_leaves_the_currency_copy_last(
    store: Store, mappings: MappingSet
) -> None:
    """The customer's own QuickBooks customer lands again after the ledger's JPY copy of it,
    changed only where no plan reads (its balance, once the ledger posted to it): the copy
    stays the last source of the customer's values, so a kept plan does not plan it again."""
    _land_with_a_currency_copy(store, mappings, copy_done=True)
    at = NOW + timedelta(minutes=10)
    kept = MappedRecords()
    first = plan(store, mappings, now=at, mapped=kept)
    own = _quickbooks_customer("5204", "Horizon Farms AG")
    later = at + timedelta(minutes=5)
    store.land("quickbooks", [_landed_again(own, first, Balance=1250.0)], now=later)
    again = plan(store, mappings, now=later, mapped=kept)
    assert (again.echoes, again.customers, again.ops) == (1, 0, [])


# -- in whole cycles against the sandboxes -----------------------------------------------------


def _write(connector: Connector, op: WriteOp) -> str:
    (result,) = list(connector.write([op]))
    assert result.error is None, result.error
    assert result.remote_id is not None
    return result.remote_id


@pytest.fixture
def sandboxes(
    store: Store, settings_of: Any
) -> Iterator[tuple[dict[str, Any], dict[str, Connector]]]:
    """The three sandboxes, connected."""
    secrets = DbSecretStore(store.engine, generate_key())
    running: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            running[name] = plugin.start_sandbox(SandboxOptions(seed=5, size=4))
            connectors[name] = connect(plugin, settings_of(name, running[name]), secrets)
        yield running, connectors
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in running.values():
            sandbox.stop()


def test_cycles_never_send_a_stripe_id_twice(
    store: Store,
    mappings: MappingSet,
    sandboxes: tuple[dict[str, Any], dict[str, Connector]],
) -> None:
    """Two Accounts of one customer, each renamed in turn between cycles: Salesforce refuses no
    write, and exactly one Account holds the Stripe customer's id."""
    running, connectors = sandboxes
    salesforce = connectors["salesforce"]
    accounts = [
        _write(
            salesforce,
            WriteOp(
                f"test-sf-horizon-{n}",
                "Account",
                WriteAction.CREATE,
                {
                    "Name": name,
                    "Phone": "+49 30 5550 1234",
                    "Website": "horizonfarms.de",
                    "BillingStreet": "Feldweg 3",
                    "BillingCity": "Berlin",
                    "BillingPostalCode": "10115",
                    "BillingCountry": "Germany",
                },
            ),
        )
        for n, name in enumerate(("Horizon Farms AG", "Horizon Farms"))
    ]
    stripe_customer = _write(
        connectors["stripe"],
        WriteOp(
            "test-stripe-horizon",
            "customers",
            WriteAction.CREATE,
            {
                "name": "Horizon Farms AG",
                "email": "billing@horizonfarms.de",
                "metadata": {"salesforce_account_id": accounts[0]},
            },
        ),
    )
    org = running["salesforce"].org

    def cycles() -> None:
        for _ in range(4):
            run_cycle(store, connectors, mappings, now=datetime.now(UTC))

    def holders() -> list[str]:
        table = org.table("Account")
        return [
            a
            for a in accounts
            if (table.get(a) or {}).get("Stripe_Customer_Id__c") == stripe_customer
        ]

    cycles()
    with store.engine.connect() as conn:
        owners = conn.execute(
            select(CustomerLink.customer_id).where(  # type: ignore[call-overload]
                CustomerLink.external_id.in_([*accounts, stripe_customer])  # type: ignore[attr-defined]
            )
        ).scalars()
        assert len(set(owners)) == 1  # one customer with both Accounts
    assert len(holders()) == 1
    for account in accounts:  # each Account renamed in turn, as people do in the org
        org.touch("Account", account, Name="Horizon Farms Berlin AG")
        cycles()
        assert len(holders()) == 1
    with store.engine.connect() as conn:
        failed = conn.execute(
            select(Outbox.target, Outbox.last_error).where(Outbox.status == "failed")  # type: ignore[call-overload]
        ).all()
    assert failed == []


def test_both_accounts_get_the_same_update_when_they_landed_together(
    store: Store, mappings: MappingSet
) -> None:
    """Two Accounts of one customer pulled in the same batch (so with the same change time)
    that need the same values each get their write: one is not taken for the other's."""
    _land_first_holding_the_stripe_id(store, mappings)

    report = plan(store, mappings, now=NOW)
    updates = {op.remote_id: op for op in report.ops if op.target == "salesforce"}
    assert set(updates) == {FIRST, SECOND}
    assert updates[FIRST].payload == updates[SECOND].payload  # the shared values only
    with store.engine.connect() as conn:
        queued = set(
            conn.execute(
                select(Outbox.remote_id).where(Outbox.target == "salesforce")  # type: ignore[call-overload]
            ).scalars()
        )
    assert queued == {FIRST, SECOND}
