"""Plans through kept mapped records (the daemon's and long-running cycles' way) see every change.

A long-running caller keeps :class:`ledgerlink.sync.plan.MappedRecords` between plans, so a plan
reads and maps only the records landed since the previous one. These tests change, add and
delete landed records between plans and check that the kept records give the very writes a
plan that reads everything gives, while re-reading only what changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.mapping.apply import Normalizer, RecordMapper
from ledgerlink.matching.persist import Matcher, run_matching
from ledgerlink.store import Store
from ledgerlink.store.models import AuditLog, Customer, CustomerLink, LinkStatus, Outbox
from ledgerlink.sync._landed import InvoiceFacts
from ledgerlink.sync.plan import (
    BASELINE_ACTION,
    MappedRecords,
    PlanReport,
    _load_unique_names,
    _TakenNames,
    _World,
    plan,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
ACCOUNT = "001Hs00000ACME1AAA"
OTHERS = 20


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _account(record_id: str, name: str) -> Record:
    return Record(
        "Account",
        record_id,
        {
            "Id": record_id,
            "Name": name,
            "BillingCity": "San Francisco",
            "BillingCountry": "United States",
            "LastModifiedDate": "2026-02-01T10:00:00.000+0000",
            "SystemModstamp": "2026-02-01T10:00:00.000+0000",
        },
    )


def _stripe_customer(name: str) -> Record:
    return Record(
        "customers",
        "cus_acme",
        {
            "id": "cus_acme",
            "object": "customer",
            "created": 1767225600,
            "name": name,
            "email": "billing@acme-analytics.com",
            "metadata": {"salesforce_account_id": ACCOUNT},
        },
    )


def _land_world(store: Store, mappings: MappingSet) -> None:
    """Twenty older Accounts, then Acme in Salesforce and (misspelt) in Stripe, matched."""
    others = [_account(f"001Hs0000OTHER{n:02d}AAA", f"Other Company {n}") for n in range(OTHERS)]
    store.land("salesforce", others, now=NOW - timedelta(days=1))
    store.land("salesforce", [_account(ACCOUNT, "Acme Analytics Inc")], now=NOW)
    store.land("stripe", [_stripe_customer("ACME Analytics")], now=NOW)
    run_matching(store.engine, mappings=mappings, now=NOW)


def _writes(report: PlanReport) -> list[tuple[str, str, str, Any]]:
    return sorted(
        (op.target, op.object, op.remote_id or "", sorted(op.payload.items())) for op in report.ops
    )


def _stripe_name_writes(report: PlanReport) -> list[Any]:
    return [
        op.payload["name"] for op in report.ops if op.target == "stripe" and "name" in op.payload
    ]


def test_kept_records_plan_what_a_full_read_plans(store: Store, mappings: MappingSet) -> None:
    """The first plan through kept records reads everything and plans the same writes."""
    _land_world(store, mappings)
    kept = MappedRecords()
    cached = plan(store, mappings, now=NOW, dry_run=True, mapped=kept)
    full = plan(store, mappings, now=NOW, dry_run=True)
    assert _writes(cached) == _writes(full)
    assert _stripe_name_writes(cached) == ["Acme Analytics Inc"]
    assert kept.reread == OTHERS + 2 == len(kept)


def test_a_changed_record_is_read_again_and_nothing_else(
    store: Store, mappings: MappingSet
) -> None:
    """Stripe takes the Account's name: the next plan re-reads that change, not the old rows."""
    _land_world(store, mappings)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, dry_run=True, mapped=kept)
    store.land("stripe", [_stripe_customer("Acme Analytics Inc")], now=LATER)
    cached = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    full = plan(store, mappings, now=LATER, dry_run=True)
    assert _stripe_name_writes(cached) == []
    assert _writes(cached) == _writes(full)
    # The change alone: the Acme Account, landed within the lookback of the newest change
    # seen, is looked at again in the index but not read, its content unchanged.
    assert kept.reread == 1
    assert len(kept) == OTHERS + 2


def test_a_follow_up_plan_reads_what_landed_only_at_the_next_plan(
    store: Store, mappings: MappingSet
) -> None:
    """A cycle's follow-up (``landed=False``, right after its push) plans from the records as
    the last plan read them; what landed meanwhile is read by the next plan, not lost."""
    _land_world(store, mappings)
    kept = MappedRecords()
    assert _stripe_name_writes(plan(store, mappings, now=NOW, dry_run=True, mapped=kept)) == [
        "Acme Analytics Inc"
    ]
    store.land("stripe", [_stripe_customer("Acme Analytics Inc")], now=LATER)
    follow_up = plan(store, mappings, now=LATER, dry_run=True, mapped=kept, landed=False)
    assert _stripe_name_writes(follow_up) == ["Acme Analytics Inc"]
    following = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    assert _stripe_name_writes(following) == []
    assert kept.reread == 1
    assert _writes(following) == _writes(plan(store, mappings, now=LATER, dry_run=True))


def test_a_deleted_record_leaves_the_plan(store: Store, mappings: MappingSet) -> None:
    """A tombstone landed after the last plan removes the Stripe customer from the next one."""
    _land_world(store, mappings)
    kept = MappedRecords()
    before = plan(store, mappings, now=NOW, dry_run=True, mapped=kept)
    assert any(op.target == "stripe" for op in before.ops)
    store.land("stripe", [Record("customers", "cus_acme", {}, deleted=True)], now=LATER)
    cached = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    full = plan(store, mappings, now=LATER, dry_run=True)
    assert not any(op.target == "stripe" for op in cached.ops)
    assert _writes(cached) == _writes(full)
    assert len(kept) == OTHERS + 1


def test_other_mappings_read_everything_again(store: Store, mappings: MappingSet) -> None:
    """Reloaded mappings may map records differently: the kept records start over."""
    _land_world(store, mappings)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, dry_run=True, mapped=kept)
    plan(store, load_mappings(), now=NOW, dry_run=True, mapped=kept)
    assert kept.reread == OTHERS + 2


def test_only_changed_customers_are_planned_again(store: Store, mappings: MappingSet) -> None:
    """A stored plan is remembered per customer: the next plan skips the unchanged ones, plans
    the one whose record changed (queuing what a full plan queues), and a new day plans all."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    golden = first.customers + first.unchanged
    assert first.unchanged == 0
    assert first.queued > 0
    again = plan(store, mappings, now=NOW, mapped=kept)
    assert (again.customers, again.unchanged, again.ops) == (0, golden, [])
    # A dry run remembers nothing: the stored plan after it still plans the change.
    store.land("salesforce", [_account(ACCOUNT, "Acme Analytics Group")], now=LATER)
    dry = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    cached = plan(store, mappings, now=LATER, mapped=kept)
    full = plan(store, mappings, now=LATER, dry_run=True)
    assert (dry.customers, cached.customers, cached.unchanged) == (1, 1, golden - 1)
    assert _stripe_name_writes(cached) == ["Acme Analytics Group"]
    assert _writes(cached) == _writes(full)
    next_day = plan(store, mappings, now=LATER + timedelta(days=1), dry_run=True, mapped=kept)
    assert (next_day.customers, next_day.unchanged) == (first.customers, 0)


def test_kept_invoices_of_one_customer_share_its_reference(
    store: Store, mappings: MappingSet
) -> None:
    """A long-running process keeps every landed invoice's facts: a customer's invoices name it
    through one kept reference, not a copy each (memory grows with invoices, not copies)."""
    _land_world(store, mappings)
    invoices = [
        Record(
            "invoices",
            f"in_{n}",
            {
                "id": f"in_{n}",
                "object": "invoice",
                "customer": "cus_acme",
                "currency": "usd",
                "status": "paid",
                "total": 4_900,
                "amount_due": 4_900,
                "amount_paid": 4_900,
                "amount_remaining": 0,
                "created": 1_767_225_600 + n,
            },
        )
        for n in range(3)
    ]
    store.land("stripe", invoices, now=NOW)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, dry_run=True, mapped=kept)
    with store.engine.connect() as conn:
        entities = [
            r.entity
            for r in kept.records(conn, mappings, Normalizer(mappings), [("stripe", "invoices")])
        ]
    facts = [f for f in entities if isinstance(f, InvoiceFacts)]
    assert len(facts) == len(entities) == 3
    assert {f.party.id for f in facts if f.party} == {"cus_acme"}
    assert len({id(f.party) for f in facts}) == 1


def _acme(store: Store) -> str:
    with store.engine.connect() as conn:
        return str(
            conn.execute(
                select(CustomerLink.__table__.c.customer_id).where(  # type: ignore[attr-defined]
                    CustomerLink.__table__.c.external_id == ACCOUNT  # type: ignore[attr-defined]
                )
            ).scalar_one()
        )


def _of(report: PlanReport, customer: str) -> list[tuple[str, str, str, Any]]:
    return _writes(
        PlanReport(ops=[op for op in report.ops if op.customer_id == customer])  # type: ignore[call-arg]
    )


def _invoice(number: int, remaining: int) -> Record:
    return Record(
        "invoices",
        f"in_{number}",
        {
            "id": f"in_{number}",
            "object": "invoice",
            "customer": "cus_acme",
            "currency": "usd",
            "status": "open",
            "total": 4_900,
            "amount_due": 4_900,
            "amount_paid": 4_900 - remaining,
            "amount_remaining": remaining,
            "created": 1_767_225_600 + number,
        },
    )


def test_a_quiet_plan_looks_only_at_the_customers_whose_inputs_moved(
    store: Store, mappings: MappingSet
) -> None:
    """Kept plans look again only at the customers something changed for (a linked record,
    a billing record, a link, the golden record, a hub create, an agreed value) and plan for
    them what a plan reading everything plans; every other customer is left unread."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    total = first.customers + first.unchanged
    acme = _acme(store)
    at = [LATER]

    def again() -> PlanReport:
        at[0] += timedelta(minutes=1)
        full = plan(store, mappings, now=at[0], dry_run=True)
        report = plan(store, mappings, now=at[0], mapped=kept)
        assert report.customers + report.unchanged == total
        if report.customers:  # Acme, the one changed: what a full read plans for it
            assert _of(report, acme) == _of(full, acme)
        return report

    quiet = again()
    assert (quiet.customers, quiet.ops) == (0, [])
    # A billing record of Acme's Stripe customer moves its open balance.
    store.land("stripe", [_invoice(1, 1_200)], now=at[0])
    billed = again()
    assert billed.customers == 1
    assert any(op.target == "salesforce" for op in billed.ops)
    # The same invoice paid: the balance the hub shows follows.
    store.land("stripe", [_invoice(1, 0)], now=at[0] + timedelta(seconds=1))
    paid = again()
    assert paid.customers == 1
    assert _of(paid, acme) != _of(billed, acme)
    # The golden record changes (a new version, as matching writes it).
    with store.engine.begin() as conn:
        conn.execute(
            update(Customer.__table__)  # type: ignore[attr-defined]
            .where(Customer.__table__.c.id == acme)  # type: ignore[attr-defined]
            .values(version=Customer.__table__.c.version + 1)  # type: ignore[attr-defined]
        )
    assert again().customers == 1
    # Someone takes the Stripe customer off Acme (a review decision): its link moves.
    with store.engine.begin() as conn:
        conn.execute(
            update(CustomerLink.__table__)  # type: ignore[attr-defined]
            .where(CustomerLink.__table__.c.external_id == "cus_acme")  # type: ignore[attr-defined]
            .values(status=LinkStatus.REVIEW.value)
        )
    unlinked = again()
    assert unlinked.customers == 1
    assert not any(op.target == "stripe" and op.remote_id for op in unlinked.ops)
    # Another process's plan stored other agreed values for Acme (its baseline row).
    audit = AuditLog.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        details = conn.execute(
            select(audit.c.details)
            .where(audit.c.subject == acme, audit.c.action == BASELINE_ACTION)
            .order_by(audit.c.id.desc())
            .limit(1)
        ).scalar_one()
        agreed = dict.fromkeys(details["agreed"], "agreed elsewhere")
        conn.execute(
            insert(audit).values(
                at=at[0],
                actor="ledgerlink",
                action=BASELINE_ACTION,
                subject=acme,
                details={"agreed": agreed},
            )
        )
    assert again().customers == 1
    # The QuickBooks customer the plan queued for Acme is created (its row done, with its id).
    table = Outbox.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        done = conn.execute(
            update(table)
            .where(
                table.c.entity_id == acme,
                table.c.target == "quickbooks",
                table.c.action == "create",
            )
            .values(status="done", remote_id="77")
        ).rowcount
    assert done == 1
    assert again().customers == 1
    # Nothing moved since: nobody is looked at.
    assert again().customers == 0
    # A new day: every customer is planned again (hub values follow the date).
    at[0] += timedelta(days=1)
    assert again().customers == first.customers


def test_kept_names_follow_renames_deletes_and_shared_names(
    store: Store, mappings: MappingSet
) -> None:
    """The names the planner checks creates against, revised between refreshes for what
    changed, stay what reading every record gives: a rename frees the old name, a delete
    frees its name, and a name several records share is held by one of them."""
    normalizer = Normalizer(mappings)
    kinds = [("salesforce", "Account")]
    kept = MappedRecords()

    def names_now() -> tuple[Any, Any, Any]:
        fresh = MappedRecords()
        with store.engine.connect() as conn:
            fresh.refresh(conn, mappings, normalizer, kinds)
            kept.refresh(conn, mappings, normalizer, kinds)
        revised = {k: dict(v) for k, v in kept.names().items()}
        kept._names = None  # built again from every kept record, as before any revision
        return revised, kept.names(), fresh.names()

    ids = [f"001Hs0000NAME{n:02d}AAA" for n in range(4)]
    at = NOW
    store.land("salesforce", [_account(i, f"Company {n}") for n, i in enumerate(ids)], now=at)
    names_now()
    steps = [
        [_account(ids[0], "Company 9")],  # renamed: "company 0" is free
        [_account(ids[1], "Company 2")],  # shares a name with ids[2]
        [Record("Account", ids[2], {}, deleted=True)],  # one holder goes
        [_account(ids[3], "Company 2"), _account(ids[0], "company 2 ")],  # three ways
    ]
    for records in steps:
        at += timedelta(minutes=5)
        store.land("salesforce", records, now=at)
        revised, rebuilt, fresh = names_now()
        assert revised == rebuilt
        accounts, read = revised[("salesforce", "Account")], fresh[("salesforce", "Account")]
        assert accounts.keys() == read.keys()
    assert accounts["company 2"] in (ids[0], ids[1], ids[3])
    assert set(accounts) == {"company 2"}


def test_kept_taken_names_are_what_reading_every_landed_customer_gives(store: Store) -> None:
    """The QuickBooks names a create must avoid, revised from what landed since the last
    plan, equal a whole read: new customers, renames (the old name is free), deleted ones
    (their name stays taken while the payload shows it), a blank name, one name held twice."""
    kept = _TakenNames()

    def taken() -> tuple[Any, Any]:
        mine, fresh = _World(), _World()
        with store.engine.connect() as conn:
            _load_unique_names(conn, mine, kept)
            _load_unique_names(conn, fresh)
        return mine.names, fresh.names

    def customer(remote: str, name: str) -> Record:
        return Record("Customer", remote, {"Id": remote, "DisplayName": name})

    at = NOW
    store.land("quickbooks", [customer("1", "Acme  Corp"), customer("2", "Globex")], now=at)
    first, fresh = taken()
    assert first == fresh
    assert set(first[("quickbooks", "Customer")]) == {"acme  corp", "acme corp", "globex"}
    steps = [
        [customer("2", "Initech"), customer("3", "Umbrella")],
        [customer("4", "umbrella "), Record("Customer", "3", {"Id": "3"}, deleted=True)],
        [customer("1", "  "), customer("5", "Globex")],
    ]
    for records in steps:
        at += timedelta(minutes=5)
        store.land("quickbooks", records, now=at)
        mine, fresh = taken()
        assert {k: set(v) for k, v in mine.items()} == {k: set(v) for k, v in fresh.items()}
    names = mine[("quickbooks", "Customer")]
    assert names == {"initech": "2", "umbrella": "3", "globex": "5"}  # 3 deleted, named still


def test_a_kept_plan_of_a_few_customers_reads_their_golden_records(
    store: Store, mappings: MappingSet, link_customer: Any
) -> None:
    """A kept plan reads the golden rows of the customers it plans only (by id, when they are
    few of many): the one customer whose Account changed gets what a full read plans."""
    names = [f"Company {n} Ltd" for n in range(8)]
    ids = [f"001Hs0000FEW{n:02d}AAAA" for n in range(8)]
    store.land("salesforce", [_account(i, n) for i, n in zip(ids, names, strict=True)], now=NOW)
    for n, record_id in enumerate(ids):
        link_customer(("salesforce", "Account", record_id), customer=f"cust-{n}", name=names[n])
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    assert first.customers == 8
    with store.engine.begin() as conn:  # matching gives customer 3 its name from the Account
        conn.execute(
            update(Customer.__table__)  # type: ignore[attr-defined]
            .where(Customer.__table__.c.id == "cust-3")  # type: ignore[attr-defined]
            .values(
                version=2,
                fields={"name": "Company 3 Ltd"},
                lineage={"name": f"salesforce:Account:{ids[3]}"},
            )
        )
    store.land("salesforce", [_account(ids[3], "Company Three Ltd")], now=LATER)
    full = plan(store, mappings, now=LATER, dry_run=True)
    report = plan(store, mappings, now=LATER, mapped=kept)
    assert (report.customers, report.unchanged) == (1, 7)
    assert _of(report, "cust-3") == _of(full, "cust-3")


def _landed_back(record: Record, written: dict[str, Any], **vendor: Any) -> Record:
    """``record`` as its vendor gives it once ``written`` landed on it (nested objects merged),
    with the vendor's own bookkeeping fields moved (``vendor``)."""
    payload = dict(record.payload)
    for name, value in written.items():
        current = payload.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            payload[name] = {**current, **value}
        else:
            payload[name] = value
    return Record(record.object, record.id, {**payload, **vendor})


def _written(report: PlanReport, target: str, record_id: str) -> dict[str, Any]:
    [op] = [op for op in report.ops if (op.target, op.remote_id) == (target, record_id)]
    return dict(op.payload)


def test_records_landing_back_as_written_do_not_plan_their_customer_again(
    store: Store, mappings: MappingSet
) -> None:
    """The records a stored plan updated land back (the next pull) holding what was written:
    their customer is not planned again for them, as planning it would write nothing. A
    record that lands back with anything else new a plan reads (a person's edit, a value the
    vendor reformatted) is planned again, as a full read plans it."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    acme = _acme(store)
    stripe = _stripe_customer("ACME Analytics")
    account = _account(ACCOUNT, "Acme Analytics Inc")
    to_stripe = _written(first, "stripe", "cus_acme")
    to_account = _written(first, "salesforce", ACCOUNT)
    assert to_stripe["name"] == "Acme Analytics Inc"
    assert to_account["Stripe_Customer_Id__c"] == "cus_acme"
    moved = "2026-03-01T12:00:05.000+0000"
    store.land("stripe", [_landed_back(stripe, to_stripe)], now=LATER)
    store.land(
        "salesforce",
        [_landed_back(account, to_account, LastModifiedDate=moved, SystemModstamp=moved)],
        now=LATER,
    )
    echoed = plan(store, mappings, now=LATER, mapped=kept)
    assert (echoed.echoes, echoed.customers, echoed.ops) == (2, 0, [])
    full = plan(store, mappings, now=LATER, dry_run=True)
    assert not [op for op in full.ops if op.remote_id in ("cus_acme", ACCOUNT)]
    # The Stripe customer lands again: someone edited its e-mail there.
    edited = _landed_back(stripe, {**to_stripe, "email": "ap@acme-analytics.com"})
    store.land("stripe", [edited], now=LATER + timedelta(minutes=1))
    at = LATER + timedelta(minutes=1)
    full = plan(store, mappings, now=at, dry_run=True)
    replanned = plan(store, mappings, now=at, mapped=kept)
    assert (replanned.echoes, replanned.customers) == (0, 1)
    assert _of(replanned, acme) == _of(full, acme)


def test_a_record_landing_again_changed_only_where_no_plan_reads_plans_nothing(
    store: Store, mappings: MappingSet
) -> None:
    """A vendor moves fields of a record no plan reads (a Stripe customer's ``balance`` once
    an invoice is paid), whether the last plan wrote the record or only read it: its customer
    is not planned again, as a full read would write nothing. A later edit of a field plans
    read is planned again."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    acme = _acme(store)
    to_stripe = _written(first, "stripe", "cus_acme")
    to_account = _written(first, "salesforce", ACCOUNT)
    stripe = _landed_back(_stripe_customer("ACME Analytics"), to_stripe)
    account = _landed_back(_account(ACCOUNT, "Acme Analytics Inc"), to_account)
    store.land("stripe", [stripe], now=LATER)
    store.land("salesforce", [account], now=LATER)
    assert plan(store, mappings, now=LATER, mapped=kept).customers == 0

    # Someone types over the Account's MRR: the next plan writes it back to the Account
    # alone, and reads the Stripe customer without writing it.
    at = LATER + timedelta(minutes=1)
    store.land("salesforce", [_landed_back(account, {"MRR__c": 999})], now=at)
    rewrite = plan(store, mappings, now=at, mapped=kept)
    assert rewrite.customers == 1
    assert [op.remote_id for op in rewrite.ops] == [ACCOUNT]
    account = _landed_back(account, _written(rewrite, "salesforce", ACCOUNT))
    at = LATER + timedelta(minutes=2)
    store.land("salesforce", [account], now=at)
    assert plan(store, mappings, now=at, mapped=kept).customers == 0

    # Stripe moves the customer's balance twice: nothing a plan reads.
    for step, balance in enumerate((-1200, 0), start=3):
        at = LATER + timedelta(minutes=step)
        store.land("stripe", [_landed_back(stripe, {}, balance=balance)], now=at)
        quiet = plan(store, mappings, now=at, mapped=kept)
        assert (quiet.echoes, quiet.customers, quiet.ops) == (1, 0, [])
        assert not _of(plan(store, mappings, now=at, dry_run=True), acme)

    # Then someone edits its e-mail: planned again, as a full read plans it.
    at = LATER + timedelta(minutes=5)
    edited = _landed_back(stripe, {"email": "ap@acme-analytics.com"}, balance=0)
    store.land("stripe", [edited], now=at)
    full = plan(store, mappings, now=at, dry_run=True)
    replanned = plan(store, mappings, now=at, mapped=kept)
    assert (replanned.echoes, replanned.customers) == (0, 1)
    assert _of(replanned, acme) == _of(full, acme)


def test_a_record_landing_back_unlike_what_was_written_plans_its_customer_again(
    store: Store, mappings: MappingSet
) -> None:
    """The vendor kept the written name its own way: not an echo; the customer is planned
    again (and writes the name again, as a full read does)."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    to_stripe = _written(first, "stripe", "cus_acme")
    back = _landed_back(
        _stripe_customer("ACME Analytics"), {**to_stripe, "name": "ACME ANALYTICS INC"}
    )
    store.land("stripe", [back], now=LATER)
    report = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    assert (report.echoes, report.customers) == (0, 1)
    assert _stripe_name_writes(report) == ["Acme Analytics Inc"]
    assert _writes(report) == _writes(plan(store, mappings, now=LATER, dry_run=True))


def test_billing_that_moves_no_hub_value_does_not_plan_its_customer_again(
    store: Store, mappings: MappingSet
) -> None:
    """An invoice changes in a way the hub values do not show (its metadata): the customer's
    hub values are computed again, found equal, and the customer is not planned again. When
    the change moves a hub value (the open balance), it is planned, as a full read plans."""
    _land_world(store, mappings)
    store.land("stripe", [_invoice(1, 1_200)], now=NOW)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, mapped=kept)
    plan(store, mappings, now=NOW, mapped=kept)  # the QuickBooks create it queued is open now
    assert plan(store, mappings, now=NOW, mapped=kept).customers == 0
    acme = _acme(store)
    amended = _invoice(1, 1_200)
    amended.payload["metadata"] = {"po_number": "PO-1"}
    store.land("stripe", [amended], now=LATER)
    quiet = plan(store, mappings, now=LATER, mapped=kept)
    assert (quiet.customers, quiet.rebilled, quiet.ops) == (0, 1, [])
    at = LATER + timedelta(minutes=1)
    store.land("stripe", [_invoice(1, 0)], now=at)
    full = plan(store, mappings, now=at, dry_run=True)
    paid = plan(store, mappings, now=at, mapped=kept)
    assert (paid.customers, paid.rebilled) == (1, 0)
    assert any(op.target == "salesforce" for op in paid.ops)
    assert _of(paid, acme) == _of(full, acme)


def test_a_new_invoice_plans_its_customer_for_the_hub_values_alone_once_writes_landed(
    store: Store, mappings: MappingSet
) -> None:
    """A new invoice moves its customer's hub values (open balance, last invoice date) and
    nothing else. Once the records its last plan wrote other fields to hold them, the customer
    is planned for its hub values alone, with the writes a plan reading everything gives.
    While such a write is still on its way, the whole customer is planned: its write goes
    out again with the new values rather than be superseded by one without it."""
    _land_world(store, mappings)
    store.land("stripe", [_invoice(1, 1_200)], now=NOW)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, mapped=kept)
    plan(store, mappings, now=NOW, mapped=kept)  # the QuickBooks create it queued is open now
    acme = _acme(store)

    def billed(number: int, at: datetime) -> PlanReport:
        store.land("stripe", [_invoice(number, 900)], now=at)
        full = plan(store, mappings, now=at, dry_run=True)
        report = plan(store, mappings, now=at, mapped=kept)
        assert report.customers == 1
        assert _of(report, acme) == _of(full, acme)
        return report

    # The Stripe customer's name (Salesforce's) has not landed there yet.
    waiting = billed(2, NOW + timedelta(minutes=1))
    assert waiting.hubs_only == 0
    assert _stripe_name_writes(waiting) == ["Acme Analytics Inc"]
    balance = _written(waiting, "salesforce", ACCOUNT)["Open_Balance__c"]
    # Both writes land back as written.
    moved = "2026-03-01T12:05:00.000+0000"
    stripe = _landed_back(
        _stripe_customer("ACME Analytics"), _written(waiting, "stripe", "cus_acme")
    )
    account = _landed_back(
        _account(ACCOUNT, "Acme Analytics Inc"),
        _written(waiting, "salesforce", ACCOUNT),
        LastModifiedDate=moved,
        SystemModstamp=moved,
    )
    store.land("stripe", [stripe], now=LATER)
    store.land("salesforce", [account], now=LATER)
    echoed = plan(store, mappings, now=LATER, mapped=kept)
    assert (echoed.echoes, echoed.customers, echoed.ops) == (2, 0, [])
    alone = billed(3, LATER + timedelta(minutes=1))
    assert alone.hubs_only == 1
    assert [op.target for op in alone.ops] == ["salesforce"]
    assert _written(alone, "salesforce", ACCOUNT)["Open_Balance__c"] != balance


def test_a_plan_takes_the_parties_matching_just_mapped(
    store: Store, mappings: MappingSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept cycle's plan reads the party records matching has just mapped: it takes those
    parties (the same objects) instead of mapping the records again, except a record that
    landed again since (its content hash moved), which it maps: the plan sees the new name."""
    _land_world(store, mappings)
    matcher = Matcher(store.engine, mappings)
    matcher.run(now=NOW)
    assert len(matcher.mapped) == OTHERS + 2
    store.land("stripe", [_stripe_customer("Acme Analytics Inc")], now=LATER)
    calls: list[str] = []
    original = RecordMapper.map

    def counted(self: RecordMapper, external_id: str, payload: Any) -> Any:
        calls.append(external_id)
        return original(self, external_id, payload)

    kept = MappedRecords()
    kept.hints = matcher.mapped
    monkeypatch.setattr(RecordMapper, "map", counted)
    report = plan(store, mappings, now=LATER, dry_run=True, mapped=kept)
    monkeypatch.undo()
    assert calls == ["cus_acme"]
    account = kept.party(("salesforce", "Account", ACCOUNT))
    assert account is not None
    assert account.entity is matcher.mapped["salesforce", "Account", ACCOUNT][1]
    assert kept.hints is None
    assert _stripe_name_writes(report) == []
    assert _writes(report) == _writes(plan(store, mappings, now=LATER, dry_run=True))


def test_each_account_of_a_customer_shows_its_amounts_in_its_own_currency(
    store: Store, mappings: MappingSet, link_customer: Any
) -> None:
    """A customer owes in USD and in EUR and has an Account in each currency: the primary
    (USD) Account shows the USD balance and the EUR one the EUR balance, in a full and in a
    kept plan (each currency's hub values computed for its own Account)."""
    usd, eur = "001Hs0000CUR01AAAA", "001Hs0000CUR02AAAA"
    accounts = [
        Record("Account", record_id, {**_account(record_id, name).payload, "CurrencyIsoCode": code})
        for record_id, name, code in (
            (usd, "Acme Analytics Inc", "USD"),
            (eur, "Acme Analytics GmbH", "EUR"),
        )
    ]
    store.land("salesforce", accounts, now=NOW)
    store.land("stripe", [_stripe_customer("Acme Analytics Inc")], now=NOW)
    owed_in_euros = _invoice(2, 3_000)
    owed_in_euros.payload["currency"] = "eur"
    store.land("stripe", [_invoice(1, 1_200), owed_in_euros], now=NOW)
    link_customer(
        ("salesforce", "Account", usd),
        ("salesforce", "Account", eur),
        ("stripe", "customers", "cus_acme"),
    )

    def balances(report: PlanReport) -> dict[str, Any]:
        return {
            op.remote_id: op.payload.get("Open_Balance__c")
            for op in report.ops
            if op.target == "salesforce"
        }

    full = plan(store, mappings, now=NOW, dry_run=True)
    kept = plan(store, mappings, now=NOW, dry_run=True, mapped=MappedRecords())
    assert balances(full) == balances(kept) == {usd: 12, eur: 30}
