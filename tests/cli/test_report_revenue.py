"""``ledgerlink report revenue``: bookings, billings, cash and recognised revenue from the store."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector.protocol import Record
from ledgerlink.store import Store
from ledgerlink.store.models import Customer, CustomerLink

NOW = datetime(2026, 3, 20, tzinfo=UTC)


def _unix(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


def _invoice(
    invoice_id: str,
    customer: str,
    currency: str,
    amount: int,
    finalized: int,
    period: tuple[int, int] | None,
    status: str = "paid",
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": f"il_{invoice_id}",
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": "1 x Pro",
        "quantity": 1,
        "proration": False,
        "price": {"id": "price_pro", "product": "prod_pro", "unit_amount": amount},
    }
    if period is not None:
        line["period"] = {"start": period[0], "end": period[1]}
    return {
        "id": invoice_id,
        "object": "invoice",
        "created": finalized,
        "customer": customer,
        "currency": currency,
        "status": status,
        "number": f"N-{invoice_id}",
        "lines": {"object": "list", "data": [line], "has_more": False},
        "subtotal": amount,
        "tax": None,
        "total": amount,
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount,
        "status_transitions": {"finalized_at": None if status == "draft" else finalized},
        "metadata": {},
    }


def _land_dataset(store: Store) -> None:
    """One EUR deal for a linked customer (quote, invoice, charge, refund, credit note) and a
    USD invoice for an unlinked Stripe customer; plus a draft that must not count."""
    store.land(
        "salesforce",
        [
            Record(
                "Quote",
                "0Q0000000000001",
                {
                    "Id": "0Q0000000000001",
                    "AccountId": "001000000000001",
                    "OpportunityId": "006000000000001",
                    "Name": "Pro annual",
                    "Status": "Accepted",
                    "CurrencyIsoCode": "EUR",
                    "Subtotal": 1000.0,
                    "Tax": 200.0,
                    "GrandTotal": 1200.0,
                    "CreatedDate": "2026-01-02T10:00:00.000+0000",
                    "LastModifiedDate": "2026-01-15T09:00:00.000+0000",
                },
            ),
            Record(
                "Quote",
                "0Q0000000000002",
                {
                    "Id": "0Q0000000000002",
                    "AccountId": "001000000000001",
                    "Status": "Draft",
                    "CurrencyIsoCode": "EUR",
                    "GrandTotal": 500.0,
                    "CreatedDate": "2026-01-03T10:00:00.000+0000",
                    "LastModifiedDate": "2026-01-03T10:00:00.000+0000",
                },
            ),
        ],
        now=NOW,
    )
    jan10, feb10 = _unix(2026, 1, 10), _unix(2026, 2, 10)
    store.land(
        "stripe",
        [
            # 310.00 EUR for 10 Jan - 10 Feb: 22 days in January, 9 in February.
            Record(
                "invoices", "in_1", _invoice("in_1", "cus_1", "eur", 31_000, jan10, (jan10, feb10))
            ),
            Record(
                "invoices",
                "in_2",
                _invoice("in_2", "cus_2", "usd", 10_000, _unix(2026, 2, 1), None, "open"),
            ),
            Record(
                "invoices",
                "in_3",
                _invoice("in_3", "cus_1", "eur", 99_900, jan10, (jan10, feb10), "draft"),
            ),
            Record(
                "charges",
                "ch_1",
                {
                    "id": "ch_1",
                    "object": "charge",
                    "amount": 31_000,
                    "currency": "eur",
                    "customer": "cus_1",
                    "invoice": "in_1",
                    "status": "succeeded",
                    "created": jan10,
                    "balance_transaction": "txn_1",
                    "metadata": {},
                },
            ),
            Record(
                "refunds",
                "re_1",
                {
                    "id": "re_1",
                    "object": "refund",
                    "amount": 5_000,
                    "currency": "eur",
                    "charge": "ch_1",
                    "status": "succeeded",
                    "created": _unix(2026, 2, 3),
                    "metadata": {},
                },
            ),
            Record(
                "credit_notes",
                "cn_1",
                {
                    "id": "cn_1",
                    "object": "credit_note",
                    "customer": "cus_1",
                    "invoice": "in_1",
                    "currency": "eur",
                    "status": "issued",
                    "number": "N-in_1-CN-01",
                    "subtotal": 1_000,
                    "total": 1_000,
                    "effective_at": _unix(2026, 2, 5),
                    "created": _unix(2026, 2, 5),
                    "lines": {
                        "object": "list",
                        "data": [{"id": "cnli_1", "amount": 1_000, "quantity": 1}],
                    },
                    "metadata": {},
                },
            ),
        ],
        now=NOW,
    )
    with store.engine.begin() as conn:
        conn.execute(
            insert(Customer.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": "cust-1",
                    "display_name": "Acme",
                    "fields": {},
                    "lineage": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                    "version": 1,
                }
            ],
        )
        conn.execute(
            insert(CustomerLink.__table__),  # type: ignore[attr-defined]
            [
                {
                    "system": system,
                    "object": obj,
                    "external_id": ext,
                    "customer_id": "cust-1",
                    "score": 1.0,
                    "method": "xref",
                    "status": "linked",
                    "reasons": [],
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for system, obj, ext in (
                    ("salesforce", "Account", "001000000000001"),
                    ("stripe", "customers", "cus_1"),
                )
            ],
        )


def run(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "ledgerlink.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(config), "report", "revenue", *args])
    return result.exit_code, result.output


def _csv(output: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = csv.DictReader(io.StringIO(output))
    return {(row["month"], row["currency"]): row for row in rows}


def test_revenue_side_by_side_per_month_and_currency(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """Bookings, billings, cash and recognised revenue match the figures worked out by hand."""
    _land_dataset(store)
    code, output = run(
        database_url, tmp_path, "--from", "2026-01", "--to", "2026-03", "--format", "json"
    )
    assert code == 0, output
    rows = json.loads(output)["rows"]
    got = {
        (r["month"], r["currency"]): tuple(
            r[k]["amount"] for k in ("bookings", "billings", "cash", "recognised")
        )
        for r in rows
    }
    # EUR: quote 1200.00 less 200.00 tax booked in January (accepted, last changed 15 Jan);
    # invoice 310.00 billed 10 Jan, recognised 310.00 x 22/31 = 220.00 in January and
    # 310.00 x 9/31 = 90.00 in February; the 10.00 credit note takes 10.00 off February's
    # billings and revenue; the 50.00 refund takes cash down in February.
    assert got[("2026-01", "EUR")] == (120_000 - 20_000, 31_000, 31_000, 22_000)
    assert got[("2026-02", "EUR")] == (0, -1_000, -5_000, 9_000 - 1_000)
    assert got[("2026-03", "EUR")] == (0, 0, 0, 0)
    # USD: an open invoice without a service period is billed and recognised when issued.
    assert got[("2026-01", "USD")] == (0, 0, 0, 0)
    assert got[("2026-02", "USD")] == (0, 10_000, 0, 10_000)
    assert set(got) == {(m, c) for m in ("2026-01", "2026-02", "2026-03") for c in ("EUR", "USD")}


def test_customer_and_currency_filters(store: Store, database_url: str, tmp_path: Path) -> None:
    """--customer takes a golden customer id or an unlinked record's key; --currency keeps one currency."""
    _land_dataset(store)
    code, output = run(
        database_url,
        tmp_path,
        "--from",
        "2026-01",
        "--to",
        "2026-02",
        "--customer",
        "cust-1",
        "--format",
        "csv",
    )
    assert code == 0, output
    rows = _csv(output)
    assert rows[("2026-01", "EUR")]["bookings"] == "1000.00"
    assert rows[("2026-01", "EUR")]["recognised"] == "220.00"
    assert rows[("2026-02", "EUR")]["cash"] == "-50.00"
    assert not any(
        currency == "USD" and row["billings"] != "0.00" for (_, currency), row in rows.items()
    )

    code, output = run(
        database_url,
        tmp_path,
        "--from",
        "2026-02",
        "--to",
        "2026-02",
        "--customer",
        "stripe/customers/cus_2",
        "--currency",
        "usd",
        "--format",
        "csv",
    )
    assert code == 0, output
    rows = _csv(output)
    assert list(rows) == [("2026-02", "USD")]
    assert rows[("2026-02", "USD")]["billings"] == "100.00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-13"), "YYYY-MM"),
        (("--from", "January"), "YYYY-MM"),
        (("--from", "2026-03", "--to", "2026-01"), "--from is after --to"),
        (("--currency", "euro"), "ISO 4217"),
        (("--format", "xlsx"), "table, csv or json"),
    ],
)
def test_bad_options_exit_2(
    database_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """A bad month, currency or format is a usage error with a message, not a traceback."""
    code, output = run(database_url, tmp_path, *args)
    assert code == 2
    assert message in output


def test_empty_store_prints_an_empty_table_with_a_note(database_url: str, tmp_path: Path) -> None:
    """With nothing landed the report is an empty table that says why, and exits 0."""
    code, output = run(database_url, tmp_path, "--from", "2026-01", "--to", "2026-02")
    assert code == 0, output
    assert "bookings" in output
    assert "No revenue: the store holds no quotes, invoices or payments yet" in output
    code, output = run(
        database_url, tmp_path, "--from", "2026-01", "--to", "2026-02", "--format", "json"
    )
    assert code == 0
    assert json.loads(output)["rows"] == []
