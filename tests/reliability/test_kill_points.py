"""``ledgerlink sync run`` killed (SIGKILL) at a few points of a cycle, restarted: every effect once.

The long version is ``benchmarks/reliability_kill.py`` (20 points, compared with a run without a
kill); this runs the same code for a few points, where the check is made against the outbox: the
objects each sandbox gained equal the outbox creates that are done, no two creates share a remote
record, every outbox row is done (or an update cancelled as no longer needed) and every stream's cursor is stored without error.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ledgerlink.store import upgrade

pytestmark = pytest.mark.slow
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability_kill.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_kill", BENCHMARK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reliability_kill", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "point",
    [
        # QuickBooks applied the invoices, their results not stored: the case idempotency is for
        # (the eighth send of the first cycle: the ledger's second follow-up plan, after the
        # pushes that made the customers, then their items and currency customers). The other
        # points (pull, landing, matching, planning, ledger, token refresh) run in
        # benchmarks/reliability_kill.py; each costs about 40 s of subprocess cycles.
        "push.sent:8@1",
    ],
)
def test_a_cycle_killed_at_a_point_and_restarted_does_everything_once(
    point: str, database_url: str, tmp_path: Path
) -> None:
    """A cycle SIGKILLed at the point, then restarted, leaves each vendor object made once and nothing lost."""
    kill = _benchmark()
    outcome = kill.run_scenario_on(point, database_url, folder=tmp_path)
    verdict = kill.compare(outcome, None)
    print(kill.table([verdict]))
    assert verdict.kills == 1
    assert set(outcome.outbox) <= {"done", "cancelled"}, outcome.outbox
    assert outcome.cancelled_creates == 0
    assert outcome.creates_done.get("quickbooks Invoice", 0) >= 2
    assert (verdict.duplicates, verdict.missing) == (0, 0), verdict.details


def test_the_same_kill_with_a_fresh_key_per_send_shows_duplicates(tmp_path: Path) -> None:
    """Sending every write with a new random key, a kill after the vendor applied it makes a duplicate that the check counts.

    It proves the check, not the store, so it runs on SQLite only.
    """
    kill = _benchmark()
    database_url = f"sqlite:///{(tmp_path / 'control.db').as_posix()}"
    upgrade(database_url)
    outcome = kill.run_scenario_on("push.sent:8@1", database_url, folder=tmp_path, fresh_keys=True)
    verdict = kill.compare(outcome, None)
    print(kill.table([verdict]))
    assert verdict.kills == 1
    assert verdict.duplicates > 0, verdict.details
