"""Test hook: kill the process at a named point of a cycle, to prove crash safety.

``LEDGERLINK_CRASH_AT=<point>[:<nth>]`` makes the process SIGKILL itself the ``nth`` time
(default: the first) it reaches :func:`crash_point` with that name. Unset, every call is a
no-op costing one dictionary lookup. It exists for ``benchmarks/reliability_kill.py`` and
``tests/reliability/test_kill_points.py``, which kill ``ledgerlink sync run`` at each point,
restart it and count the effects in the vendor sandboxes; never set it in production.

SIGKILL rather than an exception: nothing runs after it (no ``finally``, no rollback sent by
the client, no buffered log flushed), which is what a power cut or an OOM kill does.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "LEDGERLINK_CRASH_AT"
"""The environment variable naming the point (and optionally the visit) to die at."""

_visits: Counter[str] = Counter()


def _target() -> tuple[str, int] | None:
    """Return the (point, nth visit) the environment asks for, or None."""
    value = os.environ.get(CRASH_ENV, "")
    if not value:
        return None
    point, _, nth = value.partition(":")
    return point, int(nth) if nth.isdigit() else 1


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when ``LEDGERLINK_CRASH_AT`` names this visit of ``name``."""
    target = _target()
    if target is None or target[0] != name:
        return
    _visits[name] += 1
    if _visits[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
