"""`ledgerlink mappings` and `ledgerlink quarantine` as users run them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import list_quarantine, load_mappings, normalize_changed
from ledgerlink.store import Store

runner = CliRunner()


def config_file(
    tmp_path: Path, database_url: str = "sqlite:///unused.db", mappings_dir: Path | None = None
) -> Path:
    path = tmp_path / "ledgerlink.toml"
    lines = [f'mappings_dir = "{mappings_dir}"'] if mappings_dir else []
    lines += ["[database]", f'url = "{database_url}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mappings_check_passes_on_the_defaults(tmp_path: Path) -> None:
    """`mappings check` exits 0 and says the mappings are fine when they load."""
    result = runner.invoke(app, ["--config", str(config_file(tmp_path)), "mappings", "check"])
    assert result.exit_code == 0, result.output
    assert "mappings OK: 3 systems" in result.output


def test_mappings_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    """`mappings check --dir` prints file:line: reason for each problem and exits 1."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      nick: name\n      name: {from: name, transforms: [shout]}\n"
    )
    result = runner.invoke(
        app, ["--config", str(config_file(tmp_path)), "mappings", "check", "--dir", str(folder)]
    )
    assert result.exit_code == 1
    assert f"{folder / 'stripe.yaml'}:4: unknown field 'nick'" in result.output
    assert f"{folder / 'stripe.yaml'}:5: unknown transform 'shout'" in result.output
    assert "2 problem(s)" in result.output


def test_mappings_check_uses_mappings_dir_from_the_config(tmp_path: Path) -> None:
    """Without --dir, `mappings check` checks the folder the config names."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "shared.yaml").write_text(
        "source_of_truth:\n  party:\n    name: stripe\n    name: salesforce\n"
    )
    config = config_file(tmp_path, mappings_dir=folder)
    result = runner.invoke(app, ["--config", str(config), "mappings", "check"])
    assert result.exit_code == 1
    assert "two sources of truth for party.name" in result.output


def test_mappings_show_prints_the_effective_mapping(tmp_path: Path) -> None:
    """`mappings show` prints the merged YAML and the fields the system is source of truth for."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      website: {from: metadata.site}\n"
    )
    result = runner.invoke(
        app,
        [
            "--config",
            str(config_file(tmp_path)),
            "mappings",
            "show",
            "stripe",
            "--dir",
            str(folder),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "metadata.site" in result.output
    assert "money_minor" in result.output
    assert "emails" in result.output  # stripe is the source of truth for party.emails
    unknown = runner.invoke(
        app, ["--config", str(config_file(tmp_path)), "mappings", "show", "xero"]
    )
    assert unknown.exit_code == 1


def test_quarantine_list_show_and_retry(tmp_path: Path, database_url: str, engine: Engine) -> None:
    """Quarantined records can be listed, shown in full and retried after a mapping fix."""
    now = datetime(2026, 1, 5, tzinfo=UTC)
    bad = {"id": "cus_9", "name": "Nine", "currency": "zzz", "created": 1}
    Store(engine).land("stripe", [Record("customers", "cus_9", bad)], now=now)
    normalize_changed(engine, load_mappings(), "stripe", since=None, now=now)
    (row,) = list_quarantine(engine)
    config = config_file(tmp_path, database_url)

    listed = runner.invoke(
        app, ["--config", str(config), "quarantine", "list"], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.output
    assert "stripe/customers/cus_9" in listed.output
    assert "map" in listed.output

    shown = runner.invoke(
        app, ["--config", str(config), "quarantine", "show", str(row.id)], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "unknown currency code 'zzz'" in shown.output
    assert '"currency": "zzz"' in shown.output

    still = runner.invoke(app, ["--config", str(config), "quarantine", "retry", "--all"])
    assert still.exit_code == 1
    assert "still failing" in still.output

    folder = tmp_path / "fix"
    folder.mkdir()
    (folder / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      currency: {const: USD}\n"
    )
    fixed = runner.invoke(
        app,
        [
            "--config",
            str(config_file(tmp_path, database_url, folder)),
            "quarantine",
            "retry",
            str(row.id),
        ],
    )
    assert fixed.exit_code == 0, fixed.output
    assert "resolved" in fixed.output
    assert list_quarantine(engine) == []
    empty = runner.invoke(app, ["--config", str(config), "quarantine", "list"])
    assert "quarantine is empty" in empty.output
    neither = runner.invoke(app, ["--config", str(config), "quarantine", "retry"])
    assert neither.exit_code == 2
