"""The push worker: what each outcome does to a row, backoff, stopping, and the result callback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.errors import (
    AuthExpiredError,
    ConflictError,
    FatalError,
    RateLimitedError,
    RecordError,
    RetryableError,
    StaleVersionError,
)
from ledgerlink.store import AuditLog, Quarantine
from ledgerlink.sync.outbox import retry_rows
from ledgerlink.sync.push import BackoffPolicy, PushedWrite, push

from .conftest import T0, Clock, FakeConnector, planned, queue, rows

NO_JITTER = BackoffPolicy(base=10.0, cap=1000.0, max_attempts=3, jitter=lambda delay: delay)
QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
AUDIT = AuditLog.__table__  # type: ignore[attr-defined]


def keys(engine: Engine) -> list[str]:
    return [r.idempotency_key for r in rows(engine)]


def quarantined(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(QUARANTINE)).mappings()]


def test_push_sends_in_batches_and_stores_remote_ids(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """Due rows go out in batches of the writer's size and become done with the target's id."""
    queue(engine, *(planned(n) for n in range(7)), planned(9, obj="Other"))
    report = push(engine, fake, worker_id="w", clock=clock)
    assert [len(call) for call in fake.calls] == [3, 3, 1, 1]
    assert report.done == 8
    assert report.ok
    stored = rows(engine)
    assert {r.status for r in stored} == {"done"}
    assert [r.remote_id for r in stored] == [fake.made[r.idempotency_key] for r in stored]
    assert all(r.attempts == 1 and r.claimed_until is None for r in stored)
    assert push(engine, fake, worker_id="w", clock=clock).batches == 0


def test_upsert_takes_its_external_id_from_the_writers_field(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """An upsert reaches the connector with external_id read from the payload's external-id field."""
    from ledgerlink.connector.protocol import WriteAction

    queue(engine, planned(1, action=WriteAction.UPSERT))
    push(engine, fake, worker_id="w", clock=clock)
    assert fake.calls[0][0].external_id == "X1"


def test_results_reach_the_callback_in_the_same_transaction(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """The callback gets each done write with its remote id and its changes commit with them."""
    queue(engine, planned(1), planned(2))
    seen: list[PushedWrite] = []

    def link(conn: Connection, writes: Sequence[PushedWrite]) -> None:
        seen.extend(writes)
        conn.execute(
            AUDIT.insert(),
            [
                {"at": T0, "actor": "push", "action": "link", "subject": w.remote_id, "details": {}}
                for w in writes
            ],
        )

    push(engine, fake, worker_id="w", clock=clock, on_result=link)
    assert [(w.entity_id, w.remote_id, w.replayed) for w in seen] == [
        ("e1", "R1", False),
        ("e2", "R2", False),
    ]
    with engine.connect() as conn:
        assert sorted(conn.execute(select(AUDIT.c.subject)).scalars()) == ["R1", "R2"]


def test_callback_failure_rolls_back_the_status_change(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A callback that raises leaves the rows in flight: the status change and the links commit
    together or not at all."""
    queue(engine, planned(1))

    def failing(conn: Connection, writes: Sequence[PushedWrite]) -> None:
        raise RuntimeError("links table unavailable")

    with pytest.raises(RuntimeError):
        push(engine, fake, worker_id="w", clock=clock, on_result=failing)
    assert [(r.status, r.remote_id) for r in rows(engine)] == [("in_flight", None)]


def test_retryable_error_backs_off_then_succeeds(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A transient error puts the row back to pending with attempts + 1, due after the backoff."""
    queue(engine, planned(1))
    key = keys(engine)[0]
    fake.errors[key] = [RetryableError("HTTP 503", status=503), StaleVersionError("stale")]
    report = push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    assert report.retried == 1
    row = rows(engine)[0]
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "pending",
        1,
        T0 + timedelta(seconds=10),
    )
    assert "HTTP 503" in row.last_error
    assert push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock).batches == 0
    clock.advance(seconds=10)
    push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    row = rows(engine)[0]
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "pending",
        2,
        clock() + timedelta(seconds=20),
    )
    clock.advance(seconds=20)
    push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    assert (rows(engine)[0].status, rows(engine)[0].attempts) == ("done", 3)


def test_retries_stop_at_max_attempts(engine: Engine, fake: FakeConnector, clock: Clock) -> None:
    """A row still failing after max_attempts sends becomes failed with the last error."""
    queue(engine, planned(1))
    fake.errors[keys(engine)[0]] = [RetryableError("timeout")] * 5
    for _ in range(3):
        push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
        clock.advance(hours=1)
    row = rows(engine)[0]
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("gave up after 3 attempts")
    assert len(fake.calls) == 3


def test_rate_limit_honours_retry_after_and_stops_the_target(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A 429 with Retry-After delays the row at least that long and stops pushing to the target."""
    queue(engine, planned(1, obj="Other"), planned(2, obj="Other"))
    first = keys(engine)[0]
    fake.errors[first] = [RateLimitedError("slow down", status=429, retry_after=60.0)]
    report = push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    assert report.stopped is not None
    assert report.stopped.startswith("rate_limited")
    assert len(fake.calls) == 1
    stored = rows(engine)
    assert stored[0].status == "pending"
    assert stored[0].next_attempt_at == T0 + timedelta(seconds=60)
    assert stored[1].status == "pending"


def test_backoff_is_exponential_with_jitter_and_never_below_retry_after() -> None:
    """Delays double per attempt up to the cap, pass through jitter, and respect retry_after."""
    policy = BackoffPolicy(base=2.0, cap=30.0, jitter=lambda delay: delay / 2)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert policy.delay(1, retry_after=45.0) == 45.0
    assert policy.delay(5, retry_after=3.0) == 15.0
    default = BackoffPolicy(base=8.0)
    assert all(4.0 <= default.delay(1) <= 8.0 for _ in range(50))


def test_record_error_fails_the_row_and_quarantines_it(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A rejected record fails with its reason and lands in quarantine (stage push); the rest of
    the batch goes on."""
    queue(engine, planned(1), planned(2), planned(3))
    bad = keys(engine)[1]
    fake.errors[bad] = [RecordError("Name is too long", vendor_code="6000", field="Name")]
    report = push(engine, fake, worker_id="w", clock=clock)
    assert (report.done, report.failed, report.quarantined) == (2, 1, 1)
    assert [r.status for r in rows(engine)] == ["done", "failed", "done"]
    assert "Name is too long" in rows(engine)[1].last_error
    [entry] = quarantined(engine)
    assert (entry["system"], entry["object"], entry["external_id"], entry["stage"]) == (
        "fake",
        "Thing",
        "e2",
        "push",
    )
    assert entry["reason"].startswith("record: Name is too long")
    assert entry["payload"]["idempotency_key"] == bad


def test_the_same_record_rejected_twice_keeps_one_quarantine_row(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A write rejected again after a retry updates its quarantine row instead of adding one."""
    queue(engine, planned(1))
    key = keys(engine)[0]
    fake.errors[key] = [RecordError("Name is too long"), RecordError("Name is still too long")]
    push(engine, fake, worker_id="w", clock=clock)
    retry_rows(engine, all_failed=True, now=clock())
    push(engine, fake, worker_id="w", clock=clock)
    [entry] = quarantined(engine)
    assert entry["reason"].startswith("record: Name is still too long")


def test_conflict_fails_the_row_and_queues_it_for_review(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """An ambiguous target fails the row and records a push quarantine entry marked conflict."""
    queue(engine, planned(1))
    fake.errors[keys(engine)[0]] = [ConflictError("3 records match", status=300)]
    push(engine, fake, worker_id="w", clock=clock)
    assert rows(engine)[0].status == "failed"
    [entry] = quarantined(engine)
    assert entry["reason"].startswith("conflict: 3 records match")


def test_fatal_error_fails_the_row_and_stops_the_target(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """A fatal error fails its row and no further batch is sent to that target."""
    queue(engine, planned(1, obj="Other"), planned(2, obj="Other"))
    fake.errors[keys(engine)[0]] = [FatalError("idempotency key reused with other parameters")]
    report = push(engine, fake, worker_id="w", clock=clock)
    assert report.stopped is not None
    assert report.stopped.startswith("fatal")
    assert [r.status for r in rows(engine)] == ["failed", "pending"]
    assert len(fake.calls) == 1


def test_expired_auth_puts_rows_back_to_pending(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """An expired session returns the row to pending, due now, without counting an attempt."""
    queue(engine, planned(1))
    fake.errors[keys(engine)[0]] = [AuthExpiredError("INVALID_SESSION_ID", status=401)]
    report = push(engine, fake, worker_id="w", clock=clock)
    assert report.stopped is not None
    row = rows(engine)[0]
    assert (row.status, row.attempts, row.next_attempt_at, row.claimed_by) == (
        "pending",
        0,
        T0,
        None,
    )
    assert push(engine, fake, worker_id="w", clock=clock).done == 1


def test_unknown_outcome_keeps_the_send_group_and_resends_it_whole(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """When the connector breaks off mid-batch, the rows without a result stay in flight as one
    group and are later sent again together, with the same keys, in the same order."""
    queue(engine, *(planned(n) for n in range(3)))
    fake.raise_after = 1
    with pytest.raises(ConnectionResetError):
        push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    stored = rows(engine)
    assert [r.status for r in stored] == ["done", "in_flight", "in_flight"]
    assert stored[1].claimed_until == T0 + timedelta(seconds=10)
    assert stored[1].last_error.startswith("outcome unknown")
    # A new row of the same object arrives; the resend does not mix it into the group.
    queue(engine, planned(7))
    fake.raise_after = None
    clock.advance(seconds=10)
    push(engine, fake, worker_id="w", backoff=NO_JITTER, clock=clock)
    assert [[op.idempotency_key for op in call] for call in fake.calls[1:]] == [
        [stored[1].idempotency_key, stored[2].idempotency_key],
        [rows(engine)[3].idempotency_key],
    ]
    assert {r.status for r in rows(engine)} == {"done"}


def test_a_worker_whose_lease_ran_out_does_not_store_over_the_new_holder(
    engine: Engine, fake: FakeConnector, clock: Clock
) -> None:
    """When a slow call outlives its lease and another worker re-sends and stores the rows, the
    slow worker's late answer changes nothing and reaches the callback no second time."""
    queue(engine, planned(1), planned(2))
    linked: list[tuple[str | None, str | None]] = []

    def link(conn: Connection, writes: Sequence[PushedWrite]) -> None:
        linked.extend((w.entity_id, w.remote_id) for w in writes)

    class SlowConnector:
        name = "fake"

        def writers(self):  # type: ignore[no-untyped-def]
            return fake.writers()

        def write(self, ops):  # type: ignore[no-untyped-def]
            answers = list(fake.write(ops))
            clock.advance(minutes=10)
            push(engine, fake, worker_id="fast", clock=clock, on_result=link)
            return iter(answers)

    report = push(engine, SlowConnector(), worker_id="slow", clock=clock, on_result=link)  # type: ignore[arg-type]
    assert report.done == 0
    assert linked == [("e1", "R1"), ("e2", "R2")]
    stored = rows(engine)
    assert [(r.status, r.claimed_by.split("#")[0]) for r in stored] == [("done", "fast")] * 2
