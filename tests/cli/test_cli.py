"""End-to-end tests of the `ledgerlink` command as users run it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ledgerlink import __version__
from ledgerlink.cli import app

THIRD_PARTY = Path(__file__).resolve().parents[1] / "fixtures" / "thirdparty"


def ledgerlink(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ledgerlink", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    """`ledgerlink --version` prints the installed version."""
    result = ledgerlink("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"ledgerlink {__version__}"


def all_commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.extend(all_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_has_useful_help() -> None:
    """`--help` on every command and group exits 0 and explains it in words."""
    commands = all_commands(typer.main.get_command(app))
    assert ("connectors", "check") in commands
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (command, result.output)
        assert "Usage:" in result.output
        assert len(result.output.split()) > 15, command


def test_init_writes_config_and_creates_database_idempotently(tmp_path: Path) -> None:
    """`init` writes a commented config and a migrated database; a second run keeps both."""
    first = ledgerlink("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = (tmp_path / "ledgerlink.toml").read_text(encoding="utf-8")
    assert "# ledgerlink configuration." in config
    assert (tmp_path / "ledgerlink.db").exists()
    assert oct((tmp_path / "ledgerlink.key").stat().st_mode & 0o777) == "0o600"
    second = ledgerlink("init", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "keeping existing" in second.stdout
    assert (tmp_path / "ledgerlink.toml").read_text(encoding="utf-8") == config
    current = ledgerlink("db", "current", cwd=tmp_path)
    assert current.returncode == 0, current.stderr
    _, cur, _, head = current.stdout.split()
    assert cur == head


def test_connectors_list_shows_the_built_in_connectors(tmp_path: Path) -> None:
    """`connectors list` names the three built-in connectors from their entry points."""
    result = ledgerlink("connectors", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("salesforce", "stripe", "quickbooks"):
        assert name in result.stdout


def test_third_party_connector_is_found_without_changing_the_core(tmp_path: Path) -> None:
    """An installed third-party distribution appears in `connectors list` and passes `connectors check`."""
    env = {"PYTHONPATH": str(THIRD_PARTY)}
    listed = ledgerlink("connectors", "list", "--streams", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ledgerlink-echo" in listed.stdout
    assert "notes" in listed.stdout
    (tmp_path / "ledgerlink.toml").write_text(
        "[connectors.echo]\npage_size = 5\n", encoding="utf-8"
    )
    checked = ledgerlink("connectors", "check", "echo", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "reachable" in checked.stdout


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("[database]\nurll = 'x'\n", "database.urll: unknown key"),
        ("[sync]\ninterval_seconds = 'often'\n", "sync.interval_seconds"),
        ("[database\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_2_with_file_key_and_reason(
    tmp_path: Path, config: str, expected: str
) -> None:
    """A bad configuration stops any command with exit status 2 and one clear line, no traceback."""
    (tmp_path / "ledgerlink.toml").write_text(config, encoding="utf-8")
    result = ledgerlink("connectors", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "ledgerlink.toml" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_connector_is_a_clear_configuration_error(tmp_path: Path) -> None:
    """Checking a connector that is not installed names the installed ones and exits 2."""
    result = ledgerlink("connectors", "check", "netsuite", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown connector 'netsuite'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_connector_settings_do_not_echo_secrets(tmp_path: Path) -> None:
    """Invalid connector settings are reported by key without printing the secret values."""
    (tmp_path / "ledgerlink.toml").write_text(
        "[connectors.echo]\npage_size = 'sk_live_SHOULD_NOT_LEAK'\n", encoding="utf-8"
    )
    result = ledgerlink(
        "connectors", "check", "echo", cwd=tmp_path, env={"PYTHONPATH": str(THIRD_PARTY)}
    )
    assert result.returncode == 2
    assert "page_size" in result.stderr
    assert "SHOULD_NOT_LEAK" not in result.stderr + result.stdout
