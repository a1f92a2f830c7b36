"""Tests of configuration loading: precedence, references, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerlink.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ledgerlink.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_environment_overrides_file_and_merges_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LEDGERLINK_A__B overrides one key of the file and keeps the others."""
    path = write(tmp_path, '[connectors.stripe]\napi_key = "a"\nbase_url = "http://x"\n')
    monkeypatch.setenv("LEDGERLINK_CONNECTORS__STRIPE__API_KEY", "from-env")
    config = load_config(path)
    assert config.connectors["stripe"] == {"api_key": "from-env", "base_url": "http://x"}


def test_secret_references_read_env_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'env:NAME' and 'file:PATH' values are replaced by the secret they point to."""
    secret_file = tmp_path / "key.txt"
    secret_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("SF_ID", "from-env")
    path = write(
        tmp_path, f'[connectors.sf]\nclient_id = "env:SF_ID"\nprivate_key = "file:{secret_file}"\n'
    )
    config = load_config(path)
    assert config.connectors["sf"] == {"client_id": "from-env", "private_key": "from-file"}


def test_missing_reference_names_the_key(tmp_path: Path) -> None:
    """A reference to an unset variable is an error naming the key and the variable."""
    path = write(tmp_path, '[connectors.sf]\nclient_id = "env:NOPE_NOT_SET"\n')
    with pytest.raises(
        ConfigError, match=r"connectors\.sf\.client_id: environment variable NOPE_NOT_SET"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[database]\nurll = 'x'\n", "database.urll: unknown key"),
        ("[database]\nurl = 'mysql://x'\n", "database.url: Value error, must start with"),
        (
            "[sync]\ninterval_seconds = 'often'\n",
            "sync.interval_seconds: Input should be a valid integer",
        ),
        ("[database\n", "not valid TOML"),
        ("[logging]\nlevel = 'LOUD'\n", "logging.level"),
        (
            "[ledger.rates]\nEUR = 0\n",
            "ledger.rates: Value error, the rate of EUR must be a positive",
        ),
        (
            "[ledger.rates]\neur = '1.1'\n",
            "ledger.rates: Value error, 'eur' is not an ISO 4217 code",
        ),
        ("[ledger]\nhome_currency = 'dollars'\n", "ledger.home_currency"),
    ],
)
def test_bad_config_errors_name_file_key_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Each kind of mistake gives one message with the file, the key and what is wrong."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message


def test_required_file_missing_says_how_to_create_it(tmp_path: Path) -> None:
    """Asking for a config that does not exist points to `ledgerlink init`."""
    with pytest.raises(ConfigError, match="ledgerlink init"):
        load_config(tmp_path / "absent.toml", required=True)


def test_ledger_rates_are_exact_decimals(tmp_path: Path) -> None:
    """Rates written as strings (or TOML numbers) become exact decimals, never binary floats."""
    path = write(
        tmp_path, '[ledger]\nhome_currency = "GBP"\n[ledger.rates]\nEUR = "0.8571"\nUSD = 0.79\n'
    )
    ledger = load_config(path).ledger
    assert ledger.home_currency == "GBP"
    assert {k: str(v) for k, v in ledger.rates.items()} == {"EUR": "0.8571", "USD": "0.79"}
