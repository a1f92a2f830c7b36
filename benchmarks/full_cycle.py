"""Full cycle at scale: 100,000 companies and about 1,000,000 Stripe invoices and payments.

The Salesforce, Stripe and QuickBooks sandboxes start from one shared roster of companies
(:class:`ledgerlink.connector.roster.Roster`) in a **vendor process** of their own, so that
the figures of this process (time, peak RSS) are ledgerlink's alone and the vendors' work runs
on the other core, as it would on the vendors' servers. The vendor process answers commands
over a pipe: seed, count API calls, change records, check the books.

Shape of the data (``--companies N --invoices M``):

* the roster's Accounts in Salesforce, customers in Stripe and QuickBooks (about 0.94, 0.70
  and 0.60 per company), Salesforce's seeded contacts, deals and a few accepted quotes;
* Stripe's seeded billing (two invoices per customer, each with a payment intent and a charge;
  about 90% paid, so with a succeeded charge and its balance transaction; refunds, disputes,
  credit notes, payouts), plus extra **paid** invoices of the customers' subscriptions, each
  with its payment intent, succeeded charge and balance transaction (with the fee), until
  invoices + succeeded charges reach M. The extra objects are generated lazily by the sandbox
  like its seed (they cost no memory until read).

Cycle 1 runs :func:`ledgerlink.sync.cycle.run_cycle` until quiet (a pass that plans and sends
nothing, no outbox row pending): creating customers, posting invoices, then their payments
take several passes. Then ``--change`` (1%) of the records change in the sandboxes: Salesforce
Account names and phones, new paid Stripe invoices (each with its charge), Stripe invoices
amended (metadata edited in the dashboard), QuickBooks customers edited by a bookkeeper; cycle
2 runs until quiet again (``--cycles N``: N - 1 such cycles, each changing other records, for
more samples of a host that varies). Per pass and stage (pull, match, plan, push): wall time,
API calls per system (counted by the sandboxes), records read and written, peak RSS; then each
later cycle / cycle 1.
``--check`` counts duplicates and missing documents in the sandboxes and the trial balance,
like ``reliability_cycles.py`` (slow at full scale: it reads every document), and the writes a
plan keeping nothing (every record read again) still wants: the kept plans of the passes must
leave none.

    .venv/bin/python benchmarks/full_cycle.py --companies 1000 --invoices 10000 --check
    .venv/bin/python benchmarks/full_cycle.py --database postgresql
    .venv/bin/python benchmarks/full_cycle.py --profile /tmp/cycle.prof   # cProfile of cycles
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import gc
import itertools
import multiprocessing as mp
import os
import pstats
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledgerlink.log import configure_logging

configure_logging(level="WARNING")

# ruff: noqa: E402 - imported after the logging configuration above, on purpose
import psycopg
from sqlalchemy import make_url
from sqlalchemy.engine import Engine

SYSTEMS = ("salesforce", "stripe", "quickbooks")
STAGES = ("pull", "match", "plan", "push")
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_DAY = 86_400


# -- the vendor process -------------------------------------------------------------------------


class _Vendors:
    """The three sandboxes, living in the vendor process."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, Any] = {}
        self.shape: dict[str, int] = {}

    def setup(self, companies: int, invoices: int, seed: int) -> dict[str, Any]:
        from ledgerlink.connector import SandboxOptions, load_plugin
        from ledgerlink.connector.roster import Roster

        options = SandboxOptions(
            seed=seed, size=companies, roster=Roster(companies=companies, seed=seed)
        )
        for system in SYSTEMS:
            self.sandboxes[system] = load_plugin(system).start_sandbox(options)
        limits = self.sandboxes["quickbooks"].limits
        limits.requests_per_second = None
        limits.requests_per_minute = None
        limits.batch_per_minute = None
        stripe = self.sandboxes["stripe"]
        stripe.seed_one_time_prices()
        self.sandboxes["salesforce"].seed_accepted_quotes()
        self.shape = _extend_stripe(stripe, invoices)
        self.shape["salesforce Accounts"] = (
            self.sandboxes["salesforce"].org.tables["Account"].base_count
        )
        self.shape["quickbooks Customers"] = len(Roster(companies, seed).rows("quickbooks"))
        return {
            "settings": {s: box.connector_settings() for s, box in self.sandboxes.items()},
            "shape": self.shape,
        }

    def counts(self) -> dict[str, int]:
        return {s: box.faults.request_count for s, box in self.sandboxes.items()}

    def calls_by_path(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for system, box in self.sandboxes.items():
            counter: Counter[str] = Counter()
            for method, path in box.faults.requests:
                counter[f"{method} {_path_kind(path)}"] += 1
            out[system] = dict(counter.most_common())
        return out

    def served_by_path(self, since: dict[str, int] | None = None) -> dict[str, Any]:
        """Per system: the served requests so far (to pass back as ``since``) and the seconds
        the sandbox took to answer them by endpoint, slowest first, counting only those
        after ``since``."""
        out: dict[str, Any] = {}
        for system, box in self.sandboxes.items():
            served = box.faults.served
            seconds: Counter[str] = Counter()
            for method, path, took in served[(since or {}).get(system, 0) :]:
                seconds[f"{method} {_path_kind(path)}"] += took
            out[system] = {
                "served": len(served),
                "seconds": {k: round(v, 2) for k, v in seconds.most_common(8)},
                "total": round(sum(seconds.values()), 2),
            }
        return out

    def change(self, rate: float, seed: int) -> dict[str, int]:
        return _change(self.sandboxes, self.shape, rate, seed)

    def check(self, url: str) -> dict[str, Any]:
        sys.path.insert(0, str(Path(__file__).parent))
        from reliability_cycles import CycleRunResult, _check

        from ledgerlink.store import create_engine_for

        engine = create_engine_for(url)
        try:
            result = CycleRunResult(name="check", companies=0)
            _check(result, self.sandboxes, engine)
        finally:
            engine.dispose()
        return {
            "duplicates": {k: v for k, v in result.duplicates.items() if v},
            "missing": {k: v for k, v in result.missing.items() if v},
            "wanted by a full re-plan": dict(result.unconverged),
            "posted": dict(result.posted),
            "held": result.held,
            "quarantined": result.quarantined,
            "trial balance": str(result.trial_balance),
            "outbox": result.outbox,
        }

    def rss(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def stop(self) -> None:
        for box in self.sandboxes.values():
            box.stop()


def _served(served: dict[str, Any]) -> dict[str, Any]:
    """What :meth:`_Vendors.served_by_path` found, without the request counts."""
    return {system: {k: v for k, v in f.items() if k != "served"} for system, f in served.items()}


def _path_kind(path: str) -> str:
    """A request path without its ids, to count calls by endpoint."""
    parts = []
    for part in path.split("/"):
        if any(ch.isdigit() for ch in part) and part not in ("v1", "v3", "v64.0"):
            parts.append("{id}")
        else:
            parts.append(part)
    return "/".join(parts)


def _vendor_main(conn: Any) -> None:
    """Serve commands from the benchmark process until ``stop``."""
    vendors = _Vendors()
    while True:
        command, kwargs = conn.recv()
        try:
            result = getattr(vendors, command)(**kwargs)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", traceback.format_exc()))
            continue
        conn.send(("ok", result))
        if command == "stop":
            return


class VendorProcess:
    """The benchmark's handle on the vendor process."""

    def __init__(self) -> None:
        context = mp.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_vendor_main, args=(child,), daemon=True)
        self._process.start()

    def call(self, command: str, **kwargs: Any) -> Any:
        self._conn.send((command, kwargs))
        status, result = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"vendor process failed in {command}:\n{result}")
        return result

    def close(self) -> None:
        try:
            self.call("stop")
        finally:
            self._process.join(timeout=30)


# -- seeding Stripe at scale ----------------------------------------------------------------------


def _extend_stripe(stripe: Any, invoices_and_payments: int) -> dict[str, int]:
    """Add lazily generated paid invoices (with their payments) until the target is reached.

    Seeded object ``i`` of a kind is a pure function of ``i``; this extends the invoice,
    payment intent, charge and balance transaction kinds past their seeded counts with the
    same kind of factory: extra invoice ``x`` is a monthly invoice of customer ``x % n``'s
    subscription, paid by card, with its charge and the charge's balance transaction (fee
    2.9% + 30). Returns the shape of the Stripe data.
    """
    from ledgerlink_stripe.sandbox.data import SeedKind

    state = stripe.state
    cat = state.catalog
    customers = cat.counts["customer"]
    seeded_invoices = cat.counts["invoice"]
    seeded_paid = sum(1 for j in range(seeded_invoices) if cat.invoice_paid(j))
    # Finalized, non-zero seeded invoices: open, paid, uncollectible (void ones are not posted).
    extra = max(0, (invoices_and_payments - seeded_invoices - seeded_paid + 1) // 2)
    first = {
        kind: cat.counts[kind]
        for kind in ("invoice", "payment_intent", "charge", "balance_transaction")
    }
    span = cat.end - cat.start

    def created(x: int) -> int:
        return cat.start + span * x // max(1, extra)

    def invoice(x: int) -> dict[str, Any]:
        customer = x % customers
        inv = cat._make_invoice(2 * customer + 1)
        when = created(x)
        inv_id = cat.id("invoice", first["invoice"] + x)
        amount = inv["amount_due"]
        line = dict(inv["lines"]["data"][0])
        line["id"] = f"il_{inv_id[3:]}"
        line["period"] = {"start": when, "end": when + 30 * _DAY}
        inv.update(
            id=inv_id,
            created=when,
            status="paid",
            paid=True,
            amount_paid=amount,
            amount_remaining=0,
            auto_advance=False,
            billing_reason="subscription_cycle",
            number=f"{inv['number'][:-5]}-{x // customers + 3:04d}",
            charge=cat.id("charge", first["charge"] + x),
            payment_intent=cat.id("payment_intent", first["payment_intent"] + x),
            period_start=when - 30 * _DAY,
            period_end=when,
            webhooks_delivered_at=when,
            status_transitions={
                "finalized_at": when,
                "marked_uncollectible_at": None,
                "paid_at": when,
                "voided_at": None,
            },
            lines={**inv["lines"], "data": [line], "url": f"/v1/invoices/{inv_id}/lines"},
        )
        return inv

    def payment_intent(x: int) -> dict[str, Any]:
        inv = invoice(x)
        return cat._base(
            "payment_intent",
            first["payment_intent"] + x,
            amount=inv["amount_due"],
            amount_received=inv["amount_due"],
            currency=inv["currency"],
            customer=inv["customer"],
            invoice=inv["id"],
            capture_method="automatic",
            confirmation_method="automatic",
            description=None,
            metadata={},
            latest_charge=inv["charge"],
            payment_method_types=["card"],
            status="succeeded",
            last_payment_error=None,
            canceled_at=None,
            cancellation_reason=None,
            payment_method=None,
        ) | {"created": inv["created"]}

    def charge(x: int) -> dict[str, Any]:
        inv = invoice(x)
        return cat._base(
            "charge",
            first["charge"] + x,
            amount=inv["amount_due"],
            amount_captured=inv["amount_due"],
            amount_refunded=0,
            currency=inv["currency"],
            customer=inv["customer"],
            invoice=inv["id"],
            payment_intent=inv["payment_intent"],
            captured=True,
            paid=True,
            refunded=False,
            disputed=False,
            status="succeeded",
            balance_transaction=cat.id("balance_transaction", first["balance_transaction"] + x),
            billing_details={"address": None, "email": None, "name": None, "phone": None},
            failure_code=None,
            failure_message=None,
            metadata={},
            description=None,
            outcome=None,
            payment_method=None,
            receipt_email=None,
            statement_descriptor=None,
        ) | {"created": inv["created"]}

    def balance_transaction(x: int) -> dict[str, Any]:
        paid = charge(x)
        fixed = 0 if paid["currency"] == "jpy" else 30
        return cat._txn(
            first["balance_transaction"] + x,
            paid["id"],
            paid["amount"],
            currency=paid["currency"],
            kind="charge",
            created=paid["created"],
            fee=round(paid["amount"] * 0.029) + fixed,
        )

    makers: dict[str, Callable[[int], dict[str, Any]]] = {
        "invoice": invoice,
        "payment_intent": payment_intent,
        "charge": charge,
        "balance_transaction": balance_transaction,
    }
    for kind, make_extra in makers.items():
        seeded = cat.kinds[kind]
        base = first[kind]

        def make(
            index: int, seeded: Any = seeded, base: int = base, extra_: Any = make_extra
        ) -> Any:
            return seeded.make(index) if index < base else extra_(index - base)

        extended = SeedKind(seeded.object, seeded.prefix, base + extra, make, seeded.seed)
        cat.kinds[kind] = extended
        state.store(kind).kind = extended
    return {
        "stripe customers": customers,
        "stripe invoices (seeded)": seeded_invoices,
        "stripe invoices paid (seeded)": seeded_paid,
        "stripe invoices (extra, paid)": extra,
        "stripe invoices": seeded_invoices + extra,
        "stripe succeeded charges": seeded_paid + extra,
    }


# -- the 1% change ---------------------------------------------------------------------------------


def _change(
    sandboxes: dict[str, Any], shape: dict[str, int], rate: float, seed: int
) -> dict[str, int]:
    """Change ``rate`` of the records in every sandbox, as users and customers would."""
    import random

    rnd = random.Random(seed)
    made: dict[str, int] = {}
    # Salesforce: Account names and phones edited by sales people.
    org = sandboxes["salesforce"].org
    accounts = org.tables["Account"]
    picked = rnd.sample(range(accounts.base_count), max(1, int(accounts.base_count * rate)))
    for index in picked:
        record = accounts.get(accounts.id_for(index))
        assert record is not None
        org.touch(
            "Account",
            record["Id"],
            Name=f"{record['Name']} Group",
            Phone=f"+1 555 {index % 1000:03d} {index % 10000:04d}",
        )
    made["salesforce Accounts edited"] = len(picked)

    # Stripe: new paid invoices (each with its charge) for ``rate`` of invoices + payments.
    stripe = sandboxes["stripe"]
    billing = stripe.billing
    customers = shape["stripe customers"]
    new = max(1, int((shape["stripe invoices"] + shape["stripe succeeded charges"]) * rate / 2))
    cat = stripe.state.catalog
    for n in range(new):
        customer_id = cat.id("customer", rnd.randrange(customers))
        customer = stripe.state.store("customer").get(customer_id)
        if customer is None:
            continue
        currency = str(customer.get("currency") or "usd")
        unit = 1_000 + (n * 104_729) % 90_000
        billing.create_invoice_item(
            {
                "customer": customer_id,
                "currency": currency,
                "unit_amount": unit // 100 if currency == "jpy" else unit,
                "quantity": 1 + n % 3,
                "description": "Usage",
            }
        )
        invoice = billing.create_invoice(
            {
                "customer": customer_id,
                "currency": currency,
                "pending_invoice_items_behavior": "include",
            }
        )
        billing.pay_invoice(invoice["id"], {"payment_method": "pm_card_visa"})
    billing.settle_charges()
    made["stripe invoices paid (new)"] = new
    # A few invoices amended in the dashboard (metadata), 0.1%.
    amended = max(1, int(shape["stripe invoices"] * rate / 10))
    store = stripe.state.store("invoice")
    for index in rnd.sample(range(shape["stripe invoices"]), amended):
        invoice_id = cat.id("invoice", index)
        current = store.get(invoice_id)
        if current is None:
            continue
        changed = {
            **current,
            "metadata": {**current.get("metadata", {}), "po_number": f"PO-{index}"},
        }
        store.put(changed)
        stripe.state.emit("invoice.updated", changed, {"metadata": current.get("metadata", {})})
    made["stripe invoices amended"] = amended

    # QuickBooks: a bookkeeper edits 0.1% of the customers' notes.
    quickbooks = sandboxes["quickbooks"]
    ids = [str(c["Id"]) for c in quickbooks.company.table("Customer").by_id()]
    edited = rnd.sample(ids, max(1, int(len(ids) * rate / 10)))
    for customer_id in edited:
        quickbooks.edit("Customer", customer_id, Notes="called about the renewal")
    made["quickbooks Customers edited"] = len(edited)
    return made


# -- measuring -------------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's resident set every 50 ms; ``take()`` returns the peak since."""

    def __init__(self) -> None:
        self._peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _current(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._peak = max(self._peak, self._current())

    def take(self) -> float:
        """Peak RSS in MiB since the last call, then start again from now."""
        peak = max(self._peak, self._current())
        self._peak = self._current()
        return peak / 2**20

    def stop(self) -> None:
        self._stop.set()


class StackSampler:
    """A sampling profiler of the main thread (what py-spy would show), light enough to keep on.

    Every ``interval`` seconds it records the main thread's stack: each function on it counts
    once towards its inclusive share, the innermost towards its own share.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.inclusive: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self.samples = 0
        self._main = threading.main_thread().ident
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            frame = sys._current_frames().get(self._main or 0)
            if frame is None:
                continue
            self.samples += 1
            seen: set[str] = set()
            leaf = True
            while frame is not None:
                code = frame.f_code
                path = Path(code.co_filename)
                name = f"{path.parent.name}/{path.name}:{code.co_name}"
                if "site-packages" in code.co_filename or "/lib/python" in code.co_filename:
                    name = f"lib:{name}"
                if leaf:
                    self.own[name] += 1
                    leaf = False
                if name not in seen:
                    seen.add(name)
                    self.inclusive[name] += 1
                frame = frame.f_back

    def report(self, top: int = 90, *, stop: bool = True) -> str:
        if stop:
            self._stop.set()
        total = max(1, self.samples)
        lines = [f"{self.samples} samples; inclusive share, then own share:"]
        lines += [
            f"  {100 * n / total:5.1f}%  {name}"
            for name, n in self.inclusive.most_common()
            if not name.startswith("lib:")
        ][:top]
        lines.append("  --- own")
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self.own.most_common(top)]
        return "\n".join(lines)


@dataclass
class StageFigures:
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYSTEMS, 0))
    read: int = 0
    written: int = 0
    peak_mib: float = 0.0

    def add(self, other: StageFigures) -> None:
        self.seconds += other.seconds
        for system in SYSTEMS:
            self.calls[system] += other.calls[system]
        self.read += other.read
        self.written += other.written
        self.peak_mib = max(self.peak_mib, other.peak_mib)


@dataclass
class PassFigures:
    stages: dict[str, StageFigures] = field(default_factory=dict)
    seconds: float = 0.0
    planned: int = 0
    sent: int = 0
    pulled_changed: int = 0
    gc_seconds: float = 0.0
    gc_full: int = 0
    customer_seconds: float = 0.0
    """The customer planner's time (its follow-up after the push included)."""
    customers_planned: int = 0
    """Golden customers the customer planner planned (and its follow-up)."""


class GcClock:
    """Time spent in Python's cyclic garbage collector, and its full (generation 2) runs.

    A full collection walks every tracked object: with the gigabytes a kept cache holds at
    full scale it takes seconds, and it lands in whatever stage allocated last.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2  # the oldest generation


GC_CLOCK = GcClock()
_DAYS: list[Any] = []
"""The UTC date each pass began on (a kept plan plans everything again on a new day)."""


def _total(passes: list[PassFigures]) -> dict[str, StageFigures]:
    totals = {stage: StageFigures() for stage in STAGES}
    for figures in passes:
        for stage, stage_figures in figures.stages.items():
            totals[stage].add(stage_figures)
    return totals


# -- the run ----------------------------------------------------------------------------------------


@contextmanager
def _database(kind: str) -> Iterator[str]:
    """A fresh, empty database: a temporary SQLite file, or a new PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ledgerlink-fullcycle-") as folder:
            yield f"sqlite:///{Path(folder) / 'cycle.db'}"
        return
    server = make_url(
        os.environ.get("LEDGERLINK_BENCH_DATABASE_URL")
        or os.environ.get("LEDGERLINK_TEST_DATABASE_URL")
        or DEFAULT_SERVER
    ).set(drivername="postgresql+psycopg")
    name = f"ledgerlink_fullcycle_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(
        server.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _connect(settings: dict[str, dict[str, Any]], engine: Engine) -> dict[str, Any]:
    """Connect to each sandbox; QuickBooks' client throttle is off (the sandbox's too)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings
    from reliability_faults import MemorySecrets

    from ledgerlink.connector import ConnectorContext, load_plugin
    from ledgerlink.store import DbSecretStore, generate_key
    from ledgerlink.sync.runtime import connect

    secrets = DbSecretStore(engine, generate_key())
    connectors: dict[str, Any] = {
        name: connect(load_plugin(name), settings[name], secrets)
        for name in ("salesforce", "stripe")
    }
    quickbooks = QuickBooksConnector(
        QuickBooksSettings.model_validate(
            {
                **settings["quickbooks"],
                "requests_per_minute": 100_000_000,
                "batch_requests_per_minute": 100_000_000,
            }
        ),
        ConnectorContext(secrets=MemorySecrets()),
    )
    quickbooks.http.rate_limiter = None
    connectors["quickbooks"] = quickbooks
    return connectors


def _queued(report: Any) -> int:
    """New outbox rows of a pass (a wanted write already queued, done or failed is not new)."""
    return (
        (report.plan.queued if report.plan else 0)
        + (report.quotes.queued if report.quotes else 0)
        + (report.ledger.queued if report.ledger else 0)
        + sum(f.queued for f in report.ledger_follow_ups)
        + (report.customer_follow_up.queued if report.customer_follow_up else 0)
    )


def _quiet(report: Any, engine: Engine) -> bool:
    from ledgerlink.sync.outbox import count_by_status

    planned = _queued(report)
    sent = sum(p.sent for p in report.pushes)
    counts = count_by_status(engine)
    waiting = sum(counts.get(s, 0) for s in ("pending", "in_flight"))
    return report.ok and planned == 0 and sent == 0 and waiting == 0


def run_pass(
    store: Any,
    connectors: dict[str, Any],
    mappings: Any,
    ledger: Any,
    vendors: VendorProcess,
    sampler: RssSampler,
    profiler: cProfile.Profile | None,
    cache: Any,
) -> tuple[PassFigures, Any]:
    """One ``run_cycle``, with time, API calls and peak RSS attributed to each stage."""
    from ledgerlink.sync.cycle import run_cycle

    figures = PassFigures()
    marks: list[tuple[str, float, dict[str, int], float]] = []

    def on_stage(stage: str) -> None:
        if profiler is not None:
            profiler.disable()
        marks.append((stage, time.perf_counter(), vendors.call("counts"), sampler.take()))
        if profiler is not None:
            profiler.enable()

    started = time.perf_counter()
    gc_before = (GC_CLOCK.seconds, GC_CLOCK.full)
    if profiler is not None:
        profiler.enable()
    try:
        report = run_cycle(
            store,
            connectors,
            mappings,
            now=datetime.now(UTC),
            ledger=ledger,
            on_stage=on_stage,
            cache=cache,
        )
    finally:
        if profiler is not None:
            profiler.disable()
    figures.seconds = time.perf_counter() - started
    figures.gc_seconds = GC_CLOCK.seconds - gc_before[0]
    figures.gc_full = GC_CLOCK.full - gc_before[1]
    for (stage, at, calls, _), (_, end, calls_end, peak) in itertools.pairwise(marks):
        # plan and push come twice when the ledger follows up on what the push sent
        figures.stages.setdefault(stage, StageFigures()).add(
            StageFigures(
                seconds=end - at,
                calls={s: calls_end[s] - calls[s] for s in SYSTEMS},
                peak_mib=peak,
            )
        )
    figures.stages["pull"].read = sum(r.read for r in report.pulls)
    figures.stages["pull"].written = sum(r.inserted + r.updated + r.deleted for r in report.pulls)
    figures.pulled_changed = figures.stages["pull"].written
    if report.matching is not None:
        figures.stages["match"].read = report.matching.changed
        figures.stages["match"].written = report.matching.rows_written
    planned = _queued(report)
    figures.planned = planned
    figures.stages["plan"].written = planned
    figures.sent = sum(p.sent for p in report.pushes)
    figures.stages["push"].written = sum(p.done for p in report.pushes)
    figures.stages["push"].read = figures.sent
    for plan_report in (report.plan, report.customer_follow_up):
        if plan_report is not None:
            figures.customer_seconds += plan_report.seconds
            figures.customers_planned += plan_report.customers
    return figures, report


def run_cycle_until_quiet(
    name: str,
    store: Any,
    connectors: dict[str, Any],
    mappings: Any,
    ledger: Any,
    vendors: VendorProcess,
    sampler: RssSampler,
    *,
    passes_max: int,
    profiles: PassProfiles | None,
    cache: Any,
) -> list[PassFigures]:
    """Passes of ``run_cycle`` until one plans and sends nothing and the outbox is empty."""
    passes: list[PassFigures] = []
    while len(passes) < passes_max:
        since = _last_outbox_id(store.engine)
        day = datetime.now(UTC).date()
        if _DAYS and _DAYS[-1] != day and cache is not None:
            print(
                f"  a new day (UTC) began before {name} pass {len(passes) + 1}: a kept plan "
                "plans every customer again once a day, so this pass does",
                flush=True,
            )
        _DAYS.append(day)
        profiler = None if profiles is None else cProfile.Profile()
        figures, report = run_pass(
            store, connectors, mappings, ledger, vendors, sampler, profiler, cache
        )
        passes.append(figures)
        if profiles is not None and profiler is not None:
            profiles.add(f"{name} pass {len(passes)}", profiler)
        stages = (
            " ".join(f"{stage} {figures.stages[stage].seconds:.1f}s" for stage in STAGES)
            + f" [plan: customers {report.plan.seconds:.1f}s ({report.plan.customers} planned"
            + f", {report.plan.hubs_only} for hub values alone)"
            + f", ledger {report.ledger.seconds:.1f}s"
            + (
                f", ledger follow-up {sum(f.seconds for f in report.ledger_follow_ups):.1f}s "
                f"({len(report.ledger_follow_ups)} rounds, "
                f"{sum(f.queued for f in report.ledger_follow_ups)} queued)]"
                if report.ledger_follow_ups
                else "]"
            )
            + (
                f" [customers follow-up {report.customer_follow_up.seconds:.1f}s "
                f"({report.customer_follow_up.queued} queued)]"
                if report.customer_follow_up is not None
                else ""
            )
        )
        calls = sum(sum(s.calls.values()) for s in figures.stages.values())
        print(
            f"{name} pass {len(passes)}: {figures.seconds:.1f} s ({stages}); "
            f"pulled changed {figures.pulled_changed}, planned {figures.planned}, "
            f"sent {figures.sent}, {calls} API calls; garbage collector {figures.gc_seconds:.1f} s "
            f"({figures.gc_full} full); load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if figures.planned:
            print(f"  queued: {_queued_kinds(store.engine, since)}", flush=True)
        slowest = sorted(report.pulls, key=lambda r: -r.seconds)[:5]
        print(
            "  slowest streams: "
            + ", ".join(
                f"{r.connector}/{r.stream} {r.seconds:.2f}s ({r.pages} pages, {r.read} read)"
                for r in slowest
            ),
            flush=True,
        )
        by_connector: dict[str, float] = {}
        for r in report.pulls:
            by_connector[r.connector] = by_connector.get(r.connector, 0.0) + r.seconds
        print(
            "  pull by connector (its streams one after the other): "
            + ", ".join(f"{name} {sum_:.2f}s" for name, sum_ in sorted(by_connector.items())),
            flush=True,
        )
        if not report.ok:
            errors = [f"{r.connector}/{r.stream}: {r.error}" for r in report.pulls if not r.ok]
            failed = {p.target: p.failed for p in report.pushes if p.failed}
            stopped = {p.target: p.stopped for p in report.pushes if p.stopped}
            print(f"  not ok: pulls {errors}, failed writes {failed}, stopped {stopped}")
        if _quiet(report, store.engine):
            break
    return passes


class PassProfiles:
    """One cProfile per pass: each written beside ``path`` (``PATH.cycle-2-pass-1``), all of
    them together to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.files: list[str] = []

    def add(self, name: str, profiler: cProfile.Profile) -> None:
        file = f"{self.path}.{name.replace(' ', '-')}"
        profiler.dump_stats(file)
        self.files.append(file)

    def write(self) -> None:
        if self.files:
            pstats.Stats(*self.files).dump_stats(self.path)


def _last_outbox_id(engine: Engine) -> int:
    from sqlalchemy import func, select

    from ledgerlink.store.models import Outbox

    with engine.connect() as conn:
        return int(conn.execute(select(func.max(Outbox.__table__.c.id))).scalar() or 0)


def _queued_kinds(engine: Engine, since: int) -> str:
    """The outbox rows a pass queued, by target, object and action (where passes go)."""
    from sqlalchemy import func, select

    from ledgerlink.store.models import Outbox

    table = Outbox.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.target, table.c.object, table.c.action, func.count())
            .where(table.c.id > since)
            .group_by(table.c.target, table.c.object, table.c.action)
            .order_by(func.count().desc())
        ).all()
    return ", ".join(f"{t} {o} {a} {n}" for t, o, a, n in rows)


def _print_failed(engine: Engine) -> None:
    """Outbox rows that gave up, by target, object and first words of the error."""
    from sqlalchemy import select

    from ledgerlink.store.models import Outbox

    table = Outbox.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.target, table.c.object, table.c.last_error).where(
                table.c.status == "failed"
            )
        ).all()
    # The first words only: messages that name their record would each count apart.
    reasons = Counter(f"{r.target} {r.object}: {str(r.last_error)[:60]}" for r in rows)
    for reason, count in reasons.most_common(10):
        print(f"failed outbox rows: {count} x {reason}")


def _table(cycles: dict[str, list[PassFigures]]) -> str:
    """Per cycle and stage: time, API calls per system, records, peak RSS; with the ratio."""
    totals = {name: _total(passes) for name, passes in cycles.items()}
    header = (
        "| cycle | stage | passes | wall s | Salesforce calls | Stripe calls | QuickBooks calls "
        "| records read | records written | peak RSS MiB |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [header]
    for name, stages in totals.items():
        whole = StageFigures()
        for stage in STAGES:
            figures = stages[stage]
            whole.add(figures)
            lines.append(_row(name, stage, len(cycles[name]), figures))
        lines.append(_row(name, "**all**", len(cycles[name]), whole))
    names = list(totals)
    for later in names[1:]:
        first, second = totals[names[0]], totals[later]
        # Every stage for the second cycle; the whole of each later one (``--cycles``).
        for stage in (*STAGES, "all") if later == names[1] else ("all",):
            if stage == "all":
                a, b = StageFigures(), StageFigures()
                for s in STAGES:
                    a.add(first[s])
                    b.add(second[s])
            else:
                a, b = first[stage], second[stage]
            lines.append(
                f"| {later} / {names[0]} | {stage} | | {_ratio(b.seconds, a.seconds)} | "
                + " | ".join(_ratio(b.calls[s], a.calls[s]) for s in SYSTEMS)
                + f" | {_ratio(b.read, a.read)} | {_ratio(b.written, a.written)} | |"
            )
    return "\n".join(lines)


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _at_first_rates(cycles: dict[str, list[PassFigures]]) -> str:
    """What each later cycle would take at cycle 1's own rates, beside what it took.

    Each stage's time in cycle 1 per unit it handled, times the units the later cycle
    handled: records landed (pull), parties matched (match), golden customers planned (the
    customer planner) and writes queued (the rest of the plan: quotes, ledger), rows sent
    (push). A change of 1% of the records moves more than 1% of the customers (a new
    invoice moves its customer's balance and dates), so this is the later cycle's cost
    as the work it does sets it; what it takes beyond is what a pass costs whatever it
    handles and the per-record cost of reading changes incrementally.
    """
    names = list(cycles)
    first = cycles[names[0]]
    totals = _total(first)
    customers_s = sum(p.customer_seconds for p in first)
    customers_n = sum(p.customers_planned for p in first)
    lines = []
    for name in names[1:]:
        later = cycles[name]
        stages = _total(later)
        customers = sum(p.customers_planned for p in later)
        terms = {
            "pull": totals["pull"].seconds * _share(stages["pull"].read, totals["pull"].read),
            "match": totals["match"].seconds * _share(stages["match"].read, totals["match"].read),
            "customers": customers_s * _share(customers, customers_n),
            "rest of plan": (totals["plan"].seconds - customers_s)
            * _share(stages["plan"].written, totals["plan"].written),
            "push": totals["push"].seconds * _share(stages["push"].read, totals["push"].read),
        }
        expected = sum(terms.values())
        whole = sum(totals[s].seconds for s in STAGES)
        took = sum(stages[s].seconds for s in STAGES)
        lines.append(
            f"{name} at {names[0]}'s rates: {expected:.1f} s, {_ratio(expected, whole)} of "
            f"{names[0]} ("
            + ", ".join(f"{k} {v:.2f}s" for k, v in terms.items())
            + f"; customers planned {customers:,} of {customers_n:,}, "
            f"{_ratio(customers, customers_n)}); it took {took:.1f} s, {_ratio(took, whole)}"
        )
    return "\n".join(lines)


def _row(name: str, stage: str, passes: int, figures: StageFigures) -> str:
    return (
        f"| {name} | {stage} | {passes} | {figures.seconds:,.1f} | "
        + " | ".join(f"{figures.calls[s]:,}" for s in SYSTEMS)
        + f" | {figures.read:,} | {figures.written:,} | {figures.peak_mib:,.0f} |"
    )


def _ratio(part: float, whole: float) -> str:
    return "-" if not whole else f"{100 * part / whole:.1f}%"


def main() -> int:
    """Seed, run cycle 1 until quiet, change 1%, run cycle 2 until quiet; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument(
        "--invoices", type=int, default=1_000_000, help="Stripe invoices + payments, about"
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--change", type=float, default=0.01, help="share of records changed")
    parser.add_argument(
        "--cycles",
        type=int,
        default=2,
        help="cycles in all: after the first, each changes --change of the records again "
        "(other ones) and runs until quiet (default 2; more give more samples of the ratio)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--passes-max", type=int, default=12, help="passes per cycle at most")
    parser.add_argument("--check", action="store_true", help="count duplicates and missing writes")
    parser.add_argument(
        "--profile",
        help="write a cProfile of the cycles to this file (and of each pass beside it)",
    )
    parser.add_argument(
        "--profile-cycle",
        choices=("1", "2", "both"),
        default="both",
        help="which cycles --profile covers: 1, the later ones (2) or both (default)",
    )
    parser.add_argument("--keep", help="SQLite: copy the store to this file at the end")
    parser.add_argument(
        "--sample", action="store_true", help="print a sampling profile of this process at the end"
    )
    parser.add_argument("--calls", action="store_true", help="print API calls by endpoint")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="match and map everything every pass (as ledgerlink sync run does) instead of "
        "keeping the matcher and the mapped records between passes (as the daemon does)",
    )
    args = parser.parse_args()

    # ``kill -USR1 PID`` prints every thread's stack (of either process) to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    vendors = VendorProcess()  # forked before this process starts any thread
    from ledgerlink_quickbooks.accounts import ensure_accounts

    from ledgerlink.cli.demo import DEMO_RATES
    from ledgerlink.mapping import load_mappings
    from ledgerlink.store import Store, create_engine_for, upgrade
    from ledgerlink.sync.cycle import CycleCache
    from ledgerlink.sync.ledger import LedgerOptions

    load = os.getloadavg()
    print(
        f"full cycle: {args.companies:,} companies, ~{args.invoices:,} invoices + payments, "
        f"{args.database}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
        f"{os.cpu_count()} CPUs; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    sampler = RssSampler()
    stacks: StackSampler | None = None

    def print_stacks(*_: object) -> None:
        if stacks is not None:
            print(stacks.report(stop=False), flush=True)

    signal.signal(signal.SIGUSR2, print_stacks)
    profiles = PassProfiles(args.profile) if args.profile else None
    connectors: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        setup = vendors.call(
            "setup", companies=args.companies, invoices=args.invoices, seed=args.seed
        )
        print(
            f"sandboxes up in {time.perf_counter() - started:.1f} s: {setup['shape']}", flush=True
        )
        with _database(args.database) as url:
            engine = create_engine_for(url)
            try:
                upgrade(engine)
                store = Store(engine)
                mappings = load_mappings()
                ledger = LedgerOptions(rates={c: Decimal(r) for c, r in DEMO_RATES.items()})
                connectors = _connect(setup["settings"], engine)
                ensure_accounts(connectors["quickbooks"], mappings.accounts.accounts)
                cache = None if args.no_cache else CycleCache()
                stacks = StackSampler() if args.sample else None
                sampler.take()
                cycles: dict[str, list[PassFigures]] = {}

                def until_quiet(name: str, profiled: bool) -> list[PassFigures]:
                    return run_cycle_until_quiet(
                        name,
                        store,
                        connectors,
                        mappings,
                        ledger,
                        vendors,
                        sampler,
                        passes_max=args.passes_max,
                        profiles=profiles if profiled else None,
                        cache=cache,
                    )

                cycles["cycle 1"] = until_quiet("cycle 1", args.profile_cycle != "2")
                if args.calls:
                    print(f"API calls by endpoint after cycle 1: {vendors.call('calls_by_path')}")
                    served = vendors.call("served_by_path")
                    print(f"vendor seconds by endpoint, cycle 1: {_served(served)}")
                for number in range(2, max(2, args.cycles) + 1):
                    name = f"cycle {number}"
                    changed = vendors.call("change", rate=args.change, seed=args.seed + number - 1)
                    print(f"changed in the sandboxes: {changed}", flush=True)
                    cycles[name] = until_quiet(name, args.profile_cycle != "1")
                print()
                print(_table(cycles))
                print(_at_first_rates(cycles))
                rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(
                    f"\npeak RSS: ledgerlink process {rusage:,.0f} MiB, vendor process "
                    f"{vendors.call('rss'):,.0f} MiB; total {time.perf_counter() - started:,.0f} s"
                )
                if args.calls:
                    print(f"API calls by endpoint: {vendors.call('calls_by_path')}")
                    since = {system: figures["served"] for system, figures in served.items()}
                    print(
                        "vendor seconds by endpoint, after cycle 1: "
                        f"{_served(vendors.call('served_by_path', since=since))}"
                    )
                _print_failed(engine)
                if args.keep and url.startswith("sqlite:///"):
                    import shutil

                    engine.dispose()
                    shutil.copyfile(url.removeprefix("sqlite:///"), args.keep)
                if args.check:
                    checked = vendors.call("check", url=url)
                    print(f"check: {checked}")
                    defects = (
                        sum(checked["duplicates"].values())
                        + sum(checked["missing"].values())
                        + sum(checked["wanted by a full re-plan"].values())
                    )
                    if defects or Decimal(checked["trial balance"]) != 0:
                        print("DEFECTS FOUND", flush=True)
                        return 1
            finally:
                for connector in connectors.values():
                    connector.close()
                engine.dispose()
    finally:
        sampler.stop()
        if stacks is not None:
            print(stacks.report())
        vendors.close()
        if profiles is not None:
            profiles.write()
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
