"""PostgreSQL restarted under a running ``ledgerlink serve``: readiness says so, nothing is lost.

On demand only, never in CI: a restart cuts every session of that server. By default the run
makes its **own** throwaway PostgreSQL server (``initdb`` in a temporary folder, on a free port,
run as the ``postgres`` user when started as root) so that no other user of the machine's server
is disturbed; ``--server-url URL --cluster 15/main`` runs it against an existing cluster instead
(``pg_ctlcluster 15 main stop`` / ``start``).

The three sandboxes run in this process. ``ledgerlink serve`` runs as a subprocess with short job
intervals, on a database of its own. Once its first writes are being pushed, the server is
restarted (``pg_ctl stop -m fast``: every connection is cut; started again 3 s later) while
``/readyz`` is polled; then the run waits until the outbox has nothing left to send and counts, in the
sandboxes, the objects made against the outbox creates that are done (see
``benchmarks/reliability_kill.py``).

    .venv/bin/python benchmarks/reliability_pg_restart.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from ledgerlink.log import configure_logging
from ledgerlink.store import DbSecretStore, create_engine_for, generate_key, upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_kill as kill

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DOWN_SECONDS = 3.0
"""How long the server stays stopped, so that readiness can be seen reporting it."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run ``command`` as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def private_server() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A throwaway PostgreSQL server; yields its URL and functions that stop and start it."""
    folder = Path(tempfile.mkdtemp(prefix="ledgerlink-pg-"))
    data = folder / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options]
    subprocess.run(_as_postgres([*ctl, "-w", "start"]), check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(
            _as_postgres([*ctl, "-m", "fast", "-w", "stop"]), check=True, capture_output=True
        )

    def start() -> None:
        subprocess.run(_as_postgres([*ctl, "-w", "start"]), check=True, capture_output=True)

    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop, start
    finally:
        subprocess.run(
            _as_postgres([*ctl, "-m", "immediate", "stop"]), check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, type(exc).__name__


def _wait(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def run(server_url: str, stop: Callable[[], None], start: Callable[[], None], folder: Path) -> int:
    """Serve, restart PostgreSQL once writes are flowing, check readiness and the end state."""
    server = make_url(server_url)
    name = f"ledgerlink_bench_restart_{os.getpid()}"
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = server.set(drivername="postgresql+psycopg", database=name)
    database_url = url.render_as_string(hide_password=False)
    engine = create_engine_for(url)
    upgrade(engine)
    sandboxes = kill.Sandboxes(seed=3, size=3)
    process: subprocess.Popen[bytes] | None = None
    try:
        key = generate_key()
        sandboxes.seed_linked_customer(DbSecretStore(engine, key))
        engine.dispose()
        baseline = sandboxes.created()
        config = folder / "ledgerlink.toml"
        kill._write_config(config, database_url, key, sandboxes)
        with config.open("a", encoding="utf-8") as out:
            out.write(
                "\n[sync]\ninterval_seconds = 5\n\n[daemon]\nmatch_interval_seconds = 5\n"
                "plan_interval_seconds = 5\npush_interval_seconds = 5\n"
            )
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ledgerlink",
                "-c",
                str(config),
                "--log-level",
                "ERROR",
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "serve.log").open("wb"),
        )
        outcome = kill.Outcome(point="postgresql restart")

        def done_rows() -> int:
            kill._store_state(database_url, outcome)
            return outcome.outbox.get("done", 0)

        started = time.monotonic()
        if not _wait(lambda: _readyz(port)[0] == 200, 120):
            print("the daemon never became ready:", _readyz(port))
            return 1
        _wait(lambda: done_rows() >= 1, 120)
        before = dict(outcome.outbox)
        print(f"ready after {time.monotonic() - started:.1f} s; outbox before restart {before}")
        seen: list[tuple[float, int, str]] = []
        restarted_at = time.monotonic()

        def probe() -> int:
            status, body = _readyz(port)
            seen.append((time.monotonic() - restarted_at, status, body[:200]))
            return status

        stop()
        # While the server is down (a restart's window, held for DOWN_SECONDS to see it).
        _wait(lambda: probe() == -1, DOWN_SECONDS, step=0.25)
        down = [s for s in seen if s[1] == 503 and "database" in s[2]]
        start()
        outcome.kills = 1  # one restart
        back_at = time.monotonic() - restarted_at
        _wait(lambda: probe() == 200, 120, step=0.1)
        recovered = seen[-1][0] - back_at
        print(
            f"server down {back_at:.1f} s: {len(down)} of {len(seen)} /readyz answers were 503 "
            f"naming the database (first: {down[0][2] if down else seen[:1]})"
        )
        print(f"/readyz 200 again {recovered:.1f} s after the server was back")
        settled = {"done", "cancelled"}

        def all_sent() -> bool:
            done_rows()
            return bool(outcome.outbox) and set(outcome.outbox) <= settled

        quiet = 0

        def steady() -> bool:
            nonlocal quiet
            rows = outcome.outbox_rows
            quiet = quiet + 1 if all_sent() and outcome.outbox_rows == rows else 0
            return quiet >= 6  # six checks, 30 s, without a new row or a pending one

        _wait(steady, 300, step=5)
        outcome.baseline = baseline
        outcome.created = sandboxes.created()
        kill._store_state(database_url, outcome)
        verdict = kill.compare(outcome, None)
        print(kill.table([verdict]))
        print(f"outbox after: {outcome.outbox}; readiness reported the database down: {bool(down)}")
        return 0 if down and verdict.duplicates == verdict.missing == 0 else 1
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
        sandboxes.stop()
        engine.dispose()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    """Run once on a private server (default) or the named one; exit 1 on any loss."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-url", help="an existing server (then --cluster)")
    parser.add_argument("--cluster", help="its pg_ctlcluster version/name, e.g. 15/main")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        if args.server_url:
            if not args.cluster:
                parser.error("--server-url needs --cluster")
            version, _, cluster = args.cluster.partition("/")

            def stop() -> None:
                subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=True)

            def start() -> None:
                subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)

            code = run(args.server_url, stop, start, Path(tmp))
        else:
            with private_server() as (url, stop_private, start_private):
                code = run(url, stop_private, start_private, Path(tmp))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
