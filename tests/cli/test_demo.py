"""`ledgerlink demo`: one story across the three sandboxes, leaving a database the CLI explores."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner, Result

from ledgerlink.cli import app
from ledgerlink.cli._common import out
from ledgerlink.connector.roster import Roster, salesforce_account_id
from ledgerlink.store.models import CustomerLink, LinkStatus, Outbox, OutboxStatus, SourceRecord

_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One small demo run, shared by the tests of this module (it takes several seconds)."""
    directory = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        # A wide console keeps the suggested commands on one line each.
        patch.setattr(out, "_width", 400)
        result = CliRunner().invoke(
            app, ["demo", "--directory", str(directory), "--size", "40", "--months", "2"]
        )
    return directory, result


def _try_next(output: str) -> list[list[str]]:
    """The commands under "Try next", as argument lists (without the program name)."""
    tail = output.split("Try next", 1)[1]
    return [
        shlex.split(line)[1:]
        for line in tail.splitlines()
        if line.strip().startswith("ledgerlink ")
    ]


def test_demo_runs_to_completion_and_reports_every_system(demo_run: tuple[Path, Result]) -> None:
    """The demo exits 0 and prints the per-system summary, the MRR movements and what to try."""
    directory, result = demo_run
    assert result.exit_code == 0, result.output
    for system in ("salesforce", "stripe", "quickbooks"):
        assert system in result.output
    assert "queued for review" in result.output
    assert "MRR movements" in result.output
    assert "cycle 3 (month 2)" in result.output
    assert "test-clock story stopped" not in result.output
    assert (directory / "demo.db").is_file()
    assert (directory / "ledgerlink.toml").is_file()


def test_demo_database_links_customers_across_systems(demo_run: tuple[Path, Result]) -> None:
    """Customers end up linked across two and three systems, and the outbox sent writes."""
    directory, result = demo_run
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{directory / 'demo.db'}")
    try:
        with engine.connect() as conn:
            systems_of: dict[str, set[str]] = {}
            for customer_id, system in conn.execute(
                select(_LINK.c.customer_id, _LINK.c.system).where(
                    _LINK.c.status == LinkStatus.LINKED.value
                )
            ):
                systems_of.setdefault(customer_id, set()).add(system)
            spread = Counter(len(systems) for systems in systems_of.values())
            sent = conn.execute(
                select(func.count()).where(_OUTBOX.c.status == OutboxStatus.DONE.value)
            ).scalar_one()
            clocked_subscriptions = conn.execute(
                select(func.count()).where(
                    _SOURCE.c.system == "stripe",
                    _SOURCE.c.object == "subscriptions",
                    _SOURCE.c.payload["test_clock"].as_string().is_not(None),
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert spread[3] > 0
    assert spread[2] > 0
    assert sent > 0
    assert clocked_subscriptions > 0


def test_demo_try_next_commands_run_on_its_database(demo_run: tuple[Path, Result]) -> None:
    """Every suggested command runs against the demo's database; `report mrr` shows revenue."""
    _, result = demo_run
    assert result.exit_code == 0, result.output
    commands = _try_next(result.output)
    names = {" ".join(c[2:4]) for c in commands}
    assert {"conflicts review", "customer show", "report mrr"} <= names
    runner = CliRunner()
    for command in commands:
        ran = runner.invoke(app, command, input="q\n")
        assert ran.exit_code == 0, (command, ran.output)
        if command[2:4] == ["report", "mrr"]:
            csv = runner.invoke(app, [*command, "--format", "csv"])
            rows = [line for line in csv.output.splitlines()[1:] if line.strip()]
            assert rows, csv.output


def test_roster_cross_references_name_salesforce_accounts() -> None:
    """Stripe rows of a roster name the Salesforce Accounts of the same roster, by their Id."""
    roster = Roster(companies=60, seed=3)
    accounts = {row["Id"] for row in roster.rows("salesforce")}
    named = [
        row["metadata"]["salesforce_account_id"]
        for row in roster.rows("stripe")
        if row["metadata"].get("salesforce_account_id")
    ]
    assert named
    assert set(named) <= accounts
    assert [row["Id"] for row in roster.rows("salesforce")][:2] == [
        salesforce_account_id(0),
        salesforce_account_id(1),
    ]
