"""The ops CLI: match run and export, conflicts, decisions, customer show."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ledgerlink.cli.app import app
from ledgerlink.cli.match import spreadsheet_safe
from ledgerlink.store import Store

from .conftest import (
    NOW,
    QB_ACME,
    SF_ACME,
    SF_ZEPHYR,
    STRIPE_ACME,
    land_parties,
    stripe_customer,
)

STALE = "stripe:customers:cus_stale"


@pytest.fixture
def cli(database_url: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the CLI on the test database, with the parties landed and a stale xref."""
    land_parties(store)
    store.land(
        "stripe",
        [
            stripe_customer(
                "cus_stale",
                "Quokka Trading Ltd",
                email="accounts@quokka.co.uk",
                address={"country": "GB", "postal_code": "LS1 4AP"},
                metadata={"salesforce_account_id": "001Hs00000ZEPH1AAA"},
            ),
            stripe_customer("=cmd|' /C calc'!A0", "-2+3 Formula Co", email="x@formula.example"),
        ],
        now=NOW,
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"LEDGERLINK_DATABASE__URL": database_url, "COLUMNS": "250", "LEDGERLINK_ACTOR": "ops"}

    def invoke(*args: str, keys: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=keys)

    return invoke


def _conflict_id(cli) -> str:  # type: ignore[no-untyped-def]
    result = cli("conflicts", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    (item,) = [c for c in json.loads(result.output) if STALE in (c["a"], c["b"])]
    return str(item["id"])


def test_match_run_prints_the_summary(cli) -> None:  # type: ignore[no-untyped-def]
    """`match run` matches the store and prints customers, links and the review queue size."""
    result = cli("match", "run")
    assert result.exit_code == 0, result.output
    assert "customers" in result.output
    assert "review queue" in result.output
    assert "automatic links" in result.output


def test_stale_cross_reference_waits_in_the_review_queue(cli) -> None:  # type: ignore[no-untyped-def]
    """A Stripe customer naming an unrelated Account is listed for review, not linked."""
    cli("match", "run")
    result = cli("conflicts", "list")
    assert result.exit_code == 0, result.output
    assert "contradicted-xref" in result.output
    assert _conflict_id(cli).startswith("rv-")


def test_conflicts_show_prints_both_records_and_the_evidence(cli) -> None:  # type: ignore[no-untyped-def]
    """`conflicts show` prints the pair side by side with normalized values and weights."""
    cli("match", "run")
    result = cli("conflicts", "show", _conflict_id(cli))
    assert result.exit_code == 0, result.output
    assert "Quokka Trading Ltd" in result.output
    assert "Zephyr Tools GmbH" in result.output
    assert "(normalized)" in result.output
    assert "evidence" in result.output


def test_unknown_conflict_and_customer_exit_1(cli) -> None:  # type: ignore[no-untyped-def]
    """Unknown conflict ids, customer ids and references exit with status 1 and a message."""
    cli("match", "run")
    for args in (
        ("conflicts", "show", "rv-0000000000"),
        ("customer", "show", "cus_nobody"),
        ("customer", "show", "stripe:customers:cus_nobody"),
        ("conflicts", "revoke", "999"),
    ):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "error" in result.output


def test_decisions_from_the_cli_apply_at_the_next_run(cli) -> None:  # type: ignore[no-untyped-def]
    """`conflicts never-link` is recorded, listed, and keeps the pair apart after `match run`."""
    cli("match", "run")
    result = cli("conflicts", "never-link", STALE, SF_ZEPHYR, "--reason", "different company")
    assert result.exit_code == 0, result.output
    assert "decision 1" in result.output
    listed = cli("conflicts", "decisions")
    assert "never-link" in listed.output
    assert "ops" in listed.output
    cli("match", "run")
    assert STALE not in cli("conflicts", "list", "--format", "csv").output


def test_contradicting_decision_exits_1_and_records_nothing(cli) -> None:  # type: ignore[no-untyped-def]
    """A never-link between records that two links join is refused with the reason."""
    assert cli("conflicts", "link", SF_ACME, QB_ACME, "--reason", "same").exit_code == 0
    assert cli("conflicts", "link", QB_ACME, STRIPE_ACME, "--reason", "same").exit_code == 0
    result = cli("conflicts", "never-link", SF_ACME, STRIPE_ACME, "--reason", "no")
    assert result.exit_code == 1
    assert "refused" in result.output
    assert "never-link" not in cli("conflicts", "decisions").output


def test_bad_reference_and_missing_reason_exit_1(cli) -> None:  # type: ignore[no-untyped-def]
    """A malformed reference or an empty reason is refused before anything is stored."""
    assert cli("conflicts", "split", "stripe-cus_1", SF_ACME, "--reason", "x").exit_code == 1
    assert cli("conflicts", "split", STRIPE_ACME, SF_ACME, "--reason", " ").exit_code == 1
    assert "no decisions" in cli("conflicts", "decisions").output


def test_revoke_from_the_cli(cli) -> None:  # type: ignore[no-untyped-def]
    """`conflicts revoke` withdraws a decision and says so; a second revoke exits 1."""
    cli("conflicts", "split", SF_ACME, QB_ACME, "--reason", "reseller")
    result = cli("conflicts", "revoke", "1", "--reason", "was wrong")
    assert result.exit_code == 0, result.output
    assert "revoked" in result.output
    assert cli("conflicts", "revoke", "1").exit_code == 1


def test_customer_show_by_id_or_record(cli) -> None:  # type: ignore[no-untyped-def]
    """`customer show` by a record prints the golden fields, lineage, records and links."""
    cli("match", "run")
    result = cli("customer", "show", QB_ACME)
    assert result.exit_code == 0, result.output
    for text in ("Acme Analytics Inc", SF_ACME, STRIPE_ACME, QB_ACME, "xref", "probabilistic"):
        assert text in result.output
    customer_id = result.output.split("(", 1)[1].split(",", 1)[0]
    again = cli("customer", "show", customer_id)
    assert again.exit_code == 0
    assert "golden record" in again.output


def test_export_csv_is_one_safe_row_per_record(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The CSV export has one row per record and neutralises cells that look like formulas."""
    cli("match", "run")
    target = tmp_path / "links.csv"
    result = cli("match", "export", str(target), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(target.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 8
    assert list(rows[0]) == [
        "record_id",
        "system",
        "object",
        "cluster_id",
        "customer_id",
        "link_method",
        "score",
    ]
    ids = {row["record_id"] for row in rows}
    assert "'=cmd|' /C calc'!A0" in ids
    by_id = {row["record_id"]: row for row in rows}
    assert by_id["cus_acme"]["link_method"] == "xref"
    assert by_id["cus_acme"]["customer_id"] == by_id["7"]["customer_id"]
    assert by_id["cus_umbra"]["link_method"] == ""


def test_export_json(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The JSON export holds the same rows, values unescaped."""
    cli("match", "run")
    target = tmp_path / "links.json"
    assert cli("match", "export", str(target), "--format", "json").exit_code == 0
    rows = json.loads(target.read_text(encoding="utf-8"))
    assert len(rows) == 8
    assert "=cmd|' /C calc'!A0" in {row["record_id"] for row in rows}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1 415", "'+1 415"),
        ("-5", "'-5"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Acme = good", "Acme = good"),
        (None, ""),
        (0.5, "0.5"),
    ],
)
def test_spreadsheet_safe_neutralises_formula_starts(value: object, expected: str) -> None:
    """Cells starting with =, +, -, @, tab or CR get a leading quote; others stay as they are."""
    assert spreadsheet_safe(value) == expected


def test_conflicts_resolve_decides_a_pair_by_its_id(cli) -> None:  # type: ignore[no-untyped-def]
    """`conflicts resolve ID --never-link` records the decision about that conflict's pair."""
    cli("match", "run")
    conflict = _conflict_id(cli)
    assert cli("conflicts", "resolve", conflict, "--reason", "x").exit_code == 1
    result = cli("conflicts", "resolve", conflict, "--never-link", "--reason", "not them")
    assert result.exit_code == 0, result.output
    assert conflict in cli("conflicts", "list", "--status", "decided").output
    assert conflict not in cli("conflicts", "list", "--status", "open").output
    assert f"never-link {STALE}" in result.output or "never-link salesforce" in result.output
    cli("match", "run")
    assert conflict not in cli("conflicts", "list", "--format", "json").output


def test_conflicts_review_is_driven_by_key_presses(cli) -> None:  # type: ignore[no-untyped-def]
    """In `conflicts review`, unknown keys are ignored, n then a reason records a never-link."""
    cli("match", "run")
    result = cli("conflicts", "review", keys="x" + "n" + "stale metadata\n" + "q" * 5)
    assert result.exit_code == 0, result.output
    assert "1 of" in result.output
    assert "1 decided" in result.output
    listed = cli("conflicts", "decisions")
    assert "stale metadata" in listed.output
    assert STALE in listed.output


def test_conflicts_review_quits_without_deciding(cli) -> None:  # type: ignore[no-untyped-def]
    """Pressing q leaves the queue and records nothing."""
    cli("match", "run")
    result = cli("conflicts", "review", keys="q")
    assert result.exit_code == 0, result.output
    assert "0 decided" in result.output
    assert "no decisions" in cli("conflicts", "decisions").output


def test_conflicts_list_filters_by_age(cli) -> None:  # type: ignore[no-untyped-def]
    """--older-than hides pairs that have waited less than the given days."""
    cli("match", "run")
    assert "rv-" in cli("conflicts", "list").output
    assert "rv-" not in cli("conflicts", "list", "--older-than", "1").output


def test_customer_show_by_email_or_name(cli) -> None:  # type: ignore[no-untyped-def]
    """--email and --name find a customer; several name matches are listed; none exits 1."""
    cli("match", "run")
    by_email = cli("customer", "show", "--email", "BILLING@acme-analytics.com")
    assert by_email.exit_code == 0, by_email.output
    assert "golden record" in by_email.output
    assert "Acme Analytics Inc" in by_email.output
    by_name = cli("customer", "show", "--name", "acme")
    assert "golden record" in by_name.output
    several = cli("customer", "show", "--name", "t")
    assert several.exit_code == 0
    assert "customers found" in several.output
    assert cli("customer", "show", "--email", "nobody@example.com").exit_code == 1
    assert cli("customer", "show").exit_code == 1
