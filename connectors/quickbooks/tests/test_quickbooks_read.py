"""Reading QuickBooks streams against the sandbox: first load, CDC, deletes, fallbacks."""

from __future__ import annotations

import datetime as dt

from ledgerlink.connector.protocol import Cursor, WriteAction, WriteOp


def _ids(pages):
    return [r.id for p in pages for r in p.records]


def _create_customers(conn, count):
    """Create ``count`` customers through ``conn`` (more than one CDC answer holds)."""
    ops = [
        WriteOp(f"cap-{i}", "Customer", WriteAction.CREATE, {"DisplayName": f"Cap Customer {i}"})
        for i in range(count)
    ]
    assert all(r.ok for r in conn.write(ops))


def test_first_load_pages_every_customer_once(make_connector, sandbox, read_all):
    """A first load with small pages lands each customer exactly once, in time order."""
    conn = make_connector(page_size=7)
    pages, cursor = read_all(conn, "Customer", Cursor())
    ids = _ids(pages)
    assert sorted(ids, key=int) == [str(i) for i in range(1, 41)]
    assert len(ids) == len(set(ids))
    values = [r.cursor_value for p in pages for r in p.records]
    assert values == sorted(values)
    assert cursor.state["mode"] == "cdc"


def test_unchanged_cycle_costs_one_cdc_call_for_all_streams(connector, sandbox, read_all):
    """After the first load, a cycle with nothing new costs one CDC call; TaxCode (no CDC) waits for its refresh."""
    cursors = {}
    for stream in ("Customer", "Invoice", "Payment", "Item", "Account", "TaxCode"):
        _, cursors[stream] = read_all(connector, stream, Cursor())
    connector._cdc_cache = None
    before = sandbox.faults.request_count
    for stream in ("Customer", "Invoice", "Payment", "Item", "Account"):
        pages, cursors[stream] = read_all(connector, stream, cursors[stream])
        assert _ids(pages) == []
    assert sandbox.faults.request_count - before == 1
    pages, _ = read_all(connector, "TaxCode", cursors["TaxCode"])
    assert _ids(pages) == []
    assert sandbox.faults.request_count - before == 1


def test_entities_without_cdc_are_queried_again_after_their_refresh_interval(
    make_connector, sandbox, read_all
):
    """TaxCode is re-queried once its refresh interval has passed, and only then."""
    connector = make_connector(query_refresh_seconds=60)
    _, cursor = read_all(connector, "TaxCode", Cursor())
    before = sandbox.faults.request_count
    _, cursor = read_all(connector, "TaxCode", cursor)
    assert sandbox.faults.request_count == before
    sandbox.clock.advance(dt.timedelta(seconds=61))
    _, cursor = read_all(connector, "TaxCode", cursor)
    assert sandbox.faults.request_count == before + 1


def test_cdc_reports_updates_and_deleted_invoices_as_tombstones(connector, sandbox, read_all):
    """Changes made after the load arrive through CDC, deleted invoices as tombstones."""
    _, inv_cursor = read_all(connector, "Invoice", Cursor())
    _, cust_cursor = read_all(connector, "Customer", Cursor())
    sandbox.edit("Customer", "3", DisplayName="Renamed Three")
    invoice = sandbox.company.read("Invoice", "5")
    sandbox.company.delete("Invoice", {"Id": "5", "SyncToken": invoice["SyncToken"]})
    connector._cdc_cache = None
    pages, inv_cursor2 = read_all(connector, "Invoice", inv_cursor)
    records = [r for p in pages for r in p.records]
    assert [(r.id, r.deleted) for r in records] == [("5", True)]
    pages, _ = read_all(connector, "Customer", cust_cursor)
    changed = [r for p in pages for r in p.records]
    assert [(r.id, r.payload["DisplayName"]) for r in changed] == [("3", "Renamed Three")]
    connector._cdc_cache = None
    pages, _ = read_all(connector, "Invoice", inv_cursor2)
    assert _ids(pages) == []


def test_cdc_window_exceeded_falls_back_to_last_updated_queries(connector, sandbox, read_all):
    """A cursor older than the 30-day CDC window is caught up with LastUpdatedTime queries."""
    _, cursor = read_all(connector, "Customer", Cursor())
    sandbox.advance(dt.timedelta(days=31))
    sandbox.edit("Customer", "8", Notes="changed while the hub was down")
    sandbox.faults.reset_counts()
    pages, final = read_all(connector, "Customer", cursor)
    assert _ids(pages) == ["8"]
    assert not any(path.endswith("/cdc") for _, path in sandbox.faults.requests)
    assert final.value is not None
    assert final.value > cursor.value
    assert final.state["mode"] == "cdc"
    connector._cdc_cache = None
    pages, _ = read_all(connector, "Customer", final)
    assert _ids(pages) == []


def test_cdc_refused_by_the_server_clock_falls_back_to_queries(make_connector, sandbox, read_all):
    """When the server refuses changedSince as too old the stream catches up by query."""
    real_now = dt.datetime.now
    conn = make_connector(clock=lambda: real_now(dt.UTC))
    _, cursor = read_all(conn, "Customer", Cursor())
    sandbox.advance(dt.timedelta(days=31))
    sandbox.edit("Customer", "9", Notes="late change")
    pages, final = read_all(conn, "Customer", cursor)
    assert _ids(pages) == ["9"]
    assert final.state["mode"] == "cdc"


def test_cdc_cap_of_one_thousand_objects_falls_back_to_queries(make_connector, sandbox, read_all):
    """When a CDC answer hits the 1,000-object cap the stream pages by query instead."""
    conn = make_connector()
    _, cursor = read_all(conn, "Customer", Cursor())
    _create_customers(conn, 1005)
    conn._cdc_cache = None
    pages, final = read_all(conn, "Customer", cursor)
    ids = _ids(pages)
    assert len(ids) == 1005
    assert len(set(ids)) == 1005
    assert final.state["mode"] == "cdc"


def test_after_a_capped_answer_cdc_starts_again_from_that_answer(make_connector, sandbox, read_all):
    """A capped CDC answer sends the streams to queries once; the next cycle's CDC starts
    from that answer's time, so it is not capped again by the same changes (before, the start
    of the first load was kept for an hour and every cycle paid a capped CDC call and queries).
    """
    conn = make_connector()
    _, cursor = read_all(conn, "Customer", Cursor())
    _create_customers(conn, 1005)
    sandbox.advance(dt.timedelta(minutes=1))
    pages, caught_up = read_all(conn, "Customer", cursor)
    assert len(_ids(pages)) == 1005
    assert caught_up.state["since"] > cursor.state["since"]
    sandbox.advance(dt.timedelta(minutes=1))
    sandbox.edit("Customer", "8", Notes="one change")
    conn._cdc_cache = None
    sandbox.faults.reset_counts()
    pages, _ = read_all(conn, "Customer", caught_up)
    assert _ids(pages) == ["8"]
    assert [path.rsplit("/", 1)[-1] for _, path in sandbox.faults.requests] == ["cdc"]


def _create_items(conn, sandbox, count):
    """Create ``count`` service items through ``conn``."""
    income = next(
        r["Id"]
        for r in sandbox.company.table("Account").by_id()
        if r.get("AccountType") == "Income"
    )
    ops = [
        WriteOp(
            f"item-{i}",
            "Item",
            WriteAction.CREATE,
            {"Name": f"Cap Item {i}", "Type": "Service", "IncomeAccountRef": {"value": income}},
        )
        for i in range(count)
    ]
    assert all(r.ok for r in conn.write(ops))


def test_when_the_connections_own_writes_fill_an_answer_cdc_is_asked_in_groups(
    make_connector, sandbox, read_all
):
    """The echoes of a push of 1,000 documents or more would fill one CDC answer: the
    connection asks for its entities in groups under the cap instead, so every stream reads
    its changes from CDC, a bookkeeper's deletion among them, without a capped answer and a
    query per stream; the next cycle asks once again."""
    conn = make_connector()
    cursors = {}
    for stream in ("Customer", "Item", "Invoice"):
        _, cursors[stream] = read_all(conn, stream, Cursor())
    _create_customers(conn, 600)
    _create_items(conn, sandbox, 600)
    invoice = sandbox.company.read("Invoice", "5")
    sandbox.company.delete("Invoice", {"Id": "5", "SyncToken": invoice["SyncToken"]})
    sandbox.advance(dt.timedelta(minutes=1))
    sandbox.faults.reset_counts()
    landed = {}
    for stream in ("Customer", "Item", "Invoice"):
        pages, cursors[stream] = read_all(conn, stream, cursors[stream])
        landed[stream] = [r for p in pages for r in p.records]
    assert len({r.id for r in landed["Customer"]}) == 600
    assert {r.payload["DisplayName"] for r in landed["Customer"]} == {
        f"Cap Customer {i}" for i in range(600)
    }
    assert {r.payload["Name"] for r in landed["Item"]} == {f"Cap Item {i}" for i in range(600)}
    assert [(r.id, r.deleted) for r in landed["Invoice"]] == [("5", True)]
    assert [path.rsplit("/", 1)[-1] for _, path in sandbox.faults.requests] == ["cdc", "cdc"]
    sandbox.advance(dt.timedelta(minutes=1))
    sandbox.edit("Customer", "8", Notes="one change")
    conn._cdc_cache = None
    sandbox.faults.reset_counts()
    pages, _ = read_all(conn, "Customer", cursors["Customer"])
    assert _ids(pages) == ["8"]
    assert [path.rsplit("/", 1)[-1] for _, path in sandbox.faults.requests] == ["cdc"]


def test_boundary_second_records_are_not_lost_or_repeated(make_connector, sandbox, read_all):
    """Records sharing the boundary second are landed once even across page breaks."""
    conn = make_connector(page_size=3)
    pages, _ = read_all(conn, "Customer", Cursor())
    ids = _ids(pages)
    assert len(ids) == 40
    assert len(set(ids)) == 40


def test_inactive_customers_are_still_read(connector, sandbox, read_all):
    """A customer made inactive (QuickBooks' form of delete) is still landed on first load."""
    sandbox.edit("Customer", "12", Active=False)
    plain = connector.query("SELECT * FROM Customer MAXRESULTS 1000")
    assert "12" not in [r["Id"] for r in plain["QueryResponse"]["Customer"]]
    pages, _ = read_all(connector, "Customer", Cursor())
    inactive = [r for p in pages for r in p.records if r.id == "12"]
    assert [r.payload["Active"] for r in inactive] == [False]


def test_first_load_resumed_after_a_crash_misses_nothing(make_connector, sandbox, read_all):
    """A load stopped after two pages resumes from the stored cursor and misses no change."""
    first = make_connector(page_size=10)
    pages = []
    for page in first.read("Invoice", Cursor()):
        pages.append(page)
        if len(pages) == 2:
            break
    stored = Cursor.from_json(pages[-1].cursor.to_json())
    invoice = sandbox.company.read("Invoice", "3")
    sandbox.company.delete("Invoice", {"Id": "3", "SyncToken": invoice["SyncToken"]})
    second = make_connector(page_size=10)
    rest, final = read_all(second, "Invoice", stored)
    landed = {r.id for p in pages + rest for r in p.records}
    assert landed == {str(i) for i in range(1, 41)}
    assert final.state["since"] == pages[0].cursor.state["load_started"]
    second._cdc_cache = None
    changes, _ = read_all(second, "Invoice", final)
    assert [(r.id, r.deleted) for p in changes for r in p.records] == [("3", True)]


def test_tokens_never_reach_the_logs(connector, sandbox, read_all, capsys):
    """Access and refresh tokens used during a sync are masked in every log line."""
    read_all(connector, "Customer", Cursor())
    sandbox.oauth.expire_access_tokens()
    read_all(connector, "Item", Cursor())
    output = capsys.readouterr()
    tokens = list(sandbox.oauth.access_tokens) + list(sandbox.oauth.refresh_tokens)
    assert tokens
    for token in tokens:
        assert token not in output.out
        assert token not in output.err


def test_read_through_the_per_minute_limit_waits_and_completes(
    make_connector, sandbox, sleeps, read_all
):
    """Over the realm's per-minute budget the read waits 60 s on each 429 and lands everything."""
    sandbox.limits.requests_per_minute = 4
    conn = make_connector(page_size=5)
    original_sleep = conn.http.retry.sleep

    def sleep_and_advance(seconds):
        original_sleep(seconds)
        sandbox.advance(dt.timedelta(seconds=seconds))

    object.__setattr__(conn.http.retry, "sleep", sleep_and_advance)
    pages, _ = read_all(conn, "Customer", Cursor())
    assert len({r.id for p in pages for r in p.records}) == 40
    assert 60.0 in sleeps.calls
    assert sandbox.faults.request_count > 9


def test_dropped_connections_from_the_sandbox_are_retried(connector, sandbox, read_all):
    """A connection the sandbox cuts mid-answer is retried and the read completes."""
    from ledgerlink.connector.sandbox import Fault

    sandbox.faults.add(Fault(kind="drop", count=2, path_prefix="/v3/"))
    pages, _ = read_all(connector, "Item", Cursor())
    assert len([r for p in pages for r in p.records]) == 6


def test_a_write_ends_the_reuse_of_the_cdc_answer(connector, sandbox, read_all):
    """What a write changed (the invoice a payment pays) is read at once, not a minute later.

    Within ``cdc_reuse_seconds`` the streams of a cycle share one CDC answer; a payment posted
    through the same connection changes the invoice's balance, and a read after it must see the
    new balance instead of the answer from before the write.
    """
    _, cursor = read_all(connector, "Invoice", Cursor())
    pages, cursor = read_all(connector, "Invoice", cursor)  # caches a CDC answer
    assert _ids(pages) == []
    invoice = next(
        i for i in sandbox.company.table("Invoice").by_id() if float(i.get("Balance") or 0) > 0
    )
    (result,) = connector.write(
        [
            WriteOp(
                "pay-open-invoice",
                "Payment",
                WriteAction.CREATE,
                {
                    "CustomerRef": invoice["CustomerRef"],
                    "TotalAmt": invoice["Balance"],
                    "Line": [
                        {
                            "Amount": invoice["Balance"],
                            "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}],
                        }
                    ],
                },
            )
        ]
    )
    assert result.ok, result.error
    pages, _ = read_all(connector, "Invoice", cursor)
    (record,) = [r for p in pages for r in p.records]
    assert record.id == invoice["Id"]
    assert float(record.payload["Balance"]) == 0


def test_a_second_change_within_the_same_second_is_read(connector, sandbox, read_all):
    """QuickBooks stamps LastUpdatedTime in whole seconds: a record changed twice within one
    second (an invoice posted, then the payment applied to it) keeps the same stamp. The
    second version is still read (its SyncToken is newer), not dropped as already landed."""
    _, cursor = read_all(connector, "Customer", Cursor())
    sandbox.edit("Customer", "3", DisplayName="First Name")
    connector._cdc_cache = None
    pages, cursor = read_all(connector, "Customer", cursor)
    assert [(r.id, r.payload["DisplayName"]) for p in pages for r in p.records] == [
        ("3", "First Name")
    ]
    sandbox.edit("Customer", "3", DisplayName="Second Name")
    connector._cdc_cache = None
    pages, cursor = read_all(connector, "Customer", cursor)
    assert [(r.id, r.payload["DisplayName"]) for p in pages for r in p.records] == [
        ("3", "Second Name")
    ]
    connector._cdc_cache = None
    pages, _ = read_all(connector, "Customer", cursor)
    assert _ids(pages) == []
