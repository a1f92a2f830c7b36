"""End-to-end flows of the real client against the sandbox over TLS on loopback."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ledgerlink_salesforce import plugin
from ledgerlink_salesforce.sandbox import SalesforceSandbox
from ledgerlink_salesforce.sandbox.data import API_USER_ID, format_sf_datetime

from ledgerlink.connector.errors import (
    ConfigurationError,
    ConflictError,
    QuotaExhaustedError,
    RecordError,
)
from ledgerlink.connector.protocol import ConnectorContext, Cursor, WriteAction, WriteOp
from ledgerlink.connector.sandbox import Fault

from .conftest import DictSecrets, connect, drain


def ids(pages: list[Any]) -> list[str]:
    return [r.id for p in pages for r in p.records]


def test_first_load_over_rest_pages_in_modstamp_order(sandbox: SalesforceSandbox) -> None:
    """A small first load reads every account once, ordered by SystemModstamp then Id."""
    conn = connect(sandbox, query_batch_size=200)
    sandbox.faults.reset_counts()
    pages, cursor = drain(conn, "Contact", Cursor())
    records = [r for p in pages for r in p.records]
    assert len(records) == 80 == len({r.id for r in records})
    keys = [(r.cursor_value, r.id) for r in records]
    assert keys == sorted(keys)
    assert cursor.value == records[-1].cursor_value
    assert all(len(r.id) == 18 and r.id.startswith("003") for r in records)
    assert records[0].payload["attributes"]["type"] == "Contact"


def test_rest_paging_honours_batch_size(sandbox: SalesforceSandbox) -> None:
    """With 2,500 rows and the default batch size, the read uses two query pages."""
    sandbox.org.tables["Account"].base_count = 2500
    conn = connect(sandbox, bulk_threshold=10_000)
    sandbox.faults.reset_counts()
    pages, _ = drain(conn, "Account", Cursor())
    assert [len(p.records) for p in pages] == [2000, 500]
    paths = [path for _m, path in sandbox.faults.requests]
    assert sum(1 for p in paths if "/query" in p) == 3  # count, first page, nextRecordsUrl


def test_first_load_above_threshold_uses_bulk_with_locators(sandbox: SalesforceSandbox) -> None:
    """Above the threshold the first load is one Bulk 2.0 job read page by page by locator."""
    rest_conn = connect(sandbox)
    rest_records = {
        r.id: r.payload for p in drain(rest_conn, "Account", Cursor())[0] for r in p.records
    }
    conn = connect(sandbox, bulk_threshold=10, bulk_page_size=15)
    pages, cursor = drain(conn, "Account", Cursor())
    assert [len(p.records) for p in pages] == [15, 15, 10]
    assert pages[0].cursor.state["mode"] == "bulk"
    assert cursor.state.get("mode") is None
    bulk_records = {r.id: r.payload for p in pages for r in p.records}
    assert bulk_records == rest_records
    assert any("/jobs/query" in path for _m, path in sandbox.faults.requests)
    sandbox.faults.reset_counts()
    again, _ = drain(conn, "Account", cursor)
    assert ids(again) == []
    assert sandbox.faults.request_count == 1


def test_bulk_load_resumes_from_the_stored_locator(sandbox: SalesforceSandbox) -> None:
    """A crash after the first bulk page resumes at its locator without a new job."""
    conn = connect(sandbox, bulk_threshold=10, bulk_page_size=15)
    first = next(iter(conn.read("Account", Cursor())))
    sandbox.faults.reset_counts()
    rest, cursor = drain(conn, "Account", first.cursor)
    assert len(ids([first, *rest])) == 40 == len(set(ids([first, *rest])))
    assert not any(m == "POST" for m, _p in sandbox.faults.requests)
    assert cursor.state.get("job") is None


def test_no_change_cycle_costs_one_call_and_yields_nothing(sandbox: SalesforceSandbox) -> None:
    """Reading again from the final cursor with nothing changed makes one call, no records."""
    conn = connect(sandbox)
    _, cursor = drain(conn, "Account", Cursor())
    sandbox.faults.reset_counts()
    pages, again = drain(conn, "Account", cursor)
    assert ids(pages) == []
    assert sandbox.faults.request_count == 1
    assert again.value == cursor.value


def test_incremental_sees_changes_and_deletes_in_the_overlap_second(
    sandbox: SalesforceSandbox,
) -> None:
    """Records stamped in the cursor's own second, or committed late, are read; deletes too."""
    conn = connect(sandbox)
    _, cursor = drain(conn, "Account", Cursor())
    assert cursor.value is not None
    boundary = datetime.strptime(cursor.value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    table = sandbox.org.tables["Account"]
    same_second = table.id_for(3)
    late = table.id_for(5)
    deleted = table.id_for(7)
    sandbox.org.touch("Account", same_second, at=boundary, Name="Changed in the same second")
    sandbox.org.touch("Account", late, at=boundary - timedelta(seconds=30), Phone="+1 555 0100")
    sandbox.org.delete("Account", deleted, at=boundary)
    sandbox.faults.reset_counts()
    pages, after = drain(conn, "Account", cursor)
    records = {r.id: r for p in pages for r in p.records}
    assert set(records) == {same_second, late, deleted}
    assert records[deleted].deleted is True
    assert records[same_second].payload["Name"] == "Changed in the same second"
    assert sandbox.faults.request_count == 1
    pages, _ = drain(conn, "Account", after)
    assert ids(pages) == []


def _moment(cursor: Cursor) -> datetime:
    assert cursor.value is not None
    return datetime.strptime(cursor.value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_the_hubs_settled_writes_leave_the_overlap_window(sandbox: SalesforceSandbox) -> None:
    """The hub's own writes stamped more than the timeout before the cursor are not paged
    through again; everything else in the window still is: people's late edits, the hub's
    writes within the timeout, a system process's stamp on a record the hub wrote long ago."""
    org = sandbox.org
    accounts = org.tables["Account"]
    accounts.base_count = 450
    conn = connect(sandbox, query_batch_size=200, timeout_seconds=60)
    _, cursor = drain(conn, "Account", Cursor())
    written = [accounts.id_for(i) for i in range(250)]
    ops = [WriteOp(f"k-{i}", "Account", WriteAction.UPDATE, {"Phone": "1"}, i) for i in written]
    assert all(r.error is None for r in conn.write(ops))
    echo, cursor = drain(conn, "Account", cursor)
    assert set(ids(echo)) == set(written)
    wrote_at = _moment(cursor)
    person = org.touch("Account", accounts.id_for(300), at=wrote_at + timedelta(seconds=120))
    _, cursor = drain(conn, "Account", cursor)  # the window still holds the writes: 2 pages
    assert _moment(cursor) == wrote_at + timedelta(seconds=120)

    # Two minutes on, the writes are settled: only the people's edit is left in the window.
    later = org.touch("Account", accounts.id_for(301), at=wrote_at + timedelta(seconds=121))
    sandbox.faults.reset_counts()
    pages, after = drain(conn, "Account", cursor)
    assert ids(pages) == [later["Id"]]
    assert sandbox.faults.request_count == 1
    unfiltered = connect(sandbox, query_batch_size=200, skip_own_writes=False)
    unfiltered.client.auth.session()  # logged in before counting
    sandbox.faults.reset_counts()
    again, _ = drain(unfiltered, "Account", cursor)
    assert ids(again) == [later["Id"]]
    assert sandbox.faults.request_count == 2  # the 250 writes paged through again

    # What the window must still catch.
    edge = _moment(after)
    late_own = org.touch(
        "Account", accounts.id_for(310), at=edge - timedelta(seconds=30), by=API_USER_ID
    )
    late_person = org.touch("Account", accounts.id_for(311), at=edge - timedelta(seconds=200))
    old = org.touch("Account", accounts.id_for(312), at=edge - timedelta(days=3), by=API_USER_ID)
    bumped = {**old, "SystemModstamp": format_sf_datetime(edge - timedelta(seconds=100))}
    accounts.store(bumped)  # a system process (a roll-up recalculation) moved only its stamp
    pages, _ = drain(conn, "Account", after)
    assert sorted(ids(pages)) == sorted([late_own["Id"], late_person["Id"], old["Id"]])
    assert person["Id"] not in ids(pages)


def test_upsert_batches_of_200_with_partial_failures(sandbox: SalesforceSandbox) -> None:
    """450 upserts take three calls; bad records fail alone with RecordError, others land."""
    conn = connect(sandbox)
    ops = [
        WriteOp(
            f"key-{i}",
            "Account",
            WriteAction.UPSERT,
            {"Name": f"Customer {i}"},
            external_id=f"ll-{i}",
        )
        for i in range(450)
    ]
    ops[10] = WriteOp("key-10", "Account", WriteAction.UPSERT, {"Name": None}, external_id="ll-10")
    ops[300] = WriteOp(
        "key-300", "Account", WriteAction.UPSERT, {"Nmae": "typo"}, external_id="ll-300"
    )
    conn.client.auth.session()
    sandbox.faults.reset_counts()
    results = list(conn.write(ops))
    assert sandbox.faults.request_count == 3
    assert [r.idempotency_key for r in results] == [op.idempotency_key for op in ops]
    failed = {r.idempotency_key: r.error for r in results if not r.ok}
    assert set(failed) == {"key-10", "key-300"}
    assert isinstance(failed["key-10"], RecordError)
    assert failed["key-10"].vendor_code == "REQUIRED_FIELD_MISSING"
    assert failed["key-300"].vendor_code == "INVALID_FIELD"
    again = list(conn.write(ops[:5]))
    assert [r.remote_id for r in again] == [r.remote_id for r in results[:5]]
    assert all(r.response and r.response["created"] is False for r in again)


def test_duplicate_value_and_deleted_entity_quarantine_one_record(
    sandbox: SalesforceSandbox,
) -> None:
    """DUPLICATE_VALUE and ENTITY_IS_DELETED become RecordError for that op only."""
    conn = connect(sandbox)
    table = sandbox.org.tables["Account"]
    sandbox.org.touch("Account", table.id_for(1), Stripe_Customer_Id__c="cus_1")
    sandbox.org.delete("Account", table.id_for(2))
    ops = [
        WriteOp(
            "u0",
            "Account",
            WriteAction.UPDATE,
            {"Stripe_Customer_Id__c": "cus_1"},
            remote_id=table.id_for(0),
        ),
        WriteOp("u2", "Account", WriteAction.UPDATE, {"Name": "x"}, remote_id=table.id_for(2)),
        WriteOp(
            "u3", "Account", WriteAction.UPDATE, {"Description": "ok"}, remote_id=table.id_for(3)
        ),
    ]
    results = {r.idempotency_key: r for r in conn.write(ops)}
    codes = {key: r.error.vendor_code for key, r in results.items() if r.error is not None}
    assert codes == {"u0": "DUPLICATE_VALUE", "u2": "ENTITY_IS_DELETED"}
    assert isinstance(results["u2"].error, RecordError)
    assert results["u3"].ok
    assert table.get(table.id_for(3))["Description"] == "ok"  # type: ignore[index]


def test_locked_row_is_retried_and_lands(sandbox: SalesforceSandbox) -> None:
    """A record failing with UNABLE_TO_LOCK_ROW is sent again and then succeeds."""
    conn = connect(sandbox)
    table = sandbox.org.tables["Account"]
    sandbox.org.lock_rows([table.id_for(4)], times=1)
    ops = [
        WriteOp(
            f"u{i}", "Account", WriteAction.UPDATE, {"Description": "v2"}, remote_id=table.id_for(i)
        )
        for i in (4, 5)
    ]
    results = list(conn.write(ops))
    assert all(r.ok for r in results)
    assert table.get(table.id_for(4))["Description"] == "v2"  # type: ignore[index]


def test_ambiguous_external_id_is_a_conflict(sandbox: SalesforceSandbox) -> None:
    """Two records sharing an external id give HTTP 300 / DUPLICATE_EXTERNAL_ID: a conflict."""
    conn = connect(sandbox)
    for _ in range(2):
        sandbox.org.insert("Account", {"Name": "Twin", "Ledgerlink_Id__c": "ll-twin"})
    single = list(
        conn.write(
            [WriteOp("k", "Account", WriteAction.UPSERT, {"Name": "T"}, external_id="ll-twin")]
        )
    )
    assert isinstance(single[0].error, ConflictError)
    assert single[0].error.status == 300
    batch = list(
        conn.write(
            [
                WriteOp("a", "Account", WriteAction.UPSERT, {"Name": "T"}, external_id="ll-twin"),
                WriteOp("b", "Account", WriteAction.UPSERT, {"Name": "U"}, external_id="ll-new"),
            ]
        )
    )
    assert isinstance(batch[0].error, ConflictError)
    assert batch[1].ok


def test_expired_session_mid_run_refreshes_and_continues(sandbox: SalesforceSandbox) -> None:
    """Sessions expiring between pages are renewed once and the read completes."""
    conn = connect(sandbox, query_batch_size=200)
    sandbox.org.tables["Contact"].base_count = 500
    reader = conn.read("Contact", Cursor())
    first = next(reader)
    sandbox.api.expire_sessions()
    rest = list(reader)
    assert len(ids([first, *rest])) == 500
    assert conn.client.auth.refreshes == 1


def test_daily_limit_exhausted_stops_writes_with_quota_error(sandbox: SalesforceSandbox) -> None:
    """When the org's daily budget is spent every remaining op reports QuotaExhaustedError."""
    conn = connect(sandbox, api_budget_share=1.0)
    conn.client.auth.session()
    sandbox.org.api_max = sandbox.org.api_used
    ops = [
        WriteOp(f"k{i}", "Account", WriteAction.UPSERT, {"Name": "n"}, external_id=f"e{i}")
        for i in range(250)
    ]
    sandbox.faults.reset_counts()
    results = list(conn.write(ops))
    assert len(results) == 250
    assert all(isinstance(r.error, QuotaExhaustedError) for r in results)
    assert sandbox.faults.request_count == 1


def test_budget_share_is_kept_before_the_org_limit(sandbox: SalesforceSandbox) -> None:
    """With a 50% share the client stops itself once half the daily budget is used."""
    conn = connect(sandbox, api_budget_share=0.5)
    sandbox.org.api_max = 10
    sandbox.org.api_used = 2
    drain(conn, "Product2", Cursor())
    with pytest.raises(QuotaExhaustedError, match="50%"):
        drain(conn, "Product2", Cursor())


def test_escaped_values_find_exactly_the_named_account(sandbox: SalesforceSandbox) -> None:
    """Accounts named O'Brien \\ Sons and an injection attempt are found exactly, alone."""
    conn = connect(sandbox)
    names = ["O'Brien \\ Sons", "x' OR Name != '", 'Line\nbreak "quoted"']
    results = list(
        conn.write(
            [
                WriteOp(f"n{i}", "Account", WriteAction.UPSERT, {"Name": n}, external_id=f"esc-{i}")
                for i, n in enumerate(names)
            ]
        )
    )
    assert all(r.ok for r in results)
    for name, result in zip(names, results, strict=True):
        found = conn.find("Account", "Name", name, ["Id", "Name"])
        assert [(f["Id"], f["Name"]) for f in found] == [(result.remote_id, name)]


def test_faults_are_retried_during_a_read(sandbox: SalesforceSandbox) -> None:
    """503s and a dropped connection during a read are retried and the read completes."""
    conn = connect(sandbox, query_batch_size=200)
    conn.client.auth.session()
    sandbox.faults.add(Fault(kind="status", status=503, count=2, path_prefix="/services/data"))
    sandbox.faults.add(Fault(kind="drop", count=1, path_prefix="/services/data"))
    pages, _ = drain(conn, "Contact", Cursor())
    assert len(ids(pages)) == 80


@pytest.mark.parametrize("flow", ["refresh_token", "password"])
def test_other_auth_flows_reach_the_sandbox(sandbox: SalesforceSandbox, flow: str) -> None:
    """The refresh-token and password flows log in and read like the JWT flow."""
    conn = connect(sandbox, auth=flow)
    pages, _ = drain(conn, "Product2", Cursor())
    assert len(ids(pages)) == 12


def test_check_reports_login_limits_and_stream_access(sandbox: SalesforceSandbox) -> None:
    """check() passes against the sandbox and names each stream it tried."""
    report = connect(sandbox).check()
    assert report.ok
    assert {i.name for i in report.items} >= {"login", "limits", "read Account", "read Quote"}


def test_wrong_key_fails_check_with_a_clear_reason(sandbox: SalesforceSandbox) -> None:
    """A JWT signed with the wrong key is refused and check() says so."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    report = connect(sandbox, private_key=other).check()
    assert not report.ok
    assert "refused" in report.items[0].detail


def test_bad_settings_raise_configuration_error_without_secrets(sandbox: SalesforceSandbox) -> None:
    """Invalid settings name the field and never echo a secret value."""
    settings = {
        **sandbox.connector_settings(),
        "instance_url": "http://insecure",
        "private_key": "PRIVATE-KEY-MATERIAL",
        "username": None,
    }
    with pytest.raises(ConfigurationError) as caught:
        plugin.connect(settings, ConnectorContext(secrets=DictSecrets()))
    text = str(caught.value)
    assert "instance_url" in text
    assert "PRIVATE-KEY-MATERIAL" not in text


def test_repeated_cycles_land_every_change_exactly_once(sandbox: SalesforceSandbox) -> None:
    """Over cycles of same-second, late, re-edited and newer changes, each version lands once."""
    conn = connect(sandbox, query_batch_size=200)
    _, cursor = drain(conn, "Contact", Cursor())
    table = sandbox.org.tables["Contact"]
    rnd = random.Random(5)
    landed: list[tuple[str, str, str]] = []
    expected: list[tuple[str, str, str]] = []
    for round_no in range(5):
        assert cursor.value is not None
        edge = datetime.strptime(cursor.value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        for n, index in enumerate(rnd.sample(range(80), rnd.randrange(1, 6))):
            offset = rnd.choice([0, 0, -1, -120, -299, 1, 60])  # same second, late, newer
            title = f"round {round_no} change {n}"
            changed = sandbox.org.touch(
                "Contact", table.id_for(index), at=edge + timedelta(seconds=offset), Title=title
            )
            expected.append((changed["Id"], changed["SystemModstamp"], title))
        if landed:  # edit again a record landed last round, within the same second
            record_id, stamp, _title = landed[-1]
            at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.000+0000").replace(tzinfo=UTC)
            sandbox.org.touch("Contact", record_id, at=at, Title=f"re-edit {round_no}")
            expected.append((record_id, stamp, f"re-edit {round_no}"))
        pages, cursor = drain(conn, "Contact", cursor)
        landed += [
            (r.id, r.payload["SystemModstamp"], r.payload["Title"])
            for p in pages
            for r in p.records
        ]
    assert sorted(landed) == sorted(expected)


def _loaded(conn: Any) -> dict[str, Cursor]:
    """Every stream read to its end once: the cursors an incremental pull starts from."""
    return {s.name: drain(conn, s.name, Cursor())[1] for s in conn.streams()}


def _changes(conn: Any, cursors: dict[str, Cursor]) -> dict[str, list[tuple[str, Any]]]:
    """What each stream yields from ``cursors``: (id, SystemModstamp) of every record."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for name, cursor in cursors.items():
        pages, _ = drain(conn, name, cursor)
        out[name] = [(r.id, r.payload["SystemModstamp"]) for p in pages for r in p.records]
    return out


def test_prefetched_pull_of_every_stream_costs_two_calls_and_yields_the_same(
    sandbox: SalesforceSandbox,
) -> None:
    """Eight incremental reads start in two /composite calls and yield what lone reads yield."""
    org = sandbox.org
    org.tables["Contact"].base_count = 450
    conn = connect(sandbox, query_batch_size=200)
    cursors = _loaded(conn)
    contacts = [org.tables["Contact"].id_for(i) for i in range(230)]  # more than one page
    for record_id in contacts:
        org.touch("Contact", record_id, Title="changed")
    org.touch("Account", org.tables["Account"].id_for(2), Name="Renamed Ltd")
    org.delete("Opportunity", org.tables["Opportunity"].id_for(1))
    sandbox.faults.reset_counts()
    lone = _changes(conn, cursors)
    assert sandbox.faults.request_count == 8 + 1  # one queryAll each, one more Contact page
    sandbox.faults.reset_counts()
    conn.prefetch(cursors)
    prefetched = _changes(conn, cursors)
    assert sandbox.faults.request_count == 2 + 1  # 5 + 3 queries; the Contact page after
    assert prefetched == lone
    assert {i for i, _ in prefetched["Contact"]} == set(contacts)
    assert len(prefetched["Account"]) == len(prefetched["Opportunity"]) == 1
    sandbox.faults.reset_counts()
    assert _changes(conn, cursors) == lone  # a prefetched page serves one read only
    assert sandbox.faults.request_count == 9


def test_a_write_after_prefetch_is_seen_by_the_next_read(sandbox: SalesforceSandbox) -> None:
    """Prefetched pages hold the state from before a write: the write drops them."""
    conn = connect(sandbox)
    cursors = _loaded(conn)
    target = sandbox.org.tables["Account"].id_for(4)
    conn.prefetch(cursors)
    (result,) = list(
        conn.write([WriteOp("k-rename", "Account", WriteAction.UPDATE, {"Name": "Now"}, target)])
    )
    assert result.error is None
    pages, _ = drain(conn, "Account", cursors["Account"])
    assert [r.payload["Name"] for p in pages for r in p.records if r.id == target] == ["Now"]


def test_a_stream_whose_query_fails_fails_alone_after_prefetch(
    sandbox: SalesforceSandbox,
) -> None:
    """A subrequest refused inside /composite leaves its stream to ask, and fail, on its own."""
    good = connect(sandbox)
    cursors = _loaded(good)
    lone, _ = drain(good, "Account", cursors["Account"])
    fields = {**sandbox.connector_settings()["fields"], "Contact": ["LastName", "NoSuchField__c"]}
    conn = connect(sandbox, fields=fields)
    conn.prefetch(cursors)
    sandbox.faults.reset_counts()
    with pytest.raises(RecordError):
        drain(conn, "Contact", cursors["Contact"])
    assert sandbox.faults.request_count == 1
    pages, _ = drain(conn, "Account", cursors["Account"])
    assert ids(pages) == ids(lone)
    assert sandbox.faults.request_count == 1  # served from the prefetched answer
