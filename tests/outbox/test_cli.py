"""`ledgerlink outbox list|show|retry|cancel` as operators run them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from ledgerlink.cli import _common, app
from ledgerlink.connector.errors import RecordError
from ledgerlink.sync.push import push

from .conftest import Clock, FakeConnector, planned, queue, rows


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run the CLI in-process against the test database, from an empty directory."""
    monkeypatch.chdir(tmp_path)
    # The private attribute: undoing the public setter would leave width 80 fixed for the
    # CLI tests that run next in this process.
    monkeypatch.setattr(_common.out, "_width", 200)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(
            app, list(args), env={"LEDGERLINK_DATABASE__URL": database_url, "NO_COLOR": "1"}
        )

    logging = structlog.get_config()
    yield invoke
    # The CLI points logging at the runner's streams, which close with each invocation.
    structlog.configure(**logging)


@pytest.fixture
def outbox(engine: Engine, fake: FakeConnector, clock: Clock) -> list[int]:
    """Rows 1 and 3 done, row 2 failed (rejected by the target), row 4 pending."""
    queue(engine, planned(1), planned(2), planned(3))
    fake.errors[rows(engine)[1].idempotency_key] = [RecordError("Name is too long")]
    push(engine, fake, worker_id="w", clock=clock)
    queue(engine, planned(4))
    return [r.id for r in rows(engine)]


def test_list_shows_rows_and_counts(run, outbox: list[int]) -> None:
    """`outbox list` shows each row's write, status and error, and the count per status."""
    result = run("outbox", "list")
    assert result.exit_code == 0, result.output
    assert "create Thing" in result.output
    assert "Name is too long" in result.output
    assert "pending 1, in_flight 0, done 2, failed 1, cancelled 0" in result.output
    failed = run("outbox", "list", "--status", "failed")
    assert failed.exit_code == 0
    assert "customer/e2" in failed.output
    assert "customer/e1" not in failed.output
    assert "no outbox rows match" in run("outbox", "list", "--target", "stripe").output
    assert run("outbox", "list", "--status", "stuck").exit_code == 2


def test_show_prints_one_row_or_exits_1(run, outbox: list[int]) -> None:
    """`outbox show ID` prints the key, error and payload; an unknown id exits 1 saying so."""
    result = run("outbox", "show", str(outbox[1]))
    assert result.exit_code == 0, result.output
    assert "ll-fake-create-" in result.output
    assert "record: Name is too long" in result.output
    assert '"Name": "Company 2"' in result.output
    missing = run("outbox", "show", "999")
    assert missing.exit_code == 1
    assert "no outbox row 999" in missing.output


def test_retry_makes_failed_rows_pending(run, outbox: list[int], engine: Engine) -> None:
    """`outbox retry ID` and `--failed` make failed rows pending; other rows are refused with 1."""
    refused = run("outbox", "retry", str(outbox[0]))
    assert refused.exit_code == 1
    assert "is done" in refused.output
    assert run("outbox", "retry", "999").exit_code == 1
    assert run("outbox", "retry").exit_code == 2
    result = run("outbox", "retry", str(outbox[1]))
    assert result.exit_code == 0, result.output
    row = rows(engine)[1]
    assert (row.status, row.attempts) == ("pending", 0)
    assert "nothing to retry" in run("outbox", "retry", "--failed").output


def test_cancel_stops_a_pending_write(run, outbox: list[int], engine: Engine) -> None:
    """`outbox cancel ID` cancels a pending row; a done or unknown row exits 1."""
    result = run("outbox", "cancel", str(outbox[3]))
    assert result.exit_code == 0, result.output
    assert rows(engine)[3].status == "cancelled"
    done = run("outbox", "cancel", str(outbox[0]))
    assert done.exit_code == 1
    assert "only pending or failed rows can be cancelled" in done.output
    assert run("outbox", "cancel", "12345").exit_code == 1
    assert run("outbox", "retry", "--failed").exit_code == 0
    assert [r.status for r in rows(engine)] == ["done", "pending", "done", "cancelled"]


def test_every_outbox_command_explains_itself(run) -> None:
    """`--help` of the group and each command exits 0 and says what it does."""
    for args in ((), ("list",), ("show",), ("retry",), ("cancel",)):
        result = run("outbox", *args, "--help")
        assert result.exit_code == 0
        assert "outbox" in result.output.lower() or "write" in result.output.lower()
