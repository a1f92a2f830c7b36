"""Fixtures shared by the sync tests that run against the sandboxes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

SettingsOf = Callable[[str, Any], dict[str, Any]]


def _unpaced(name: str, sandbox: Any) -> dict[str, Any]:
    """Connector settings for a sandbox; QuickBooks without the production pace.

    As in the QuickBooks connector's own tests, the client runs unpaced and the sandbox without
    its per-second limit (its per-minute limits stay). The pacing is what makes a cycle slow,
    not what these tests check; the rate limiter has its own tests (tests/connector/test_http.py).
    """
    settings: dict[str, Any] = sandbox.connector_settings()
    if name != "quickbooks":
        return settings
    sandbox.limits.requests_per_second = None
    return {**settings, "requests_per_minute": 60_000, "batch_requests_per_minute": 60_000}


@pytest.fixture
def settings_of() -> SettingsOf:
    """``settings_of(name, sandbox)``: the connector settings to connect to a sandbox with."""
    return _unpaced
