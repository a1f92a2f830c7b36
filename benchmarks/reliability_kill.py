"""Crash run: SIGKILL ``ledgerlink sync run`` at 20 points of a cycle, restart it, count the effects.

The three sandboxes (Salesforce, Stripe, QuickBooks) run in this process, so they outlive the
killed command. For each kill point the scenario starts fresh sandboxes (same seed) and a fresh
database, runs ``ledgerlink sync run`` as a subprocess with ``LEDGERLINK_CRASH_AT=<point>`` (see
:mod:`ledgerlink.faults`: the process SIGKILLs itself there), then restarts the command without
the hook until a cycle leaves nothing to do. A reference scenario without a kill gives the
expected end state. Then, counted on the vendor side and in the store:

* **duplicates**: objects a sandbox holds beyond the reference (per system and object), plus
  outbox creates that point at the same remote record;
* **missing**: objects the reference has and the sandbox does not, outbox rows not ``done``,
  and landed records (per system and object) fewer than the reference;
* **cursors**: every stream has a stored cursor and no error.

A control run sends every HTTP write with a new random key (QuickBooks ``requestid``, Stripe
``Idempotency-Key``), what an SDK does by default: its kills after a write was applied must then
show duplicates, proving the count sees them.

    .venv/bin/python benchmarks/reliability_kill.py                      # 20 points, SQLite
    .venv/bin/python benchmarks/reliability_kill.py --database postgresql
    .venv/bin/python benchmarks/reliability_kill.py --fresh-keys --points push.sent

``tests/reliability/test_kill_points.py`` runs four of the points in the normal suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledgerlink_quickbooks.accounts import ensure_accounts
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.engine import make_url

from ledgerlink.connector import SandboxOptions, load_plugin
from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.faults import CRASH_ENV
from ledgerlink.log import configure_logging
from ledgerlink.mapping import load_mappings
from ledgerlink.store import DbSecretStore, create_engine_for, generate_key, upgrade
from ledgerlink.store.models import Outbox, OutboxStatus, SourceRecord, SyncState
from ledgerlink.sync.runtime import connect

SYSTEMS = ("salesforce", "stripe", "quickbooks")
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FRESH_KEYS_ENV = "LEDGERLINK_BENCH_FRESH_KEYS"
MAX_RUNS = 8

KILL_POINTS: tuple[str, ...] = (
    "salesforce.login",  # JWT token answered, session not used yet
    "quickbooks.token_rotated",  # Intuit rotated the refresh token, not stored yet
    "quickbooks.token_stored",  # rotated token stored, access token not used yet
    "pull.page_read",  # during pull: a page read from the vendor, not landed
    "pull.page_read:4",
    "land.before_cursor",  # records written, cursor not, same transaction
    "land.before_cursor:6",
    "pull.page_landed",  # page and cursor committed, next page not read
    "pull.page_landed:9",
    "match.save",  # matching's customers and links written, transaction open
    "plan.enqueue",  # plan's outbox rows inserted, transaction open
    "plan.committed",  # plan committed, ledger not planned
    "ledger.enqueue",  # ledger documents inserted, transaction open
    "ledger.committed",  # ledger committed, nothing pushed
    "outbox.claim",  # rows claimed, claim not committed
    "push.claimed",  # claim committed, nothing sent
    "push.write_result",  # during a batch: the vendor answered, the rest of the batch pending
    "push.sent",  # the vendor applied the write, its result not stored
    "push.sent:8@1",  # the same at the eighth send of the first cycle: the ledger's invoices
    "push.store_outcome",  # outcome and links written, transaction open
    "push.stored",  # outcome committed, next batch not claimed
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string takes JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


@dataclass
class Outcome:
    """What one scenario (a kill point, or the reference) left behind."""

    point: str
    kills: int = 0
    runs: int = 0
    baseline: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    creates_done: dict[str, int] = field(default_factory=dict)
    landed: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    outbox_rows: int = 0
    cancelled_creates: int = 0
    shared_remote_ids: int = 0
    bad_cursors: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Verdict:
    """One row of the table: a kill point compared with the reference."""

    point: str
    kills: int
    runs: int
    duplicates: int
    missing: int
    details: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the point was reached and nothing was repeated or lost."""
        return self.kills > 0 and self.duplicates == 0 and self.missing == 0


class Sandboxes:
    """The three sandboxes in this process, seeded alike, with a customer known to two systems."""

    def __init__(self, seed: int, size: int) -> None:
        self.running: dict[str, Any] = {}
        for name in SYSTEMS:
            self.running[name] = load_plugin(name).start_sandbox(
                SandboxOptions(seed=seed, size=size)
            )

    def settings(self, name: str) -> dict[str, Any]:
        """The connector settings for sandbox ``name``."""
        settings: dict[str, Any] = self.running[name].connector_settings()
        return settings

    def seed_linked_customer(self, secrets: DbSecretStore) -> None:
        """Create an Account and a Stripe customer pointing at it, so every target gets writes."""
        sf = connect(load_plugin("salesforce"), self.settings("salesforce"), secrets)
        st = connect(load_plugin("stripe"), self.settings("stripe"), secrets)
        try:
            (account,) = sf.write(
                [
                    WriteOp(
                        "kill-sf",
                        "Account",
                        WriteAction.CREATE,
                        {"Name": "Northwind Traders Inc", "BillingCity": "San Francisco"},
                    )
                ]
            )
            (customer,) = st.write(
                [
                    WriteOp(
                        "kill-st",
                        "customers",
                        WriteAction.CREATE,
                        {
                            "name": "Northwind Traders",
                            "email": "billing@northwindtraders.com",
                            "metadata": {"salesforce_account_id": account.remote_id},
                        },
                    )
                ]
            )
            for n, amount in enumerate((49_900, 20_000, 7_300)):
                (invoice,) = st.write(
                    [
                        WriteOp(
                            f"kill-invoice-{n}",
                            "invoices",
                            WriteAction.CREATE,
                            {
                                "customer": customer.remote_id,
                                "currency": "usd",
                                "lines": [{"unit_amount": amount, "quantity": 1}],
                            },
                        )
                    ]
                )
                if n < 2:
                    self.pay_invoice(str(invoice.remote_id))
            qb = connect(load_plugin("quickbooks"), self.settings("quickbooks"), secrets)
            try:
                ensure_accounts(qb, load_mappings().accounts.accounts)  # type: ignore[arg-type]
            finally:
                qb.close()
        finally:
            sf.close()
            st.close()

    def pay_invoice(self, invoice: str) -> str:
        """Pay a Stripe invoice by card and settle its charge; return the charge id."""
        billing = self.running["stripe"].billing
        billing.pay_invoice(invoice, {"payment_method": "pm_card_visa"})
        billing.settle_charges()
        return str(billing.get("invoice", invoice)["charge"])

    def created(self) -> dict[str, int]:
        """Objects each sandbox holds beyond its seed, by system and object."""
        counts: dict[str, int] = {}
        org = self.running["salesforce"].org
        for name, table in org.tables.items():
            extra = table.next_index - table.base_count
            if extra:
                counts[f"salesforce {name}"] = extra
        state = self.running["stripe"].state
        for name, store in state.stores.items():
            if store.added:
                counts[f"stripe {name}"] = len(store.added)
        company = self.running["quickbooks"].company
        for name, table in company.tables.items():
            live = sum(1 for _ in table.by_id())
            if live:
                counts[f"quickbooks {name}"] = live
        return counts

    def stop(self) -> None:
        """Stop every sandbox."""
        for sandbox in self.running.values():
            sandbox.stop()


@contextmanager
def _database(kind: str, folder: Path, label: str) -> Iterator[str]:
    """A migrated, empty database for one scenario; yields its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'{label}.db'}"
        engine = create_engine_for(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    import psycopg

    server = make_url(
        os.environ.get("LEDGERLINK_BENCH_DATABASE_URL")
        or os.environ.get("LEDGERLINK_TEST_DATABASE_URL")
        or DEFAULT_SERVER
    )
    name = f"ledgerlink_bench_kill_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = server.set(drivername="postgresql+psycopg", database=name)
        try:
            engine = create_engine_for(url)
            upgrade(engine)
            engine.dispose()
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _write_config(path: Path, database_url: str, key: str, sandboxes: Sandboxes) -> None:
    lines = [
        f"[database]\nurl = {_toml_value(database_url)}",
        f"[secrets]\nencryption_key = {_toml_value(key)}",
    ]
    for name in SYSTEMS:
        body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in sandboxes.settings(name).items())
        lines.append(f"[connectors.{name}]\n{body}")
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")


def _sync_run(config: Path, *, crash_at: str | None, fresh_keys: bool) -> int:
    """Run ``ledgerlink sync run`` in a new process; return its exit code (-9: killed)."""
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, FRESH_KEYS_ENV)}
    if crash_at:
        env[CRASH_ENV] = crash_at
    args = ["-c", str(config), "--log-level", "CRITICAL", "sync", "run"]
    if fresh_keys:
        env[FRESH_KEYS_ENV] = "1"
        command = [sys.executable, str(Path(__file__).resolve()), "--as-cli", *args]
    else:
        command = [sys.executable, "-m", "ledgerlink", *args]
    done = subprocess.run(command, env=env, capture_output=True, check=False, timeout=600)
    return done.returncode


def _sandbox_object(target: str, obj: str) -> str:
    """The :meth:`Sandboxes.created` name of an outbox row's object (Stripe paths are plural)."""
    return f"{target} {obj.removesuffix('s')}" if target == "stripe" else f"{target} {obj}"


def _expire_leases(database_url: str) -> None:
    """Let the killed worker's claims run out now, instead of waiting the 5-minute lease."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Outbox)
                .where(Outbox.status == OutboxStatus.IN_FLIGHT.value)  # type: ignore[arg-type]
                .values(claimed_until=datetime.now(UTC) - timedelta(days=1))
            )
    finally:
        engine.dispose()


def _store_state(database_url: str, outcome: Outcome) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(SourceRecord.system, SourceRecord.object, func.count()).group_by(  # type: ignore[call-overload]
                    SourceRecord.system, SourceRecord.object
                )
            )
            outcome.landed = {f"{s} {o}": int(n) for s, o, n in rows}
            outbox = list(
                conn.execute(
                    select(
                        Outbox.status, Outbox.action, Outbox.target, Outbox.object, Outbox.remote_id
                    )  # type: ignore[call-overload]
                )
            )
            outcome.outbox = dict(Counter(str(status) for status, *_rest in outbox))
            # A pending update superseded by a newer plan is cancelled (the newer one carries
            # the change); a cancelled create would be a lost write.
            outcome.cancelled_creates = sum(
                1
                for status, action, *_rest in outbox
                if status == OutboxStatus.CANCELLED.value and action == WriteAction.CREATE.value
            )
            outcome.outbox_rows = len(outbox)
            created = Counter(
                (target, obj, remote)
                for _s, action, target, obj, remote in outbox
                if action == WriteAction.CREATE.value and remote
            )
            outcome.shared_remote_ids = sum(n - 1 for n in created.values())
            outcome.creates_done = dict(
                Counter(_sandbox_object(target, obj) for target, obj, _remote in created.elements())
            )
            states = conn.execute(
                select(SyncState.connector, SyncState.stream, SyncState.last_error)
            )  # type: ignore[call-overload]
            outcome.bad_cursors = [f"{c} {s}: {e}" for c, s, e in states if e]
    finally:
        engine.dispose()


def _settled(database_url: str) -> tuple[int, bool]:
    outcome = Outcome(point="")
    _store_state(database_url, outcome)
    settled = {OutboxStatus.DONE.value, OutboxStatus.CANCELLED.value}
    return outcome.outbox_rows, set(outcome.outbox) <= settled


def run_scenario(
    point: str | None,
    *,
    database: str,
    folder: Path,
    seed: int = 3,
    size: int = 3,
    fresh_keys: bool = False,
) -> Outcome:
    """Kill a cycle at ``point`` (None: the reference) on a new database of kind ``database``."""
    label = re.sub(r"\W", "_", point or "reference")
    with _database(database, folder, label) as database_url:
        return run_scenario_on(
            point, database_url, folder=folder, seed=seed, size=size, fresh_keys=fresh_keys
        )


def run_scenario_on(
    point: str | None,
    database_url: str,
    *,
    folder: Path,
    seed: int = 3,
    size: int = 3,
    fresh_keys: bool = False,
) -> Outcome:
    """Kill a cycle at ``point`` (None: no kill), restart until settled, count the effects.

    ``database_url`` names a migrated, empty database; ``folder`` receives the config file.
    """
    started = time.perf_counter()
    label = re.sub(r"\W", "_", point or "reference")
    outcome = Outcome(point=point or "reference")
    sandboxes = Sandboxes(seed, size)
    try:
        key = generate_key()
        engine = create_engine(database_url)
        try:
            sandboxes.seed_linked_customer(DbSecretStore(engine, key))
        finally:
            engine.dispose()
        outcome.baseline = sandboxes.created()
        config = folder / f"{label}.toml"
        _write_config(config, database_url, key, sandboxes)
        if point is not None:
            # "<point>[:<nth>]@<run>": the hook is set in that run; the runs before are clean.
            crash_at, _, run = point.partition("@")
            for _ in range(int(run or 1) - 1):
                outcome.runs += 1
                _sync_run(config, crash_at=None, fresh_keys=fresh_keys)
            outcome.runs += 1
            code = _sync_run(config, crash_at=crash_at, fresh_keys=fresh_keys)
            outcome.kills += int(code == -9)
            _expire_leases(database_url)
        # Restart until a cycle succeeds, then until one queues nothing and all is sent.
        previous = -1
        ok_runs = 0
        while outcome.runs < MAX_RUNS:
            outcome.runs += 1
            code = _sync_run(config, crash_at=None, fresh_keys=fresh_keys)
            if code != 0:
                continue
            ok_runs += 1
            rows, all_done = _settled(database_url)
            if ok_runs >= 2 and rows == previous and all_done:
                break
            previous = rows
        outcome.created = sandboxes.created()
        _store_state(database_url, outcome)
    finally:
        sandboxes.stop()
    outcome.seconds = time.perf_counter() - started
    return outcome


def compare(outcome: Outcome, reference: Outcome | None) -> Verdict:
    """Count duplicates and losses of ``outcome``, on the vendor side and in the store.

    Per sandbox object, the objects made since the set-up must equal the outbox creates that
    are done, and (with a reference) the end state must equal the reference's; the larger of
    the two differences counts. Without a reference, only the first check and the store's own
    state (outbox all done, cursors without errors) are made.
    """
    duplicates = outcome.shared_remote_ids
    missing = 0
    details: list[str] = []
    names = set(outcome.created) | set(outcome.creates_done)
    if reference is not None:
        names |= set(reference.created)
    for name in sorted(names):
        extra = lost = 0
        got = outcome.created.get(name, 0)
        if name in outcome.creates_done:
            made = got - outcome.baseline.get(name, 0)
            sent = outcome.creates_done[name]
            extra, lost = max(made - sent, 0), max(sent - made, 0)
            if made != sent:
                details.append(f"{name}: {made} made for {sent} outbox creates")
        if reference is not None:
            want = reference.created.get(name, 0)
            if got != want:
                details.append(f"{name}: {got} (reference {want})")
            extra, lost = max(extra, got - want), max(lost, want - got)
        duplicates += extra
        missing += lost
    if reference is not None:
        for name in sorted(reference.landed):
            got, want = outcome.landed.get(name, 0), reference.landed[name]
            if got < want:
                missing += want - got
                details.append(f"landed {name}: {got} (reference {want})")
        done, want_done = outcome.outbox.get("done", 0), reference.outbox.get("done", 0)
        if done != want_done:
            details.append(f"outbox rows done: {done} (reference {want_done})")
    settled = {OutboxStatus.DONE.value, OutboxStatus.CANCELLED.value}
    not_done = outcome.cancelled_creates + sum(
        n for status, n in outcome.outbox.items() if status not in settled
    )
    if not_done:
        missing += not_done
        details.append(f"outbox not done: {outcome.outbox}")
    if outcome.outbox.get(OutboxStatus.CANCELLED.value):
        details.append(
            f"{outcome.outbox[OutboxStatus.CANCELLED.value]} pending updates superseded by newer ones"
        )
    if outcome.bad_cursors:
        missing += len(outcome.bad_cursors)
        details.extend(outcome.bad_cursors)
    if outcome.shared_remote_ids:
        details.append(f"{outcome.shared_remote_ids} outbox creates share a remote id")
    return Verdict(
        point=outcome.point,
        kills=outcome.kills,
        runs=outcome.runs,
        duplicates=duplicates,
        missing=missing,
        details=details,
        seconds=outcome.seconds,
    )


def table(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table."""
    lines = [
        "| kill point | kills | runs to settle | duplicates | missing | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        note = "; ".join(v.details) if v.details else ""
        if v.kills == 0:
            note = ("point not reached; " + note).rstrip("; ")
        lines.append(
            f"| `{v.point}` | {v.kills} | {v.runs} | {v.duplicates} | {v.missing} | {note} |"
        )
    return "\n".join(lines)


def _fresh_keys_cli(argv: list[str]) -> None:
    """Run the CLI with a new random key on every HTTP write (the control run's process)."""
    import httpx

    original = httpx.HTTPTransport.handle_request

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        if "requestid" in request.url.params:
            request.url = request.url.copy_set_param("requestid", uuid.uuid4().hex)
        if "idempotency-key" in request.headers:
            request.headers["Idempotency-Key"] = uuid.uuid4().hex
        return original(self, request)

    httpx.HTTPTransport.handle_request = handle  # type: ignore[method-assign]
    from ledgerlink.cli.app import main as cli_main

    sys.argv = ["ledgerlink", *argv]
    cli_main()


def main() -> None:
    """Run the reference and every kill point; print the table; exit 1 on any loss or repeat."""
    if len(sys.argv) > 1 and sys.argv[1] == "--as-cli":
        _fresh_keys_cli(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--points", nargs="*", default=list(KILL_POINTS))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", type=int, default=3, help="customers per sandbox")
    parser.add_argument(
        "--fresh-keys",
        action="store_true",
        help="control run: a new random key on every HTTP write (must show duplicates)",
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = {
            "database": args.database,
            "folder": folder,
            "seed": args.seed,
            "size": args.size,
        }
        reference = run_scenario(None, **options)
        print(
            f"reference: {reference.outbox_rows} outbox rows {reference.outbox}, "
            f"created {reference.created}, {reference.runs} runs, {reference.seconds:.1f} s",
            flush=True,
        )
        verdicts = []
        for point in args.points:
            outcome = run_scenario(point, fresh_keys=args.fresh_keys, **options)
            verdict = compare(outcome, reference)
            verdicts.append(verdict)
            print(
                f"{point}: kills {verdict.kills}, duplicates {verdict.duplicates}, "
                f"missing {verdict.missing}, {verdict.seconds:.1f} s {verdict.details or ''}",
                flush=True,
            )
    print(f"\nkill run ({args.database}, seed {args.seed}, size {args.size})")
    print(table(verdicts))
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    if args.fresh_keys:
        print("control run without stable idempotency keys: duplicates are expected")
    elif not all(v.ok for v in verdicts):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
