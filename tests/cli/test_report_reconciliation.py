"""``ledgerlink report reconciliation``: payouts against what was posted through clearing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector.protocol import Record, WriteAction, WriteOp
from ledgerlink.store import Store
from ledgerlink.store.models import Outbox
from ledgerlink.sync.ledger import DOCUMENT_ENTITY, tie_payout
from ledgerlink.sync.outbox import PlannedWrite, enqueue

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
CREATED = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
CLEARING = "3"


def _txn(txn_id: str, source: str, kind: str, amount: int, fee: int) -> dict[str, Any]:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "created": CREATED,
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "currency": "usd",
        "source": source,
        "type": kind,
        "reporting_category": kind,
        "exchange_rate": None,
    }


def _posted(store: Store, stripe_id: str, obj: str, payload: dict[str, Any]) -> None:
    op = WriteOp(f"test-{stripe_id}-{obj}", obj, WriteAction.CREATE, payload)
    with store.engine.begin() as conn:
        enqueue(conn, [PlannedWrite("quickbooks", op, DOCUMENT_ENTITY, stripe_id)], now=NOW)
        conn.execute(
            update(Outbox.__table__)  # type: ignore[attr-defined]
            .where(Outbox.__table__.c.idempotency_key == op.idempotency_key)  # type: ignore[attr-defined]
            .values(status="done", remote_id="99")
        )


def _books(store: Store, payout_amount: int) -> None:
    """A 100.00 charge with a 3.20 fee, paid out as ``payout_amount``, all posted."""
    charge = _txn("txn_ch", "ch_1", "charge", 10_000, 320)
    payout = {
        "id": "po_1",
        "object": "payout",
        "created": CREATED + 60,
        "amount": payout_amount,
        "currency": "usd",
        "status": "paid",
        "balance_transaction": "txn_po",
    }
    store.land(
        "stripe",
        [
            Record("balance_transactions", "txn_ch", charge),
            Record("payouts", "po_1", payout),
        ],
        now=NOW,
    )
    store.land(
        "quickbooks",
        [Record("Account", CLEARING, {"Id": CLEARING, "Name": "Stripe Clearing"})],
        now=NOW,
    )
    tie_payout(store, "po_1", [charge], now=NOW)
    _posted(
        store,
        "ch_1",
        "Payment",
        {"TotalAmt": 100, "DepositToAccountRef": {"value": CLEARING}},
    )
    fee_line = {
        "Amount": 3.2,
        "DetailType": "JournalEntryLineDetail",
        "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": CLEARING}},
    }
    _posted(store, "txn_ch", "JournalEntry", {"Line": [fee_line]})
    deposit_line = {
        "Amount": payout_amount / 100,
        "DetailType": "DepositLineDetail",
        "DepositLineDetail": {"AccountRef": {"value": CLEARING}},
    }
    _posted(
        store, "po_1", "Deposit", {"DepositToAccountRef": {"value": "2"}, "Line": [deposit_line]}
    )


def run(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "ledgerlink.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(config), "report", "reconciliation", *args])
    return result.exit_code, result.output


def test_a_matching_payout_is_reconciled(store: Store, database_url: str, tmp_path: Path) -> None:
    """A payout equal to charge minus fee, all posted, shows zero difference in JSON."""
    _books(store, 9_680)
    code, output = run(database_url, tmp_path, "--format", "json")
    assert code == 0, output
    (row,) = json.loads(output)["rows"]
    assert row["payout"] == "po_1"
    assert row["status"] == "reconciled"
    assert row["tie"] == "stripe"
    assert row["transactions"] == 1
    assert row["difference"] == {"amount": 0, "currency": "USD"}


def test_a_short_payout_is_flagged_with_its_difference(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """A payout that differs from the posted clearing movements is a difference, in CSV."""
    _books(store, 9_700)
    code, output = run(database_url, tmp_path, "--format", "csv", "--from", "2026-11-01")
    assert code == 0, output
    header, row = output.strip().splitlines()
    assert header.startswith("payout,created,currency,expected,posted,difference")
    assert row.startswith("po_1,")
    assert row.endswith(",difference")
    assert "0.20" in row


def test_the_period_filters_payouts(store: Store, database_url: str, tmp_path: Path) -> None:
    """Payouts outside --from/--to are left out."""
    _books(store, 9_680)
    code, output = run(database_url, tmp_path, "--format", "json", "--to", "2026-11-09")
    assert code == 0, output
    assert json.loads(output)["rows"] == []


def test_a_bad_day_is_a_usage_error(database_url: str, tmp_path: Path) -> None:
    """A --from that is not a day exits 2 with a message, not a traceback."""
    code, output = run(database_url, tmp_path, "--from", "November")
    assert code == 2
    assert "YYYY-MM-DD" in output
