"""Writes to the Stripe sandbox: idempotent creates, crash-retries, quotes to invoices."""

from __future__ import annotations

from typing import Any

import httpx
from ledgerlink_stripe.sandbox import StripeSandbox

from ledgerlink.connector.errors import FatalError, RecordError
from ledgerlink.connector.protocol import WriteAction, WriteOp


def _count(sandbox: StripeSandbox, path: str, **params: Any) -> int:
    with httpx.Client(
        base_url=sandbox.base_url, headers={"authorization": f"Bearer {sandbox.api_key}"}
    ) as http:
        data = http.get(path, params={"limit": 100, **params}).json()["data"]
    return len(data)


def test_customer_metadata_carries_golden_and_salesforce_ids(connector: Any) -> None:
    """A created customer's metadata holds the golden customer id and the Salesforce Account Id."""
    op = WriteOp(
        "out-1",
        "customers",
        WriteAction.CREATE,
        {
            "name": "Acme",
            "email": "ap@acme.example",
            "golden_customer_id": "gc_42",
            "salesforce_account_id": "001000000000042",
        },
    )
    result = next(iter(connector.write([op])))
    assert result.ok
    assert result.remote_id.startswith("cus_")
    assert result.response["metadata"] == {
        "ledgerlink_customer_id": "gc_42",
        "salesforce_account_id": "001000000000042",
    }


def test_write_retried_after_lost_response_creates_one_customer(
    sandbox: StripeSandbox, connector: Any
) -> None:
    """A create whose response is lost is retried with the same key and makes one customer."""
    before = _count(sandbox, "/v1/customers", email="crash@acme.example")
    sandbox.lose_responses.count = 1
    op = WriteOp(
        "out-crash",
        "customers",
        WriteAction.CREATE,
        {"name": "Crash Co", "email": "crash@acme.example"},
    )
    result = next(iter(connector.write([op])))
    assert sandbox.lose_responses.lost == 1
    assert result.ok
    assert result.replayed
    assert _count(sandbox, "/v1/customers", email="crash@acme.example") == before + 1


def test_rerun_after_process_crash_replays_instead_of_duplicating(
    sandbox: StripeSandbox, connector: Any
) -> None:
    """Sending an outbox row again (the hub crashed before recording) returns the same object."""
    op = WriteOp("out-7", "customers", WriteAction.CREATE, {"name": "Twice Ltd"})
    first = next(iter(connector.write([op])))
    second = next(iter(connector.write([op])))
    assert second.remote_id == first.remote_id
    assert second.replayed


def test_reused_key_with_other_params_is_fatal(connector: Any) -> None:
    """Reusing an outbox key for different parameters is a FatalError, not a retry."""
    connector_ops = [
        WriteOp("dup", "customers", WriteAction.CREATE, {"name": "A"}),
        WriteOp("dup", "customers", WriteAction.CREATE, {"name": "B"}),
    ]
    results = list(connector.write(connector_ops))
    assert results[0].ok
    assert isinstance(results[1].error, FatalError)
    assert results[1].error.vendor_code == "idempotency_error"


def test_update_customer_changes_fields(connector: Any) -> None:
    """An update sends the fields to the customer named by remote_id."""
    created = next(
        iter(connector.write([WriteOp("c-1", "customers", WriteAction.CREATE, {"name": "Old"})]))
    )
    updated = next(
        iter(
            connector.write(
                [
                    WriteOp(
                        "c-2",
                        "customers",
                        WriteAction.UPDATE,
                        {"name": "New"},
                        remote_id=created.remote_id,
                    )
                ]
            )
        )
    )
    assert updated.response["name"] == "New"
    assert updated.remote_id == created.remote_id


def test_invoice_from_quote_is_finalized_once_even_after_a_lost_response(
    sandbox: StripeSandbox, connector: Any
) -> None:
    """A quote becomes one finalized invoice with its lines, even when a response is lost."""
    customer = next(
        iter(
            connector.write(
                [WriteOp("q-cus", "customers", WriteAction.CREATE, {"name": "Quote Co"})]
            )
        )
    )
    quote = {
        "customer": customer.remote_id,
        "currency": "eur",
        "collection_method": "send_invoice",
        "days_until_due": 30,
        "metadata": {"salesforce_quote_id": "0Q0000000000001"},
        "lines": [
            {"unit_amount": 120_000, "quantity": 3, "description": "Pro seats"},
            {"unit_amount": 50_000, "quantity": 1, "description": "Onboarding"},
        ],
    }
    sandbox.lose_responses.count = 1
    op = WriteOp("quote-1", "invoices", WriteAction.CREATE, quote)
    result = next(iter(connector.write([op])))
    assert result.ok, result.error
    invoice = result.response
    assert invoice["status"] == "open"
    assert invoice["total"] == 410_000
    assert [line["amount"] for line in invoice["lines"]["data"]] == [360_000, 50_000]
    again = next(iter(connector.write([op])))
    assert again.remote_id == result.remote_id
    assert _count(sandbox, "/v1/invoices", customer=customer.remote_id) == 1


def test_subscription_create_with_bad_price_is_a_record_error(connector: Any) -> None:
    """A subscription on an unknown price is quarantined as a RecordError with Stripe's code."""
    customer = next(
        iter(
            connector.write([WriteOp("s-cus", "customers", WriteAction.CREATE, {"name": "Sub Co"})])
        )
    )
    op = WriteOp(
        "s-1",
        "subscriptions",
        WriteAction.CREATE,
        {"customer": customer.remote_id, "items": [{"price": "price_nope"}]},
    )
    result = next(iter(connector.write([op])))
    assert isinstance(result.error, RecordError)
    assert result.error.vendor_code == "resource_missing"


def test_unsupported_write_is_a_record_error(connector: Any) -> None:
    """Deleting a payout is not something the connector writes: RecordError, no call."""
    result = next(iter(connector.write([WriteOp("x", "payouts", WriteAction.DELETE, {})])))
    assert isinstance(result.error, RecordError)
