"""Benchmark of an idle ``ledgerlink serve``: CPU share of one core and peak RSS.

Run on demand (never in tests):

    .venv/bin/python benchmarks/daemon_idle.py               # 10 minutes of sampling
    .venv/bin/python benchmarks/daemon_idle.py --minutes 3   # shorter

It starts the Stripe, QuickBooks and Salesforce sandboxes in this process, writes a
configuration for them on a fresh SQLite file, and starts ``ledgerlink serve --migrate`` as a
child process with the default schedule (pulls every 300 s, match 300 s, plan 120 s, push 30 s,
revenue 3600 s). It waits until ``/readyz`` answers 200 (every stream pulled once), then
samples the child's CPU time and RSS from ``/proc/PID/stat`` every second for the chosen
minutes, and prints the average CPU % of one core and the peak RSS. Goals: < 1% of one core,
< 200 MiB. The sandboxes' own work runs in this process and is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ledgerlink.connector import SandboxOptions, load_plugin
from ledgerlink.store import generate_key

SYSTEMS = ("stripe", "quickbooks", "salesforce")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def toml_value(value: Any) -> str:
    """Return ``value`` as TOML (JSON string escapes are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(directory: Path, settings: dict[str, dict[str, Any]]) -> Path:
    """Write ``ledgerlink.toml`` for a SQLite store and the given connector settings."""
    lines = [
        "[database]",
        f"url = {toml_value('sqlite:///' + str(directory / 'idle.db'))}",
        "[logging]",
        'level = "WARNING"',
        'format = "json"',
        "[secrets]",
        f"encryption_key = {toml_value(generate_key())}",
    ]
    for name, table in settings.items():
        lines.append(f"[connectors.{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    path = directory / "ledgerlink.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cpu_and_rss(pid: int) -> tuple[float, int]:
    """Return (user + system CPU seconds, RSS bytes) of ``pid`` from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    # After the command name: state is field 3; utime 14, stime 15, rss 24 (1-based).
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / CLOCK_TICKS, rss_pages * PAGE_SIZE


def wait_ready(port: int, process: subprocess.Popen[str], timeout: float = 300) -> float:
    """Wait until ``/readyz`` is 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"ledgerlink serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the daemon did not become ready")


def free_port() -> int:
    """Return a free TCP port on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="sampling time (default 10)")
    parser.add_argument("--size", type=int, default=50, help="customers per sandbox (default 50)")
    args = parser.parse_args()
    sandboxes = [
        load_plugin(name).start_sandbox(SandboxOptions(seed=7, size=args.size)) for name in SYSTEMS
    ]
    try:
        with tempfile.TemporaryDirectory() as folder:
            directory = Path(folder)
            settings = {
                name: dict(sb.connector_settings())
                for name, sb in zip(SYSTEMS, sandboxes, strict=True)
            }
            config = write_config(directory, settings)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
            command = [sys.executable, "-m", "ledgerlink", "--config", str(config), "serve"]
            process = subprocess.Popen(
                [*command, "--port", str(port), "--migrate"],
                cwd=directory,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                ready_after = wait_ready(port, process)
                print(f"ready after {ready_after:.1f} s (first pulls, match, plan)")
                cpu_start, rss = cpu_and_rss(process.pid)
                wall_start = time.monotonic()
                peak = rss
                deadline = wall_start + args.minutes * 60
                while time.monotonic() < deadline:
                    time.sleep(1)
                    _, rss = cpu_and_rss(process.pid)
                    peak = max(peak, rss)
                cpu_end, rss = cpu_and_rss(process.pid)
                wall = time.monotonic() - wall_start
                jobs = httpx.get(f"http://127.0.0.1:{port}/status", timeout=30).json()["jobs"]
            finally:
                process.terminate()
                _, stderr = process.communicate(timeout=60)
    finally:
        for sandbox in sandboxes:
            sandbox.stop()
    runs = sum(job["runs"] for job in jobs)
    print(f"sampled {wall / 60:.1f} min; job runs during the whole life of the daemon: {runs}")
    print(f"average CPU: {100 * (cpu_end - cpu_start) / wall:.2f}% of one core (goal < 1%)")
    print(f"peak RSS: {peak / 2**20:.0f} MiB, last RSS {rss / 2**20:.0f} MiB (goal < 200 MiB)")
    print(f"exit code after SIGTERM: {process.returncode}")
    if process.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
