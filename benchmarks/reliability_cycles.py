"""Reliability run: full quote-to-cash cycles against all three sandboxes under vendor faults.

The Salesforce, Stripe and QuickBooks sandboxes start from one shared roster of companies;
Salesforce gets freshly accepted quotes, Stripe gets extra paid invoices on top of its seeded
ones, so that the ledger posts several thousand QuickBooks documents. Then faults are switched
on in all three sandboxes for every API call: 5% 429 with ``Retry-After``, 2% 503, 1% dropped
connections and 1% answers slower than the client's timeout (the vendor applies the write, the
client never hears back and sends it again). :func:`ledgerlink.sync.cycle.run_cycle` runs until
a cycle plans and sends nothing and the outbox holds no pending row; then the faults go off and
one clean cycle runs. The sandboxes' own data is then checked:

* **duplicates**: a QuickBooks document per Stripe id (``PrivateNote``), a QuickBooks customer
  per ``DisplayName``, a Stripe customer per Salesforce Account, a Stripe subscription or invoice
  per Salesforce quote, and objects made beyond the outbox's create rows;
* **not converged**: a plan that keeps nothing from earlier plans (every record read again)
  wants no write the cycles did not make; ``--kept`` runs the cycles as the daemon does, with a
  :class:`~ledgerlink.sync.cycle.CycleCache` kept between them, so this compares the kept
  plans with a full read;
* **missing**: every finalized Stripe invoice has one QuickBooks invoice, every successful
  charge one payment, every fee one journal entry, every payout one deposit; every Salesforce
  record holds what the hub last wrote to it;
* the trial balance is zero and no outbox row failed.

A control run without stable idempotency keys (a new random ``requestid`` on every QuickBooks
attempt, as ``reliability_faults.py --fresh-keys`` does) must show duplicates, proving that the
count sees them. The connectors' waits (Retry-After, backoff) are recorded, not slept.

    .venv/bin/python benchmarks/reliability_cycles.py                  # 300 companies
    .venv/bin/python benchmarks/reliability_cycles.py --companies 100 --no-control
    .venv/bin/python benchmarks/reliability_cycles.py --kept --no-control
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledgerlink.log import configure_logging

# Modules below bind their loggers when imported, with the configuration of that moment.
configure_logging(level="WARNING")

# ruff: noqa: E402 - imported after the logging configuration above, on purpose
from reliability_faults import FreshRequestIdTransport, MemorySecrets, SlowAnswers
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ledgerlink.cli.demo import DEMO_RATES
from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.connector.protocol import Connector
from ledgerlink.connector.roster import Roster
from ledgerlink.connector.sandbox import Fault
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, create_engine_for, generate_key, upgrade
from ledgerlink.store.models import CustomerLink, LinkStatus, Outbox, Quarantine
from ledgerlink.sync.cycle import CycleCache, CycleReport, plan_all, run_cycle
from ledgerlink.sync.ledger import LedgerOptions
from ledgerlink.sync.outbox import count_by_status
from ledgerlink.sync.runtime import connect

SYSTEMS = ("salesforce", "stripe", "quickbooks")
#: Where each sandbox's API lives: faults hit API calls, not the token endpoints.
API_PREFIX = {"salesforce": "/services/data/", "stripe": "/v1/", "quickbooks": "/v3/"}
#: The connectors' per-call timeout; a slow answer arrives after it, so its answer is lost.
CLIENT_TIMEOUT = 1.0
SLOW_DELAY = 1.5
NOTE = "ledgerlink stripe:"
#: QuickBooks document per Stripe object kind (what ``plan_ledger`` posts).
DOCUMENTS = {
    "invoice": "Invoice",
    "charge": "Payment",
    "fee": "JournalEntry",
    "payout": "Deposit",
}


@dataclass
class CycleRunResult:
    """What one run injected, posted and found in the sandboxes afterwards."""

    name: str
    companies: int
    requests: dict[str, int] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)
    posted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    unconverged: Counter[str] = field(default_factory=Counter)
    """Writes a plan that reads everything again still wants, by planner and target."""
    outbox: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    held: int = 0
    in_review: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    salesforce_writes: int = 0
    trial_balance: Decimal = Decimal(0)
    cycles: int = 0
    settled: bool = False
    waited_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Outbox rows that gave up."""
        return self.outbox.get("failed", 0)

    @property
    def defects(self) -> int:
        """Duplicates, missing writes, failed rows and writes still wanted."""
        return (
            sum(self.duplicates.values())
            + sum(self.missing.values())
            + self.failed
            + sum(self.unconverged.values())
        )


def table(results: list[CycleRunResult]) -> str:
    """The runs side by side as a Markdown table."""

    def detail(counts: Counter[str]) -> str:
        total = sum(counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
        return f"{total} ({parts})" if parts else str(total)

    rows: list[tuple[str, Callable[[CycleRunResult], object]]] = [
        ("companies in the roster", lambda r: r.companies),
        *(
            (f"HTTP requests: {system}", lambda r, s=system: r.requests.get(s, 0))
            for system in SYSTEMS
        ),
        *(
            (f"injected: {kind}", lambda r, k=kind: r.injected.get(k, 0))
            for kind in ("429 with Retry-After", "503", "dropped connection", "answer lost")
        ),
        ("QuickBooks documents posted", lambda r: detail(r.posted)),
        ("duplicates", lambda r: detail(r.duplicates)),
        ("missing writes", lambda r: detail(r.missing)),
        ("writes a full re-plan still wants", lambda r: detail(r.unconverged)),
        ("outbox failed rows", lambda r: r.failed),
        ("outbox rows by status", lambda r: ", ".join(f"{k} {v}" for k, v in r.outbox.items())),
        ("Salesforce record updates", lambda r: r.salesforce_writes),
        ("quarantined records (open, bad input)", lambda r: r.quarantined),
        ("Stripe customers waiting in the review queue", lambda r: r.in_review),
        ("Stripe documents held (customer quarantined or in review)", lambda r: r.held),
        ("ledger documents still waiting, by reason", lambda r: dict(r.waiting) or 0),
        ("trial balance (home currency)", lambda r: r.trial_balance),
        ("cycles (settled)", lambda r: f"{r.cycles} ({'yes' if r.settled else 'no'})"),
        ("waits asked (s, not slept)", lambda r: round(r.waited_seconds)),
        ("wall time (s)", lambda r: round(r.seconds, 1)),
    ]
    lines = [
        "| figure | " + " | ".join(r.name for r in results) + " |",
        "| --- |" + " --- |" * len(results),
    ]
    lines += [
        f"| {name} | " + " | ".join(str(value(r)) for r in results) + " |" for name, value in rows
    ]
    return "\n".join(lines)


# -- setting up -------------------------------------------------------------------------------


def _add_paid_invoices(stripe: Any, per_customer: int, seed: int) -> int:
    """Bill and collect ``per_customer`` more invoices per Stripe customer, in the sandbox itself.

    Calling the sandbox's billing in-process is much faster than its HTTP API and makes the same
    objects (invoice, payment intent, charge, balance transaction with the fee) and events.
    """
    billing = stripe.billing
    customers = [c["id"] for c in stripe.state.store("customer").iter_desc()]
    made = 0
    for n in range(per_customer):
        for i, customer_id in enumerate(customers):
            customer = billing.get("customer", customer_id)
            currency = str(customer.get("currency") or "usd")
            unit = 1_000 + (seed * 7919 + i * 104_729 + n * 1_299_709) % 90_000
            billing.create_invoice_item(
                {
                    "customer": customer_id,
                    "currency": currency,
                    "unit_amount": unit // 100 if currency == "jpy" else unit,
                    "quantity": 1 + (i + n) % 3,
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
            made += 1
    billing.settle_charges()
    return made


def _quiet(sandboxes: dict[str, Any]) -> None:
    """Switch off the sandboxes' real-time throttles: the injected 429s stand for them.

    The connectors' waits are recorded, not slept, so a per-minute limit counted in real time
    would throttle far more than a vendor does.
    """
    limits = sandboxes["quickbooks"].limits
    limits.requests_per_second = None
    limits.requests_per_minute = None
    limits.batch_per_minute = None


def _connect(
    sandboxes: dict[str, Any], engine: Engine, waits: list[float], *, fresh_keys: bool
) -> dict[str, Connector]:
    """Connect to each sandbox with a short timeout and retries that record their waits."""
    from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings

    secrets = DbSecretStore(engine, generate_key())
    connectors: dict[str, Connector] = {}
    for name in ("salesforce", "stripe"):
        settings = {**sandboxes[name].connector_settings(), "timeout_seconds": CLIENT_TIMEOUT}
        connectors[name] = connect(load_plugin(name), settings, secrets)
    quickbooks_settings = {
        **sandboxes["quickbooks"].connector_settings(),
        "requests_per_minute": 600_000,
        "batch_requests_per_minute": 600_000,
        "timeout": CLIENT_TIMEOUT,
    }
    quickbooks = QuickBooksConnector(
        QuickBooksSettings.model_validate(quickbooks_settings),
        ConnectorContext(secrets=MemorySecrets()),
        transport=FreshRequestIdTransport() if fresh_keys else None,
    )
    quickbooks.http.rate_limiter = None  # type: ignore[assignment]
    connectors["quickbooks"] = quickbooks
    record = {"sleep": waits.append, "jitter": lambda _d: 0.0, "max_attempts": 8}
    sf: Any = connectors["salesforce"]
    sf.client.retry = dataclasses.replace(sf.client.retry, **record)
    st: Any = connectors["stripe"]
    st.api.retry = dataclasses.replace(st.api.retry, **record)
    quickbooks.http.retry = dataclasses.replace(quickbooks.http.retry, **record)
    return connectors


def _switch_faults_on(sandboxes: dict[str, Any], seed: int) -> dict[str, list[Any]]:
    """The issue's fault mix on every API call of every sandbox; returns the faults by kind."""
    kinds: dict[str, list[Any]] = {
        "429 with Retry-After": [],
        "503": [],
        "dropped connection": [],
        "answer lost": [],
    }
    for n, (name, sandbox) in enumerate(sorted(sandboxes.items())):
        api = API_PREFIX[name]
        injector = sandbox.faults
        injector._random.seed(seed + n)  # reproducible sampling for the run
        # Each rule samples only what the earlier ones let through, hence the divisions.
        slow = SlowAnswers(
            injector.app, rate=0.01 / 0.92, delay=SLOW_DELAY, seed=seed + n, path_prefix=api
        )
        injector.app = slow
        kinds["answer lost"].append(slow)
        kinds["429 with Retry-After"].append(
            injector.add(
                Fault(kind="status", status=429, rate=0.05, retry_after=1, path_prefix=api)
            )
        )
        kinds["503"].append(
            injector.add(Fault(kind="status", status=503, rate=0.02 / 0.95, path_prefix=api))
        )
        kinds["dropped connection"].append(
            injector.add(Fault(kind="drop", rate=0.01 / 0.93, path_prefix=api))
        )
    return kinds


def _switch_faults_off(sandboxes: dict[str, Any], kinds: dict[str, list[Any]]) -> None:
    for sandbox in sandboxes.values():
        sandbox.faults.clear()
    for slow in kinds.get("answer lost", []):
        slow.rate = 0.0


def _quiet_cycle(report: CycleReport, engine: Engine) -> bool:
    """True when a cycle planned and sent nothing and no outbox row waits."""
    planned = (
        (len(report.plan.ops) if report.plan else 0)
        + (report.quotes.queued if report.quotes else 0)
        + (report.ledger.queued if report.ledger else 0)
        + sum(f.queued for f in report.ledger_follow_ups)
        + (report.customer_follow_up.queued if report.customer_follow_up else 0)
    )
    sent = sum(p.sent for p in report.pushes)
    counts = count_by_status(engine)
    waiting = sum(counts.get(s, 0) for s in ("pending", "in_flight"))
    return report.ok and planned == 0 and sent == 0 and waiting == 0


# -- checking ---------------------------------------------------------------------------------


def _stripe_truth(stripe: Any, quarantined: set[str]) -> tuple[dict[str, set[str]], int]:
    """The Stripe ids that must each have one QuickBooks document, by kind, and how many are held.

    A document of a Stripe customer that failed to map (quarantined with its reason, say a
    customer without a name) or that waits in the review queue is held on purpose until
    someone fixes the record or decides: it is counted as held, not missing.
    """
    state = stripe.state
    truth: dict[str, set[str]] = {kind: set() for kind in DOCUMENTS}
    held: set[str] = set()
    for invoice in state.store("invoice").iter_desc():
        if invoice.get("status") in ("open", "paid", "uncollectible"):
            if {invoice["id"], invoice.get("customer")} & quarantined:
                held.add(invoice["id"])
            else:
                truth["invoice"].add(invoice["id"])
    for charge in state.store("charge").iter_desc():
        if charge.get("status") == "succeeded":
            if {charge["id"], charge.get("customer"), charge.get("invoice")} & (quarantined | held):
                held.add(charge["id"])
            else:
                truth["charge"].add(charge["id"])
            txn = charge.get("balance_transaction")
            if isinstance(txn, str):
                details = state.store("balance_transaction").get(txn)
                if details is not None and int(details.get("fee") or 0) > 0:
                    truth["fee"].add(txn)
    truth["payout"] = {p["id"] for p in state.store("payout").iter_desc()}
    return truth, len(held)


def _quickbooks_notes(company: Any, entity: str) -> Counter[str]:
    return Counter(
        str(doc["PrivateNote"])[len(NOTE) :]
        for doc in company.table(entity).by_id()
        if str(doc.get("PrivateNote") or "").startswith(NOTE)
    )


def _extra(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def _outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Outbox.__table__).order_by(Outbox.__table__.c.id)))  # type: ignore[attr-defined]


def _check(result: CycleRunResult, sandboxes: dict[str, Any], engine: Engine) -> None:
    """Count duplicates and missing writes in every sandbox against Stripe and the outbox."""
    company = sandboxes["quickbooks"].company
    stripe = sandboxes["stripe"]
    with engine.connect() as conn:
        quarantined = {
            str(external_id)
            for (external_id,) in conn.execute(
                select(Quarantine.__table__.c.external_id).where(  # type: ignore[attr-defined]
                    Quarantine.__table__.c.resolved_at.is_(None)  # type: ignore[attr-defined]
                )
            )
        }
        # A Stripe customer waiting in the review queue has no customer yet: its documents wait
        # for the person's decision (posting them to a new QuickBooks customer would make a
        # duplicate customer the moment the pair is linked).
        link = CustomerLink.__table__  # type: ignore[attr-defined]
        in_review = {
            str(external_id)
            for (external_id,) in conn.execute(
                select(link.c.external_id).where(
                    link.c.system == "stripe", link.c.status == LinkStatus.REVIEW.value
                )
            )
        }
    result.quarantined = len(quarantined)
    result.in_review = len(in_review)
    truth, result.held = _stripe_truth(stripe, quarantined | in_review)
    for kind, entity in DOCUMENTS.items():
        notes = _quickbooks_notes(company, entity)
        mine = Counter({k: v for k, v in notes.items() if k in truth[kind]})
        result.posted[entity] = len(mine)
        result.duplicates[f"QuickBooks {entity}"] = _extra(mine)
        result.missing[f"QuickBooks {entity}"] = len(truth[kind] - set(mine))
    names = Counter(str(c.get("DisplayName")) for c in company.table("Customer").by_id())
    result.duplicates["QuickBooks Customer"] = _extra(names)

    rows = _outbox_rows(engine)
    created: Counter[tuple[str, str]] = Counter(
        (r.target, r.object) for r in rows if r.action == "create" and r.status == "done"
    )
    # Stripe objects the hub made, keyed by what they stand for.
    added_customers = [c for c in stripe.state.store("customer").added.values() if c]
    by_account = Counter(
        str((c.get("metadata") or {}).get("salesforce_account_id"))
        for c in added_customers
        if (c.get("metadata") or {}).get("salesforce_account_id")
    )
    result.duplicates["Stripe customer"] = _extra(by_account) + max(
        0, len(added_customers) - created["stripe", "customers"]
    )
    for kind in ("subscription", "invoice"):
        deals = Counter(
            str(o["metadata"]["salesforce_quote_id"])
            for o in stripe.state.store(kind).added.values()
            if o and (o.get("metadata") or {}).get("salesforce_quote_id")
        )
        result.duplicates[f"Stripe {kind}"] = _extra(deals)
        result.missing[f"Stripe {kind}"] = sum(
            1
            for r in rows
            if r.target == "stripe"
            and r.object == f"{kind}s"
            and r.status == "done"
            and stripe.state.store(kind).get(r.remote_id or "") is None
        )
    _check_salesforce(result, sandboxes["salesforce"], rows)
    result.unconverged = _unconverged(engine)
    result.trial_balance = sum(sandboxes["quickbooks"].trial_balance().values(), Decimal(0))
    result.outbox = {k: v for k, v in sorted(count_by_status(engine).items()) if v}


def _check_salesforce(result: CycleRunResult, sandbox: Any, rows: list[Any]) -> None:
    """Each Salesforce record holds the fields of the last write the hub made to it.

    A write repeated after a lost answer sets the same values again (harmless); a write lost or
    applied out of order leaves a field different from the last one the hub sent.
    """
    last: dict[tuple[str, str], dict[str, Any]] = {}
    writes: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row.target != "salesforce" or row.status != "done":
            continue
        record_id = str(row.payload.get("Id") or row.remote_id or "")
        key = (row.object, record_id)
        writes[key] += 1
        last.setdefault(key, {}).update(
            {k: v for k, v in row.payload.items() if k not in ("Id", "attributes")}
        )
    wrong = 0
    for (obj, record_id), fields in last.items():
        table_ = sandbox.org.table(obj)
        record = table_.get(record_id) if table_ is not None else None
        if record is None or any(record.get(k) != v for k, v in fields.items()):
            wrong += 1
    result.missing["Salesforce record"] = wrong
    result.salesforce_writes = sum(writes.values())


def _unconverged(engine: Engine) -> Counter[str]:
    """The writes a plan keeping nothing from earlier plans wants, by planner and target.

    After the cycles settled, reading every record again must find every target in line: a
    write wanted here is one the cycles' plans missed (or one they keep getting refused).
    """
    ledger = LedgerOptions(rates={c: Decimal(r) for c, r in DEMO_RATES.items()})
    reports = plan_all(
        Store(engine), load_mappings(), now=datetime.now(UTC), dry_run=True, ledger=ledger
    )
    wanted: Counter[str] = Counter()
    wanted.update(f"customers {op.target} {op.object}" for op in reports.plan.ops)
    wanted.update(f"quotes {op.target} {op.object}" for op in reports.quotes.ops)
    wanted.update(f"ledger {doc.object}" for doc in reports.ledger.documents)
    return wanted


# -- the run ----------------------------------------------------------------------------------


@contextmanager
def _sqlite() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine_for(f"sqlite:///{Path(folder) / 'cycles.db'}")
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def cycle_run(
    name: str,
    *,
    companies: int,
    invoices_per_customer: int,
    cycles_max: int,
    seed: int,
    fresh_keys: bool = False,
    faults: bool = True,
    kept: bool = False,
    progress: Callable[[str], None] = print,
) -> CycleRunResult:
    """Start the sandboxes, run cycles under faults until quiet, one clean cycle, then count.

    ``kept``: the cycles keep a :class:`CycleCache` between them, as the daemon does.
    """
    from ledgerlink_quickbooks.accounts import ensure_accounts

    started = time.perf_counter()
    result = CycleRunResult(name=name, companies=companies)
    waits: list[float] = []
    mappings: MappingSet = load_mappings()
    options = SandboxOptions(
        seed=seed, size=companies, roster=Roster(companies=companies, seed=seed)
    )
    ledger = LedgerOptions(rates={c: Decimal(r) for c, r in DEMO_RATES.items()})
    sandboxes: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    with _sqlite() as engine:
        store = Store(engine)
        try:
            for system in SYSTEMS:
                sandboxes[system] = load_plugin(system).start_sandbox(options)
            _quiet(sandboxes)
            sandboxes["stripe"].seed_one_time_prices()
            sandboxes["salesforce"].seed_accepted_quotes()
            extra = _add_paid_invoices(sandboxes["stripe"], invoices_per_customer, seed)
            progress(f"{name}: sandboxes up, {extra} extra paid Stripe invoices")
            connectors = _connect(sandboxes, engine, waits, fresh_keys=fresh_keys)
            ensure_accounts(connectors["quickbooks"], mappings.accounts.accounts)  # type: ignore[arg-type]
            for sandbox in sandboxes.values():
                sandbox.faults.reset_counts()
            kinds = _switch_faults_on(sandboxes, seed) if faults else {}
            cache = CycleCache() if kept else None
            while result.cycles < cycles_max:
                result.cycles += 1
                report = run_cycle(
                    store, connectors, mappings, now=datetime.now(UTC), ledger=ledger, cache=cache
                )
                sent = sum(p.sent for p in report.pushes)
                progress(
                    f"{name}: cycle {result.cycles} sent {sent} ({time.perf_counter() - started:.0f} s)"
                )
                if _quiet_cycle(report, engine):
                    result.settled = True
                    break
            _switch_faults_off(sandboxes, kinds)
            result.cycles += 1
            clean = run_cycle(
                store, connectors, mappings, now=datetime.now(UTC), ledger=ledger, cache=cache
            )
            result.settled = result.settled and _quiet_cycle(clean, engine)
            if clean.ledger is not None:
                result.waiting = dict(clean.ledger.waiting)
            result.injected = Counter({k: sum(f.hits for f in fs) for k, fs in kinds.items()})
            result.requests = {s: sandboxes[s].faults.request_count for s in SYSTEMS}
            _check(result, sandboxes, engine)
        finally:
            for connector in connectors.values():
                connector.close()
            for sandbox in sandboxes.values():
                sandbox.stop()
    result.waited_seconds = sum(waits)
    result.seconds = time.perf_counter() - started
    return result


def main() -> None:
    """Run under faults (and a control run), print the figures; exit 1 on a defect."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--companies", type=int, default=300, help="companies in the roster")
    parser.add_argument(
        "--invoices-per-customer", type=int, default=5, help="extra paid Stripe invoices each"
    )
    parser.add_argument("--cycles-max", type=int, default=12, help="cycles under faults at most")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--kept", action="store_true", help="keep a CycleCache between cycles, as the daemon does"
    )
    parser.add_argument("--no-control", action="store_true", help="skip the control run")
    parser.add_argument(
        "--no-faults", action="store_true", help="the same cycles without faults (a baseline)"
    )
    args = parser.parse_args()
    common = {
        "companies": args.companies,
        "invoices_per_customer": args.invoices_per_customer,
        "cycles_max": args.cycles_max,
        "seed": args.seed,
        "faults": not args.no_faults,
        "kept": args.kept,
    }
    results = [cycle_run("with idempotency keys", **common)]
    if not args.no_control:
        results.append(cycle_run("control: fresh keys", fresh_keys=True, **common))
    print(f"full cycles under vendor faults (SQLite, seed {args.seed})")
    print(table(results))
    main_run = results[0]
    if main_run.defects or main_run.trial_balance != 0 or not main_run.settled:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
