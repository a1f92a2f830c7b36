"""One sync cycle: pull, match, plan, push; what ``ledgerlink sync run`` and a scheduler call.

Pulling lands what changed (and maps it when matching reads it), matching rebuilds golden
customers and links, :func:`ledgerlink.sync.plan.plan` queues the writes the targets need, and
:func:`ledgerlink.sync.quotes.plan_quotes` queues the Stripe billing of accepted quotes,
:func:`ledgerlink.sync.push.push` sends them, linking created records to their customers. A dry
run pulls and matches (the local store only) and plans without queueing or sending anything.
"""

from __future__ import annotations

import contextvars
import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.connector.protocol import Connector, WriteAction
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.matching.persist import Matcher, MatchSummary, run_matching
from ledgerlink.store.models import CustomerLink, LinkStatus, Quarantine
from ledgerlink.store.repository import Store
from ledgerlink.sync._landed import PassLinks
from ledgerlink.sync._ledger_world import KeptLedgerWorld
from ledgerlink.sync.engine import StreamResult, pull
from ledgerlink.sync.ledger import TARGET as LEDGER_TARGET
from ledgerlink.sync.ledger import LedgerOptions, LedgerPlanReport, plan_ledger
from ledgerlink.sync.plan import MappedRecords, PlanReport, plan, record_results
from ledgerlink.sync.push import PushReport, push
from ledgerlink.sync.quotes import KeptQuotes, QuotePlanReport, plan_quotes

__all__ = [
    "CycleCache",
    "CycleProgress",
    "CycleReport",
    "PlanReports",
    "StageHook",
    "SystemSummary",
    "ledger_options",
    "plan_all",
    "quickbooks_customer_updates",
    "run_cycle",
]

CycleProgress = Callable[[str, str, int], None]
"""Called as ``progress(stage, detail, count)``: ``pull``/stream/records, ``match``, ``plan``,
``push``/target/rows."""

StageHook = Callable[[str], None]
"""Called as ``on_stage(stage)`` when ``pull``, ``match``, ``plan``, ``push`` start and at
``done``: what a benchmark needs to attribute time, API calls and memory to each stage."""

_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]


@dataclass
class SystemSummary:
    """One system's line of the cycle summary."""

    system: str
    read: int = 0
    changed: int = 0
    matched: int = 0
    review: int = 0
    written: int = 0
    failed: int = 0
    quarantined: int = 0


@dataclass
class CycleReport:
    """What one cycle did, stage by stage."""

    pulls: list[StreamResult] = field(default_factory=list)
    matching: MatchSummary | None = None
    plan: PlanReport | None = None
    quotes: QuotePlanReport | None = None
    ledger: LedgerPlanReport | None = None
    ledger_follow_ups: list[LedgerPlanReport] = field(default_factory=list)
    """The ledger plans made right after the push, for the documents that waited on what it
    sent (a payment on its invoice, an invoice on its customer), each after the push of the
    one before; empty when nothing waited so."""
    customer_follow_up: PlanReport | None = None
    """The customer plan made right after the push when it created records (their ids go to
    the customers' other records in this cycle); None when it created nothing."""
    pushes: list[PushReport] = field(default_factory=list)
    systems: dict[str, SystemSummary] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage (``pull``, ``match``, ``plan``, ``push``)."""

    @property
    def ok(self) -> bool:
        """True when every stream was read and no target stopped or failed a write."""
        return all(r.ok for r in self.pulls) and all(p.ok for p in self.pushes)


FULL_COLLECTION_EVERY = 100
"""Parks of a :class:`CycleCache` between full garbage collections (:meth:`CycleCache.park`)."""

FULL_COLLECTION_GROWTH = 1.25
"""A park makes a full collection when the frozen objects grew by this factor since the last."""

_NO_AUTOMATIC_FULL = 1_000_000
"""The collector's third threshold while a kept cycle runs: gen-1 collections before a full one."""


class _FullCollectionHold:
    """Holds off the collector's automatic full collections while a kept cycle or plan runs.

    A full collection walks every object not frozen; right after :meth:`CycleCache.park`
    CPython's own trigger (a quarter more long-lived objects than after the last full one)
    fires again and again while a pass builds its working set, each walk longer than the last
    (3.5 to 9.4 s a pass at full scale). The young generations are still collected as usual;
    what survives them waits for the park. Nested and concurrent holders share one hold.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._before: tuple[int, int, int] | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._before = gc.get_threshold()
                gc.set_threshold(self._before[0], self._before[1], _NO_AUTOMATIC_FULL)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._before is not None:
                    gc.set_threshold(*self._before)
                    self._before = None


_full_collections_held = _FullCollectionHold()


@dataclass
class CycleCache:
    """What a long-running caller (the daemon, a benchmark) keeps from one cycle to the next.

    With it a cycle reads again only what changed: matching re-matches the parties changed
    since its last run (a :class:`~ledgerlink.matching.persist.Matcher` keeps the engine's
    state); the customer planner re-maps only the records landed since its last plan and plans
    only the customers they changed; the quotes planner re-reads only the deals and Stripe
    records changed (:class:`~ledgerlink.sync.quotes.KeptQuotes`); the ledger planner re-reads
    only the landed records and outbox rows changed since its last plan
    (:class:`~ledgerlink.sync._ledger_world.KeptLedgerWorld`). A one-shot ``ledgerlink sync
    run`` has nothing to keep and reads everything from the tables.
    """

    mapped: MappedRecords = field(default_factory=MappedRecords)
    ledger: KeptLedgerWorld = field(default_factory=KeptLedgerWorld)
    quotes: KeptQuotes = field(default_factory=KeptQuotes)
    matcher: Matcher | None = None
    _matched_with: tuple[int, int] | None = None
    _parked: int = 0
    _frozen_after_full: int = 0
    _frozen: int = -1
    """Objects frozen as this cache counts them: what its parks froze, objects freed since
    still counted (they make the next full collection come sooner, which is what it is for:
    garbage among frozen objects); -1 before the first park."""

    def holding(self) -> AbstractContextManager[None]:
        """The context a kept cycle or plan runs in: no automatic full collection in it (what
        it makes is collected young or at :meth:`park`)."""
        return _full_collections_held()

    def park(self) -> None:
        """Keep Python's cyclic garbage collector off what survived this cycle.

        A full collection walks every object the process holds, and a kept cache holds many:
        about 1.7 s a collection at 10,000 companies (1.8 GiB), ten times that at full scale,
        paid in whatever stage happens to allocate when it triggers. After each cycle or plan
        the young generations are collected (cheap) and the survivors moved to the permanent
        generation (:func:`gc.freeze`), so later collections walk only what later cycles make
        (and while a cycle runs in :meth:`holding`, no automatic full collection walks even
        that). Objects dropped from the cache are still freed by their reference counts;
        garbage in reference cycles among frozen objects waits for the next full collection,
        made here (after :func:`gc.unfreeze`) when the objects kept grew by a quarter since the
        last one (so such garbage never holds more than that) and every
        :data:`FULL_COLLECTION_EVERY` parks.
        """
        self._parked += 1
        gc.collect(1)
        # gc.get_freeze_count() walks every frozen object (0.2 s at 10,000 companies, ten
        # times that at full scale): the count is kept here instead, from what each park
        # freezes, and read exactly only when that count says what is kept grew (and after a
        # full collection, which walks them anyway).
        if self._frozen < 0:
            self._frozen = gc.get_freeze_count()
        unfrozen = len(gc.get_objects(generation=2))
        kept = self._frozen + unfrozen
        limit = self._frozen_after_full * FULL_COLLECTION_GROWTH
        if kept > limit:
            # The count kept here never drops: objects freed since their park (a cycle's kept
            # records replaced by the next cycle's) are still in it. Before a full collection,
            # which walks every object, the exact count (a walk of the frozen objects only)
            # tells real growth from such turnover.
            kept = gc.get_freeze_count() + unfrozen
        periodic = self._parked % FULL_COLLECTION_EVERY == 0
        if periodic or kept > limit:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._frozen = self._frozen_after_full = gc.get_freeze_count()
        else:
            gc.freeze()
            self._frozen = kept

    def matcher_for(self, store: Store, mappings: MappingSet) -> Matcher:
        """The kept matcher; a new one for another store or reloaded mappings."""
        key = (id(store.engine), id(mappings))
        if self.matcher is None or self._matched_with != key:
            self.matcher = Matcher(store.engine, mappings)
            self._matched_with = key
        return self.matcher


@dataclass
class PlanReports:
    """What one planning pass queued: customer fields, quote billing, ledger postings."""

    plan: PlanReport
    quotes: QuotePlanReport
    ledger: LedgerPlanReport
    links: PassLinks = field(default_factory=lambda: PassLinks([], 0))
    """The links the three plans read (the plans after the push read the ones made since)."""


def ledger_options(config: LedgerlinkConfig | None) -> LedgerOptions:
    """The ledger's valuation options from ``[ledger]`` (home currency, fallback rates)."""
    if config is None:
        return LedgerOptions()
    return LedgerOptions(home_currency=config.ledger.home_currency, rates=config.ledger.rates)


def plan_all(
    store: Store,
    mappings: MappingSet,
    *,
    now: datetime,
    dry_run: bool = False,
    ledger: LedgerOptions | None = None,
    mapped: MappedRecords | None = None,
    kept_ledger: KeptLedgerWorld | None = None,
    kept_quotes: KeptQuotes | None = None,
) -> PlanReports:
    """Plan everything the targets need, in the order each step relies on.

    Customers first (a missing Stripe or QuickBooks customer is created, ids go back to
    Salesforce), then the billing of accepted quotes (it needs the Stripe customer), then the
    ledger postings (they need the QuickBooks customer and the Stripe money). Both ``ledgerlink
    sync run`` and the daemon's plan job call this, so they queue the same writes. ``mapped``:
    the customer planner's mapped records kept between plans (see
    :class:`ledgerlink.sync.plan.MappedRecords`); ``kept_ledger``: the ledger planner's world
    kept between plans (see :class:`KeptLedgerWorld`); ``kept_quotes``: the quotes planner's
    records kept between plans (see :class:`KeptQuotes`). The links are read once and
    handed to the three (matching, which changes them, does not run in between).
    """
    with store.engine.connect() as conn:
        read = PassLinks.read(conn)
    links = read.rows
    customers = plan(store, mappings, now=now, dry_run=dry_run, mapped=mapped, links=links)
    return PlanReports(
        plan=customers,
        quotes=plan_quotes(
            store, mappings, now=now, dry_run=dry_run, kept=kept_quotes, links=links
        ),
        ledger=plan_ledger(
            store,
            mappings,
            now=now,
            dry_run=dry_run,
            options=ledger,
            kept=kept_ledger,
            links=links,
            sending=quickbooks_customer_updates(customers),
        ),
        links=read,
    )


def quickbooks_customer_updates(report: PlanReport | None) -> dict[str, Mapping[str, Any]]:
    """QuickBooks customer id -> what ``report`` (a customer plan) updates it with: a
    customer the ledger makes in another currency in the same pass copies those values."""
    if report is None:
        return {}
    return {
        op.remote_id: op.payload
        for op in report.ops
        if op.target == "quickbooks"
        and op.object == "Customer"
        and op.action is WriteAction.UPDATE
        and op.remote_id is not None
    }


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_cycle(
    store: Store,
    connectors: Mapping[str, Connector],
    mappings: MappingSet,
    *,
    now: datetime,
    streams: Sequence[str] | None = None,
    dry_run: bool = False,
    progress: CycleProgress | None = None,
    ledger: LedgerOptions | None = None,
    on_stage: StageHook | None = None,
    cache: CycleCache | None = None,
) -> CycleReport:
    """Run one cycle over ``connectors`` (pull and push) and every customer (match and plan).

    Args:
        store: the store.
        connectors: connected connectors by name; pulled and pushed to.
        mappings: the loaded mappings.
        now: the time of the cycle (timezone-aware UTC).
        streams: only these streams (of the connectors that have them); None: all.
        dry_run: plan without queueing, push nothing.
        progress: called as the stages advance.
        ledger: the ledger's valuation options (see :func:`ledger_options`); defaults if None.
        on_stage: called with each stage's name as it starts, and ``done`` at the end.
        cache: what a long-running caller keeps between cycles (see :class:`CycleCache`);
            None reads and matches everything afresh, as a one-shot ``sync run`` must.

    Returns:
        The report of every stage (with its wall time) and the per-system summary.
    """
    with nullcontext() if cache is None else cache.holding():
        report = _run_cycle(
            store,
            connectors,
            mappings,
            now=now,
            streams=streams,
            dry_run=dry_run,
            progress=progress,
            ledger=ledger,
            on_stage=on_stage,
            cache=cache,
        )
    if cache is not None:
        cache.park()
    return report


def _run_cycle(
    store: Store,
    connectors: Mapping[str, Connector],
    mappings: MappingSet,
    *,
    now: datetime,
    streams: Sequence[str] | None,
    dry_run: bool,
    progress: CycleProgress | None,
    ledger: LedgerOptions | None,
    on_stage: StageHook | None,
    cache: CycleCache | None,
) -> CycleReport:
    report = CycleReport()
    clock = _StageClock(report, on_stage)
    clock.start("pull")
    report.pulls.extend(_pull_all(store, connectors, streams, progress))
    clock.start("match")
    match_progress = None if progress is None else lambda stage, n: progress("match", stage, n)
    if cache is not None:
        matcher = cache.matcher_for(store, mappings)
        report.matching = matcher.run(now=now, progress=match_progress)
        # The parties matching just mapped, for the plan's read of the same records.
        cache.mapped.hints = matcher.mapped
    else:
        report.matching = run_matching(store.engine, mappings, now=now, progress=match_progress)
    clock.start("plan")
    planned = plan_all(
        store,
        mappings,
        now=now,
        dry_run=dry_run,
        ledger=ledger,
        mapped=None if cache is None else cache.mapped,
        kept_ledger=None if cache is None else cache.ledger,
        kept_quotes=None if cache is None else cache.quotes,
    )
    report.plan, report.quotes, report.ledger = planned.plan, planned.quotes, planned.ledger
    if progress is not None:
        progress("plan", "writes", len(report.plan.ops))
    clock.start("push")
    if not dry_run:
        for name, connector in connectors.items():
            _push(store, connector, report, progress, name)
        links = _follow_up_ledger(
            store,
            connectors,
            mappings,
            report,
            planned.links,
            clock=clock,
            now=now,
            ledger=ledger,
            cache=cache,
            progress=progress,
        )
        _follow_up_customers(
            store,
            connectors,
            mappings,
            report,
            links,
            clock=clock,
            now=now,
            cache=cache,
            progress=progress,
        )
    clock.start("done")
    report.systems = _summaries(store, report, list(connectors))
    return report


class _StopRequestedError(Exception):
    """Ends a pull thread after the page it landed, when the cycle stops (see :func:`_pull_all`)."""


def _pull_all(
    store: Store,
    connectors: Mapping[str, Connector],
    streams: Sequence[str] | None,
    progress: CycleProgress | None,
) -> list[StreamResult]:
    """Pull every connector's streams, the connectors at the same time.

    Each connector reads its own system and lands its own records (one page per transaction,
    as :func:`~ledgerlink.sync.engine.pull` does), so they do not wait for each other: while
    one waits for its vendor's answer, another lands what its vendor sent. A connector's
    streams stay in their order. The results come in the order of ``connectors``.

    When the cycle stops (Ctrl-C, or an error that is not the vendor's in one pull), the other
    pulls stop after the page they are landing: what landed keeps its cursor, and the next
    cycle goes on from there.
    """
    stopping = threading.Event()

    def one(name: str, connector: Connector) -> list[StreamResult]:
        names = [s.name for s in connector.streams()]
        chosen = names if streams is None else [s for s in names if s in streams]

        def step(stream: str, count: int) -> None:
            if progress is not None:
                progress("pull", f"{name} {stream}", count)
            if stopping.is_set():
                raise _StopRequestedError

        return pull(store, connector, chosen, progress=step)

    if len(connectors) < 2:
        return [r for name, c in connectors.items() for r in one(name, c)]
    with ThreadPoolExecutor(max_workers=len(connectors), thread_name_prefix="pull") as pool:
        # Each thread runs in a copy of this context: log fields bound for the cycle follow.
        futures = [
            pool.submit(contextvars.copy_context().run, one, name, connector)
            for name, connector in connectors.items()
        ]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and (error := future.exception()) is not None:
                    raise error
        except BaseException:
            stopping.set()  # the pool waits for the others, each after its current page
            raise
        return [result for future in futures for result in future.result()]


FOLLOW_UP_ROUNDS = 3
"""Ledger plans made after a cycle's push at most (see :func:`_follow_up_ledger`)."""
_SETTLING_OBJECTS = frozenset({"Invoice", "CreditMemo", "Item", "Customer"})
"""QuickBooks objects whose creation other ledger documents wait for."""


def _follow_up_ledger(
    store: Store,
    connectors: Mapping[str, Connector],
    mappings: MappingSet,
    report: CycleReport,
    links: PassLinks,
    *,
    clock: _StageClock,
    now: datetime,
    ledger: LedgerOptions | None,
    cache: CycleCache | None,
    progress: CycleProgress | None,
) -> PassLinks:
    """Plan and push the ledger again while the push settled documents that waited on it.

    A document waits for its customer's QuickBooks customer (the customer planner creates it),
    for the customer in its currency or the item the ledger creates, a payment for its
    invoice's QuickBooks document. Once the push sent those, their ids are in the outbox and
    the links: a ledger plan right after it posts the waiting documents in this cycle instead
    of the next, and what they settle in turn (an invoice's payment) in the next round, up to
    :data:`FOLLOW_UP_ROUNDS` (with a kept world each looks only at the documents the sends
    woke). Each round reads the links the pushes made since ``links`` (the pass's plans'),
    and returns the links the last round read.
    """
    connector = connectors.get(LEDGER_TARGET)
    if connector is None or report.ledger is None:
        return links
    sent = any(p.target == LEDGER_TARGET and p.done for p in report.pushes)
    created = report.plan is not None and any(
        op.target == LEDGER_TARGET and op.object == "Customer" and op.action == WriteAction.CREATE
        for op in report.plan.ops
    )
    last = report.ledger
    waiting = last.waiting_on_sends + (last.waiting_on_customers if created else 0)
    while sent and waiting and len(report.ledger_follow_ups) < FOLLOW_UP_ROUNDS:
        clock.start("plan")
        with store.engine.connect() as conn:
            links = links.since(conn)
        last = plan_ledger(
            store,
            mappings,
            now=now,
            options=ledger,
            kept=None if cache is None else cache.ledger,
            links=links.rows,
            landed=False,
            sending=quickbooks_customer_updates(report.plan),
        )
        report.ledger_follow_ups.append(last)
        clock.start("push")
        if progress is not None:
            progress("plan", "ledger follow-up", last.queued)
        if not last.queued:
            return links
        pushed = _push(store, connector, report, progress, f"{LEDGER_TARGET} (follow-up)")
        # Another round only when this one created what documents wait on (a payment on an
        # invoice, a document on an item or a customer in its currency): what still waits on
        # anything else (an invoice held for a rate) would wait the same after it.
        settling = any(
            d.action == WriteAction.CREATE and d.object in _SETTLING_OBJECTS for d in last.documents
        )
        sent, waiting = bool(pushed.done), last.waiting_on_sends if settling else 0
    return links


def _follow_up_customers(
    store: Store,
    connectors: Mapping[str, Connector],
    mappings: MappingSet,
    report: CycleReport,
    links: PassLinks,
    *,
    clock: _StageClock,
    now: datetime,
    cache: CycleCache | None,
    progress: CycleProgress | None,
) -> None:
    """Plan the customers again when the push created records, and push what that queues.

    A record the hub created (a QuickBooks or Stripe customer) is linked by the push; its id
    goes back to the customer's other records (the Salesforce Account's QuickBooks and Stripe
    ids, the Stripe customer's metadata). Planned right after the push, those writes go out in
    this cycle instead of the next, whose pull then only reads their echoes (with a kept cache,
    the plan looks only at the customers whose links the push made).
    """
    if report.plan is None:
        return
    done = {p.target for p in report.pushes if p.done}
    created = any(op.action == WriteAction.CREATE and op.target in done for op in report.plan.ops)
    if not created:
        return
    clock.start("plan")
    with store.engine.connect() as conn:
        links = links.since(conn)
    follow_up = plan(
        store,
        mappings,
        now=now,
        mapped=None if cache is None else cache.mapped,
        links=links.rows,
        landed=False,
    )
    report.customer_follow_up = follow_up
    clock.start("push")
    if progress is not None:
        progress("plan", "customers follow-up", follow_up.queued)
    if not follow_up.queued:
        return
    for name in sorted({op.target for op in follow_up.ops}):
        connector = connectors.get(name)
        if connector is None:
            continue
        _push(store, connector, report, progress, f"{name} (follow-up)")


def _push(
    store: Store,
    connector: Connector,
    report: CycleReport,
    progress: CycleProgress | None,
    label: str,
) -> PushReport:
    """Push ``connector``'s pending rows (linking what it creates) into ``report``."""
    pushed = push(store, connector, worker_id=_worker_id(), on_result=record_results)
    report.pushes.append(pushed)
    if progress is not None:
        progress("push", label, pushed.sent)
    return pushed


class _StageClock:
    """Times the stages of one cycle into ``report.seconds`` and tells ``on_stage``."""

    def __init__(self, report: CycleReport, on_stage: StageHook | None) -> None:
        self.report = report
        self.on_stage = on_stage
        self.stage: str | None = None
        self.since = 0.0

    def start(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage is not None:  # a stage may come twice (the ledger's follow-up)
            seconds = self.report.seconds
            seconds[self.stage] = seconds.get(self.stage, 0.0) + now - self.since
        self.stage, self.since = stage, now
        if self.on_stage is not None:
            self.on_stage(stage)


def _summaries(
    store: Store, report: CycleReport, systems: Sequence[str]
) -> dict[str, SystemSummary]:
    lines = {name: SystemSummary(name) for name in systems}
    for result in report.pulls:
        line = lines[result.connector]
        line.read += result.read
        line.changed += result.inserted + result.updated + result.deleted
    for pushed in report.pushes:
        if pushed.target in lines:
            lines[pushed.target].written += pushed.done
            lines[pushed.target].failed += pushed.failed
    if report.plan is not None:
        for conflict in report.plan.conflicts:
            if conflict.target in lines:
                lines[conflict.target].review += 1
    with store.engine.connect() as conn:
        links = conn.execute(
            select(_LINK.c.system, _LINK.c.status, func.count()).group_by(
                _LINK.c.system, _LINK.c.status
            )
        )
        for system, status, count in links:
            if system in lines:
                if status == LinkStatus.LINKED.value:
                    lines[system].matched += count
                elif status == LinkStatus.REVIEW.value:
                    lines[system].review += count
        held = conn.execute(
            select(_QUARANTINE.c.system, func.count())
            .where(_QUARANTINE.c.resolved_at.is_(None))
            .group_by(_QUARANTINE.c.system)
        )
        for system, count in held:
            if system in lines:
                lines[system].quarantined += count
    return lines
