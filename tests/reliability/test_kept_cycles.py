"""Cycles as the daemon runs them, under faults: the kept plans leave nothing undone.

A long-running ledgerlink keeps its matcher and planners' worlds between cycles
(:class:`~ledgerlink.sync.cycle.CycleCache`) and plans only what changed. The short version of
``benchmarks/reliability_cycles.py --kept`` runs the three sandboxes (150 companies: duplicate
Salesforce Accounts, conflicting and bad records among them) under the vendor fault mix until
quiet, then checks the sandboxes and that a plan which reads every record again wants no write
the kept plans missed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.slow


def _benchmark(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_kept_cycles_under_faults_settle_with_nothing_missed() -> None:
    """No duplicate, nothing missing, no failed row, and a full re-plan finds nothing to write."""
    _benchmark("reliability_faults")  # imported by the cycles benchmark
    cycles = _benchmark("reliability_cycles")
    result = cycles.cycle_run(
        "kept",
        companies=150,
        invoices_per_customer=2,
        cycles_max=12,
        seed=7,
        kept=True,
        progress=lambda _line: None,
    )
    print(cycles.table([result]))
    assert all(result.injected.values()), result.injected
    assert sum(result.posted.values()) > 1000
    assert result.settled
    assert result.unconverged == {}
    assert (sum(result.duplicates.values()), sum(result.missing.values()), result.failed) == (
        0,
        0,
        0,
    )
    assert result.trial_balance == 0
