"""Shared helpers of the Salesforce benchmarks: a sandbox in its own process, a connection.

The sandbox runs as ``python -m ledgerlink_salesforce.sandbox`` so that its CPU and memory are
not the client's; its request counter is the server-side truth of the API calls made.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

from ledgerlink_salesforce import plugin
from ledgerlink_salesforce.connector import SalesforceConnector

from ledgerlink.connector.protocol import ConnectorContext


class SecretsInMemory:
    """A SecretStore for benchmarks."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


class SandboxProcess:
    """A sandbox in a child process, driven through its stdin/stdout."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ledgerlink_salesforce.sandbox",
                "--size",
                str(size),
                "--seed",
                str(seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.settings: dict[str, Any] = json.loads(self.proc.stdout.readline())

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def requests(self) -> int:
        """Requests the sandbox served since the last reset."""
        return int(self._ask("count"))

    def reset(self) -> None:
        """Forget the requests counted so far."""
        self._ask("reset")

    def peak_rss_mib(self) -> float:
        """The sandbox process's peak RSS in MiB."""
        return int(self._ask("rss")) / 1024

    def stop(self) -> None:
        """Stop the child process."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def connect(sandbox: SandboxProcess, **overrides: Any) -> SalesforceConnector:
    """Connect the real connector to the sandbox."""
    return plugin.connect(
        {**sandbox.settings, **overrides}, ConnectorContext(secrets=SecretsInMemory())
    )


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
