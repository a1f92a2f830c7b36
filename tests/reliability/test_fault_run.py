"""A short fault run in CI: hundreds of invoices and a full pull under injected faults, exactly once.

The long version is ``benchmarks/reliability_faults.py`` (thousands of invoices); this runs the
same code with 300 invoices sent one per call, so every fault kind is hit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import Engine

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability_faults.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_faults", BENCHMARK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reliability_faults", module)
    spec.loader.exec_module(module)
    return module


def test_every_write_lands_once_and_every_record_is_pulled_under_faults(engine: Engine) -> None:
    """With 429s, 503s, dropped connections and lost answers injected, no invoice is duplicated or missing and the pull misses nothing."""
    result = _benchmark().fault_run(engine, invoices=300, pull_size=20, batch_size=1, seed=7)
    print(result.table())
    assert all(result.injected.values()), result.injected
    assert result.pulled_landed == result.pulled_expected > 0
    assert result.outbox == {"done": 300}
    assert (result.duplicates, result.missing_writes, result.missing_reads) == (0, 0, 0)


def test_the_same_run_with_fresh_keys_shows_duplicates(engine: Engine) -> None:
    """Without stable idempotency keys the lost answers become duplicate invoices, so the check above can see them."""
    result = _benchmark().fault_run(
        engine, invoices=300, pull_size=20, batch_size=1, seed=7, fresh_keys=True
    )
    assert result.injected["slower than the client timeout (write applied, answer lost)"] > 0
    assert result.duplicates > 0
