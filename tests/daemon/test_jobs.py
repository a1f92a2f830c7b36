"""Tests of the job registry: intervals from config, pull jobs, cooperative stop between pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledgerlink_slow import SlowConnector, SlowSettings

from ledgerlink.config import ConfigError, LedgerlinkConfig
from ledgerlink.connector import Cursor, Page
from ledgerlink.daemon import Job, JobContext, JobReport, StopSignal, build_jobs
from ledgerlink.daemon import jobs as jobs_module
from ledgerlink.daemon.jobs import (
    connector_settings_without_schedule,
    pull_jobs,
    stream_interval_seconds,
)
from ledgerlink.store import Store


def config_with(**table: object) -> LedgerlinkConfig:
    return LedgerlinkConfig(sync={"interval_seconds": 300}, connectors={"slow": dict(table)})


def test_interval_is_per_stream_then_per_connector_then_global() -> None:
    """A stream's interval comes from stream_intervals, else the connector's table, else [sync]."""
    assert stream_interval_seconds(config_with(), "slow", "ticks") == 300
    assert stream_interval_seconds(config_with(interval_seconds=60), "slow", "ticks") == 60
    both = config_with(interval_seconds=60, stream_intervals={"ticks": 15})
    assert stream_interval_seconds(both, "slow", "ticks") == 15
    assert stream_interval_seconds(both, "slow", "tocks") == 60


@pytest.mark.parametrize("value", [2, "often", 1.5, True])
def test_bad_interval_is_a_config_error_naming_the_key(value: object) -> None:
    """An interval that is not a whole number of at least 5 seconds names its dotted key."""
    with pytest.raises(ConfigError, match=r"connectors\.slow\.interval_seconds"):
        stream_interval_seconds(config_with(interval_seconds=value), "slow", "ticks")


def test_scheduling_keys_are_removed_before_the_connector_sees_its_settings() -> None:
    """The daemon's keys are stripped from a connector table; the connector's own keys stay."""
    table = {"interval_seconds": 60, "stream_intervals": {}, "stale_after_seconds": 600, "a": 1}
    assert connector_settings_without_schedule(table) == {"a": 1}


def test_one_pull_job_per_connector_and_stream_with_its_interval(store: Store) -> None:
    """Pull jobs are named pull:connector:stream and carry their interval and staleness."""
    context = JobContext(
        config=config_with(stream_intervals={"ticks": 30}),
        store=store,
        connectors={"slow": SlowConnector(SlowSettings())},
    )
    jobs = {job.name: job for job in pull_jobs(context)}
    assert set(jobs) == {"pull:slow:ticks", "pull:slow:tocks"}
    assert jobs["pull:slow:ticks"].interval_seconds == 30
    assert jobs["pull:slow:ticks"].stale_after_seconds == 90
    assert jobs["pull:slow:tocks"].interval_seconds == 300


def test_a_registered_job_kind_is_scheduled_next_to_pulls(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later part adds a job kind by registering a factory; build_jobs includes its jobs."""
    factories = {"pull": jobs_module._FACTORIES["pull"]}
    monkeypatch.setattr(jobs_module, "_FACTORIES", factories)
    push = Job(name="push", kind="push", interval_seconds=10, run=lambda _s: JobReport(ok=True))
    jobs_module.register_job_factory("push", lambda _ctx: [push])
    context = JobContext(
        config=config_with(), store=store, connectors={"slow": SlowConnector(SlowSettings())}
    )
    names = [job.name for job in build_jobs(context)]
    assert names == ["pull:slow:ticks", "pull:slow:tocks", "push"]
    jobs_module.register_job_factory("again", lambda _ctx: [push])
    with pytest.raises(ValueError, match="duplicate job name 'push'"):
        build_jobs(context)


class StopsAfter(SlowConnector):
    """Sets the daemon's stop signal while the engine lands page ``pages``."""

    def __init__(self, stop: StopSignal, pages: int) -> None:
        super().__init__(SlowSettings(pages=5, page_size=7))
        self.stop = stop
        self.stop_after = pages

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        for index, page in enumerate(super().read(stream, cursor), start=1):
            if index == self.stop_after:
                self.stop.set()
            yield page


def test_stop_ends_a_pull_between_pages_and_the_next_run_resumes(store: Store) -> None:
    """A stop asked mid-pull lands the current page whole, stops, and the next run reads only the rest."""
    stop = StopSignal()
    context = JobContext(
        config=config_with(), store=store, connectors={"slow": StopsAfter(stop, pages=2)}
    )
    job = next(j for j in pull_jobs(context) if j.stream == "ticks")
    report = job.run(stop)
    assert report.ok
    assert report.interrupted
    assert report.counts["pages"] == 2
    assert report.counts["inserted"] == 14
    assert store.load_cursor("slow", "ticks").state["next"] == 14
    assert store.get_source_record("slow", "ticks", "t00014") is None

    context = JobContext(
        config=config_with(), store=store, connectors={"slow": SlowConnector(SlowSettings(pages=5))}
    )
    resumed = next(j for j in pull_jobs(context) if j.stream == "ticks").run(StopSignal())
    assert not resumed.interrupted
    assert (resumed.counts["read"], resumed.counts["inserted"]) == (21, 21)


def test_a_pull_job_does_not_start_once_stopping(store: Store) -> None:
    """A pull job that starts after the stop signal reads nothing."""
    connector = SlowConnector(SlowSettings())
    context = JobContext(config=config_with(), store=store, connectors={"slow": connector})
    stop = StopSignal()
    stop.set()
    report = next(iter(pull_jobs(context))).run(stop)
    assert report.interrupted
    assert connector.pages_read == 0


def test_a_failed_pull_reports_the_error_kind_only(store: Store) -> None:
    """A failing stream's report names the error kind, not the message (which may hold data)."""
    connector = SlowConnector(SlowSettings(fail=True))
    context = JobContext(config=config_with(), store=store, connectors={"slow": connector})
    report = next(iter(pull_jobs(context))).run(StopSignal())
    assert not report.ok
    assert report.detail == "retryable"
