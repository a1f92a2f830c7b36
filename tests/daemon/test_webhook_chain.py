"""A webhook's news goes through plan and push at once instead of waiting for their intervals."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
from daemon_testing import make_config

from ledgerlink.daemon import Daemon
from ledgerlink.daemon.jobs import Job, JobReport, StopSignal

LANDED = {"inserted": 1, "updated": 0, "deleted": 0}
NOTHING = {"inserted": 0, "updated": 0, "deleted": 0}


class Moves:
    """Records the jobs brought forward (stands in for the scheduler's ``run_soon``)."""

    def __init__(self) -> None:
        self.moved: list[list[str]] = []

    def __call__(self, names: Sequence[str], *, within: float = 1.0) -> list[str]:
        assert within < 1
        self.moved.append(list(names))
        return list(names)


@pytest.fixture
def daemon(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Moves]]:
    """A daemon (not started) whose connector ``slow`` takes webhooks, with ``run_soon`` recorded."""
    daemon = Daemon(make_config(database_url))
    daemon._webhooks["slow"] = object()
    moves = Moves()
    monkeypatch.setattr(daemon.scheduler, "run_soon", moves)
    try:
        yield daemon, moves
    finally:
        daemon.engine.dispose()


def _job(name: str, kind: str, counts: dict[str, int], connector: str | None = None) -> Job:
    def run(_stop: StopSignal) -> JobReport:
        return JobReport(ok=True, counts=counts)

    return Job(name=name, kind=kind, interval_seconds=60, run=run, connector=connector)


def _by_name(jobs: list[Job]) -> dict[str, Job]:
    return {job.name: job for job in jobs}


def test_pulls_landing_webhook_news_start_the_plan_while_the_chain_lasts(
    daemon: tuple[Daemon, Moves],
) -> None:
    """After an accepted webhook, each pull of that connector that lands changes brings the plan forward, until the chain ends."""
    service, moves = daemon
    jobs = _by_name(
        service._chain_after_webhooks([_job("pull:slow:ticks", "pull", LANDED, "slow")])
    )
    jobs["pull:slow:ticks"].run(StopSignal())
    assert moves.moved == [], "no webhook yet: the schedule is unchanged"
    service._webhook_news.add("slow")
    service._chain_until = time.monotonic() + 60
    jobs["pull:slow:ticks"].run(StopSignal())
    jobs["pull:slow:ticks"].run(StopSignal())
    assert moves.moved == [["plan"], ["plan"]], "a later stream may bring what the plan needs"
    service._chain_until = time.monotonic() - 1
    jobs["pull:slow:ticks"].run(StopSignal())
    assert len(moves.moved) == 2, "after the chain, pulls keep their schedule"


def test_a_pull_that_lands_nothing_keeps_the_news_for_the_next_one(
    daemon: tuple[Daemon, Moves],
) -> None:
    """A pull of the webhook's connector that lands nothing does not start the plan."""
    service, moves = daemon
    jobs = _by_name(
        service._chain_after_webhooks([_job("pull:slow:ticks", "pull", NOTHING, "slow")])
    )
    service._webhook_news.add("slow")
    service._chain_until = time.monotonic() + 60
    jobs["pull:slow:ticks"].run(StopSignal())
    assert moves.moved == []
    assert "slow" in service._webhook_news


def test_a_plan_that_queued_writes_starts_every_push(daemon: tuple[Daemon, Moves]) -> None:
    """A plan run that queued writes brings the push jobs forward; one that queued nothing does not."""
    service, moves = daemon
    jobs = service._chain_after_webhooks(
        [
            _job("plan", "plan", {"queued": 0, "ledger_queued": 2}),
            _job("push:a", "push", {}),
            _job("push:b", "push", {}),
        ]
    )
    _by_name(jobs)["plan"].run(StopSignal())
    assert moves.moved == [["push:a", "push:b"]]
    idle = _by_name(service._chain_after_webhooks([_job("plan", "plan", {"queued": 0})]))
    idle["plan"].run(StopSignal())
    assert moves.moved == [["push:a", "push:b"]]


def test_a_push_that_wrote_soon_after_a_webhook_reads_its_target_back(
    daemon: tuple[Daemon, Moves],
) -> None:
    """Within a minute of a webhook, a push that wrote brings its target's pulls forward; otherwise it does not."""
    service, moves = daemon
    jobs = _by_name(
        service._chain_after_webhooks(
            [
                _job("push:books", "push", {"done": 2}, "books"),
                _job("pull:books:invoices", "pull", LANDED, "books"),
                _job("pull:books:payments", "pull", LANDED, "books"),
            ]
        )
    )
    jobs["push:books"].run(StopSignal())
    assert moves.moved == [], "no webhook: a push does not pull its target"
    service._chain_until = time.monotonic() + 60
    jobs["push:books"].run(StopSignal())
    assert moves.moved == [["pull:books:invoices", "pull:books:payments"]]
    jobs["pull:books:invoices"].run(StopSignal())
    assert moves.moved[-1] == ["plan"], "what the target derived from the write is planned at once"
