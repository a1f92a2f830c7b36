"""Run the Stripe sandbox in the foreground: ``python -m ledgerlink_stripe.sandbox``.

Prints one JSON line with ``base_url`` and ``api_key`` once serving, then serves until
interrupted. Benchmarks use it to keep the fake server out of the measured process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink_stripe.sandbox import StripeSandbox


def main(argv: list[str] | None = None) -> None:
    """Parse ``--seed``, ``--size``, ``--port`` and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Serve the ledgerlink Stripe sandbox.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sandbox = StripeSandbox(SandboxOptions(seed=args.seed, size=args.size, port=args.port))
    sys.stdout.write(json.dumps(sandbox.connector_settings()) + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()


if __name__ == "__main__":
    main()
