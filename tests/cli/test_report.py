"""Tests of `ledgerlink report` on Stripe data pulled from the sandbox into the store."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.store import Store, create_engine_for, upgrade
from ledgerlink.sync import pull
from ledgerlink.sync.runtime import UnconfiguredSecretStore


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    engine = create_engine_for(url)
    upgrade(engine)
    plugin = load_plugin("stripe")
    sandbox = plugin.start_sandbox(SandboxOptions(seed=3, size=40))
    try:
        connector = plugin.connect(
            sandbox.connector_settings(), ConnectorContext(secrets=UnconfiguredSecretStore())
        )
        pull(Store(engine), connector, ["subscriptions", "invoices"])
        connector.close()
    finally:
        sandbox.stop()
        engine.dispose()
    return url


def run(database: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "ledgerlink.toml"
    config.write_text(f'[database]\nurl = "{database}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(config), "report", *args])
    return result.exit_code, result.output


def test_movements_reconcile_opening_to_closing(database: str, tmp_path: Path) -> None:
    """Every month's totals satisfy opening + new + expansion - contraction - churn + reactivation = closing."""
    code, output = run(database, tmp_path, "movements", "--from", "2025-12", "--format", "csv")
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output.split("\n\n")[0])))
    assert rows
    closing_seen = False
    for row in rows:
        amounts = {
            k: Decimal(row[k])
            for k in (
                "opening",
                "new",
                "expansion",
                "contraction",
                "churn",
                "reactivation",
                "closing",
            )
        }
        assert (
            amounts["opening"]
            + amounts["new"]
            + amounts["expansion"]
            - amounts["contraction"]
            - amounts["churn"]
            + amounts["reactivation"]
            == amounts["closing"]
        ), row
        closing_seen = closing_seen or amounts["closing"] > 0
    assert closing_seen


def test_mrr_has_a_total_per_month_and_currency(database: str, tmp_path: Path) -> None:
    """`report mrr` lists customers and a total row per month and currency, with ARR = 12 x MRR."""
    code, output = run(
        database, tmp_path, "mrr", "--from", "2026-10", "--to", "2026-11", "--format", "csv"
    )
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output.split("\n\n")[0])))
    totals = [r for r in rows if r["customer"] == "(total)"]
    assert {r["month"] for r in totals} == {"2026-10", "2026-11"}
    for row in rows:
        assert Decimal(row["arr"]) == 12 * Decimal(row["mrr"])


def test_bad_month_is_a_usage_error(database: str, tmp_path: Path) -> None:
    """A month that is not YYYY-MM exits 2 with a clear message."""
    code, output = run(database, tmp_path, "mrr", "--from", "October")
    assert code == 2
    assert "YYYY-MM" in output
