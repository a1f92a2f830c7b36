"""`ledgerlink sync run` against the three sandboxes, with a configuration file as users write it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.cli._common import out
from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.store import DbSecretStore, generate_key
from ledgerlink.store.models import Outbox
from ledgerlink.sync.runtime import connect

SYSTEMS = ("salesforce", "stripe", "quickbooks")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string takes JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


@pytest.fixture
def config(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config naming the three running sandboxes; Northwind is in Salesforce and Stripe."""
    # Tables print whole, as on a wide terminal (the private attribute: the public setter
    # would leave a fixed width behind for the next tests).
    monkeypatch.setattr(out, "_width", 250)
    key = generate_key()
    engine = create_engine(database_url)
    secrets = DbSecretStore(engine, key)
    running: dict[str, Any] = {}
    try:
        lines = [
            f"[database]\nurl = {_toml_value(database_url)}",
            f"[secrets]\nencryption_key = {_toml_value(key)}",
        ]
        for name in SYSTEMS:
            running[name] = load_plugin(name).start_sandbox(SandboxOptions(seed=3, size=3))
            settings = running[name].connector_settings()
            body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in settings.items())
            lines.append(f"[connectors.{name}]\n{body}")
        sf = connect(load_plugin("salesforce"), running["salesforce"].connector_settings(), secrets)
        st = connect(load_plugin("stripe"), running["stripe"].connector_settings(), secrets)
        (account,) = list(
            sf.write(
                [
                    WriteOp(
                        "t-sf",
                        "Account",
                        WriteAction.CREATE,
                        {"Name": "Northwind Traders Inc", "BillingCity": "San Francisco"},
                    )
                ]
            )
        )
        (customer,) = list(
            st.write(
                [
                    WriteOp(
                        "t-st",
                        "customers",
                        WriteAction.CREATE,
                        {
                            "name": "Northwind Traders",
                            "metadata": {"salesforce_account_id": account.remote_id},
                        },
                    )
                ]
            )
        )
        assert customer.remote_id is not None
        sf.close()
        st.close()
        path = tmp_path / "ledgerlink.toml"
        path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
        yield path
    finally:
        for sandbox in running.values():
            sandbox.stop()
        engine.dispose()


def _outbox(database_url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Outbox.target, Outbox.action, Outbox.status))  # type: ignore[call-overload]
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def test_dry_run_prints_field_changes_and_writes_nothing(config: Path, database_url: str) -> None:
    """`sync run --dry-run` shows old -> new per field and leaves the outbox empty."""
    result = CliRunner().invoke(
        app, ["-c", str(config), "--log-level", "ERROR", "sync", "run", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "Stripe_Customer_Id__c" in result.output
    assert "dry run: nothing queued or sent" in result.output
    assert _outbox(database_url) == []


def test_run_writes_and_a_second_run_has_nothing_to_do(config: Path, database_url: str) -> None:
    """A cycle sends the planned writes; the next ones settle, and the last plans nothing."""
    runner = CliRunner()
    args = ["-c", str(config), "--log-level", "ERROR", "sync", "run"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "sync run" in first.output
    rows = _outbox(database_url)
    assert rows
    assert {status for _t, _a, status in rows} == {"done"}
    for _ in range(2):
        assert runner.invoke(app, args).exit_code == 0
    last = runner.invoke(app, [*args[:-1], "run", "--dry-run"])
    assert "no writes" in last.output


def test_unknown_connector_is_a_usage_error(config: Path) -> None:
    """Naming a connector that is not configured exits 2 with a message."""
    result = CliRunner().invoke(app, ["-c", str(config), "sync", "run", "--connector", "hubspot"])
    assert result.exit_code == 2
    assert "not configured: hubspot" in result.output
