"""Writing to QuickBooks against the sandbox: requestid, SyncToken, batch, escaping, limits."""

from __future__ import annotations

from ledgerlink_quickbooks import qbql
from ledgerlink_quickbooks.writes import requestid_for

from ledgerlink.connector.errors import (
    ConflictError,
    FatalError,
    RateLimitedError,
    RecordError,
    StaleVersionError,
)
from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.connector.sandbox import Fault


def _create(key, name, **extra):
    return WriteOp(key, "Customer", WriteAction.CREATE, {"DisplayName": name, **extra})


def test_create_returns_the_new_id_and_a_resend_does_not_duplicate(connector, sandbox):
    """Sending the same create twice (same key) yields one customer and the same id."""
    first = list(connector.write([_create("outbox-1", "Fresh Customer Ltd")]))
    again = list(connector.write([_create("outbox-1", "Fresh Customer Ltd")]))
    assert first[0].ok
    assert again[0].ok
    assert first[0].remote_id == again[0].remote_id
    answer = connector.query(qbql.select("Customer", ["DisplayName = 'Fresh Customer Ltd'"]))
    assert len(answer["QueryResponse"]["Customer"]) == 1


def test_long_idempotency_keys_become_stable_50_character_requestids():
    """Keys longer than 50 characters hash to the same short requestid every time."""
    key = "quickbooks:Invoice:create:" + "x" * 80
    assert requestid_for(key) == requestid_for(key)
    assert len(requestid_for(key)) <= 50
    assert requestid_for("short-key-1") == "short-key-1"
    assert requestid_for("a b") != "a b"


def test_sparse_update_changes_only_the_fields_sent(connector, sandbox):
    """A sparse update without a SyncToken fetches it and leaves other fields alone."""
    before = sandbox.company.read("Customer", "4")
    op = WriteOp("upd-4", "Customer", WriteAction.UPDATE, {"Notes": "VIP"}, remote_id="4")
    [result] = connector.write([op])
    assert result.ok, result.error
    after = sandbox.company.read("Customer", "4")
    assert after["Notes"] == "VIP"
    assert after["DisplayName"] == before["DisplayName"]
    assert int(after["SyncToken"]) == int(before["SyncToken"]) + 1


def test_stale_synctoken_refetches_and_reapplies_only_hub_fields(connector, sandbox):
    """A stale SyncToken is answered 5010; the connector refetches and re-applies its fields."""
    current = sandbox.company.read("Customer", "6")
    sandbox.edit("Customer", "6", Notes="edited by the bookkeeper")
    op = WriteOp(
        "upd-6",
        "Customer",
        WriteAction.UPDATE,
        {"SyncToken": current["SyncToken"], "PrimaryEmailAddr": {"Address": "ap@six.example"}},
        remote_id="6",
    )
    [result] = connector.write([op])
    assert result.ok, result.error
    after = sandbox.company.read("Customer", "6")
    assert after["PrimaryEmailAddr"] == {"Address": "ap@six.example"}
    assert after["Notes"] == "edited by the bookkeeper"


def test_stale_synctoken_twice_reports_stale_version(connector, sandbox, monkeypatch):
    """When the record changes again during the retry the op ends as StaleVersionError."""
    current = sandbox.company.read("Customer", "7")
    sandbox.edit("Customer", "7", Notes="one")
    original = connector.get_json

    def get_then_edit(path, **params):
        answer = original(path, **params)
        if path == "customer/7":
            sandbox.edit("Customer", "7", Notes="two")
        return answer

    monkeypatch.setattr(connector, "get_json", get_then_edit)
    op = WriteOp(
        "upd-7",
        "Customer",
        WriteAction.UPDATE,
        {"SyncToken": current["SyncToken"], "Notes": "hub"},
        remote_id="7",
    )
    [result] = connector.write([op])
    assert isinstance(result.error, StaleVersionError)
    assert result.error.vendor_code == "5010"
    assert sandbox.company.read("Customer", "7")["Notes"] == "two"


def _api_calls(sandbox):
    return [path for _, path in sandbox.faults.requests if path.startswith("/v3/")]


def test_batch_maps_partial_failures_back_to_their_ops(connector, sandbox):
    """One /batch call answers each op: good ones get ids, bad ones classified errors."""
    ops = [
        _create("b-1", "Batch One"),
        WriteOp(
            "b-2",
            "Invoice",
            WriteAction.CREATE,
            {
                "CustomerRef": {"value": "99999"},
                "Line": [
                    {
                        "Amount": 1,
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                    }
                ],
            },
        ),
        _create("b-3", "Batch Three"),
        _create("b-4", sandbox.company.read("Customer", "2")["DisplayName"]),
        WriteOp("b-5", "Customer", WriteAction.UPSERT, {"DisplayName": "x"}),
    ]
    sandbox.faults.reset_counts()
    results = list(connector.write(ops))
    assert [r.idempotency_key for r in results] == ["b-1", "b-2", "b-3", "b-4", "b-5"]
    assert results[0].ok
    assert results[2].ok
    assert results[0].remote_id != results[2].remote_id
    assert isinstance(results[1].error, RecordError)
    assert results[1].error.vendor_code == "2500"
    assert "Invalid Reference Id" in results[1].error.message
    assert isinstance(results[3].error, ConflictError)
    assert results[3].error.vendor_code == "6240"
    assert isinstance(results[4].error, FatalError)
    assert [path.rsplit("/", 1)[-1] for path in _api_calls(sandbox)] == ["batch"]


def test_batches_hold_at_most_thirty_operations(connector, sandbox):
    """Seventy creates go out as three /batch calls of at most 30."""
    ops = [_create(f"many-{i}", f"Many Customer {i}") for i in range(70)]
    sandbox.faults.reset_counts()
    results = list(connector.write(ops))
    assert all(r.ok for r in results)
    assert len({r.remote_id for r in results}) == 70
    assert len(_api_calls(sandbox)) == 3


def test_validation_fault_carries_the_detail_for_quarantine(connector):
    """A ValidationFault becomes a RecordError whose message holds QuickBooks' Detail."""
    op = WriteOp("bad-inv", "Invoice", WriteAction.CREATE, {"CustomerRef": {"value": "1"}})
    [result] = connector.write([op])
    assert isinstance(result.error, RecordError)
    assert "Required parameter Line is missing" in result.error.message
    assert result.error.field == "Line"


def test_customer_with_quotes_and_backslash_is_found_by_name(connector):
    """A name with quotes and a backslash round-trips through a WHERE clause."""
    name = 'Bob\'s "Best" \\ Co'
    [created] = connector.write([_create("bob", name)])
    assert created.ok, created.error
    answer = connector.query(qbql.select("Customer", [f"DisplayName = {qbql.quote(name)}"]))
    rows = answer["QueryResponse"]["Customer"]
    assert [r["Id"] for r in rows] == [created.remote_id]
    assert rows[0]["DisplayName"] == name


def test_throttled_write_waits_sixty_seconds_and_retries_with_the_same_requestid(
    connector, sandbox, sleeps
):
    """A 429 is retried after Intuit's 60 s wait and the customer is created once."""
    sandbox.faults.add(Fault(status=429, count=2, path_prefix="/v3/", method="POST"))
    [result] = connector.write([_create("throttled", "Throttled Customer")])
    assert result.ok, result.error
    assert sleeps.calls == [60.0, 60.0]
    answer = connector.query(qbql.select("Customer", ["DisplayName = 'Throttled Customer'"]))
    assert len(answer["QueryResponse"]["Customer"]) == 1


def test_persistent_throttling_reports_rate_limited_with_retry_after(connector, sandbox):
    """When throttling outlasts the retries the op fails as RateLimitedError(retry_after=60)."""
    sandbox.faults.add(Fault(status=429, path_prefix="/v3/", method="POST"))
    [result] = connector.write([_create("throttled-2", "Never Created")])
    assert isinstance(result.error, RateLimitedError)
    assert result.error.retry_after == 60.0


def test_sandbox_throttles_beyond_500_requests_a_minute(connector, sandbox):
    """The sandbox answers 429 in QuickBooks' format once a realm passes its minute budget."""
    sandbox.limits.requests_per_minute = 3
    for _ in range(3):
        connector.query(qbql.select("Item"))
    answer = connector.http.client.get(
        "query", params={"query": qbql.select("Item"), "minorversion": "75"}
    )
    assert answer.status_code == 429
    assert answer.json()["Fault"]["Error"][0]["code"] == "3001"


def test_delete_fetches_the_synctoken_and_cdc_reports_the_tombstone(connector, sandbox, read_all):
    """Deleting an invoice without a SyncToken looks it up, and CDC then reports the delete."""
    from ledgerlink.connector.protocol import Cursor

    _, cursor = read_all(connector, "Invoice", Cursor())
    ops = [
        WriteOp("del-1", "Invoice", WriteAction.DELETE, {}, remote_id="1"),
        WriteOp("del-2", "Invoice", WriteAction.DELETE, {}, remote_id="2"),
        WriteOp("del-c", "Customer", WriteAction.DELETE, {}, remote_id="2"),
    ]
    results = list(connector.write(ops))
    assert [r.ok for r in results] == [True, True, False]
    assert isinstance(results[2].error, FatalError)
    connector._cdc_cache = None
    pages, _ = read_all(connector, "Invoice", cursor)
    tombstones = sorted((r.id, r.deleted) for p in pages for r in p.records)
    assert tombstones == [("1", True), ("2", True)]
