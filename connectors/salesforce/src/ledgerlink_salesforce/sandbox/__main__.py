"""Run the Salesforce sandbox as a process: ``python -m ledgerlink_salesforce.sandbox``.

Prints one JSON line with the connector settings (fake credentials, CA bundle path), then
serves until stdin closes. Lines on stdin control it: ``count`` prints the number of requests
served so far, ``reset`` forgets them, ``rss`` prints this process's peak RSS in KiB, ``quit``
stops. Benchmarks use it so that the sandbox's CPU and memory are not counted as the client's.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink_salesforce.sandbox import start_sandbox

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Start the sandbox, print its settings, obey stdin commands until ``quit`` or EOF."""
    parser = argparse.ArgumentParser(prog="python -m ledgerlink_salesforce.sandbox")
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-max", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    sandbox = start_sandbox(
        SandboxOptions(seed=args.seed, size=args.size, port=args.port), api_max=args.api_max
    )
    out = sys.stdout
    out.write(json.dumps(sandbox.connector_settings()) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                out.write(f"{sandbox.faults.request_count}\n")
            elif command == "reset":
                sandbox.faults.reset_counts()
                out.write("ok\n")
            elif command == "rss":
                out.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")
            elif command == "quit":
                break
            out.flush()
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
