"""Tests that secrets never reach the logs, whatever shape they take in an event."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from ledgerlink.config import load_config
from ledgerlink.log import REDACTED, configure_logging, get_logger

SECRET = "sk_live_51HvQsecretValue99"
REFRESH = "AB11-refresh-token-zz9"


@pytest.fixture
def captured(tmp_path: Path) -> io.StringIO:
    config = tmp_path / "ledgerlink.toml"
    config.write_text(
        f'[connectors.stripe]\napi_key = "{SECRET}"\n'
        f'[connectors.quickbooks]\nrealm_id = "123"\nrefresh_token = "env:QBO_SEED"\n',
        encoding="utf-8",
    )
    import os

    os.environ["QBO_SEED"] = REFRESH
    try:
        load_config(config)
    finally:
        del os.environ["QBO_SEED"]
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=stream)
    yield stream
    structlog.reset_defaults()


def test_secret_from_config_never_appears_in_logs(captured: io.StringIO) -> None:
    """A secret set in the config is masked in values, nested headers, messages and tracebacks."""
    log = get_logger(connector="stripe")
    log.info("connecting", key_used=SECRET)
    log.info("request", headers={"Authorization": f"Bearer {SECRET}"}, url=f"https://x/?k={SECRET}")
    log.info(f"retrying with {SECRET}")
    log.info("refresh", detail=[f"got {REFRESH}"])
    try:
        raise RuntimeError(f"auth failed for {SECRET}")
    except RuntimeError:
        log.exception("failed")
    text = captured.getvalue()
    assert SECRET not in text
    assert REFRESH not in text
    assert REDACTED in text
    assert len(text.strip().splitlines()) == 5


def test_secret_named_keys_are_masked_even_when_unknown(captured: io.StringIO) -> None:
    """Values under keys that name secrets are masked even when never registered."""
    get_logger().info("oauth", access_token="brand-new-token-123", client_secret="cs-456", page=2)
    event = json.loads(captured.getvalue())
    assert event["access_token"] == REDACTED
    assert event["client_secret"] == REDACTED
    assert event["page"] == 2


def test_a_logger_made_before_configuration_follows_it() -> None:
    """Module-level loggers exist before `configure_logging` runs; its level and stream still apply."""
    early = get_logger(component="early")
    stream = io.StringIO()
    configure_logging(level="WARNING", json=True, stream=stream)
    try:
        early.info("too.chatty", detail=1)
        early.warning("worth.saying", api_key=SECRET)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["worth.saying"]
    assert lines[0]["component"] == "early"
    assert lines[0]["api_key"] == REDACTED
