"""Pins the public surface of ledgerlink.daemon that other parts of the hub build on."""

from __future__ import annotations

import ledgerlink.daemon


def test_public_names_of_the_daemon_package() -> None:
    """The daemon package exports exactly the names later job kinds and the CLI rely on."""
    assert sorted(ledgerlink.daemon.__all__) == [
        "Daemon",
        "DaemonOptions",
        "DaemonStartError",
        "Job",
        "JobContext",
        "JobFactory",
        "JobReport",
        "StopSignal",
        "build_jobs",
        "register_job_factory",
    ]
    for name in ledgerlink.daemon.__all__:
        assert getattr(ledgerlink.daemon, name) is not None
