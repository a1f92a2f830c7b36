"""The secret scan plugin fails a run when a secret leaks, on every channel it watches, and passes a clean one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
CANARY = "LEDGERLINK_TEST_CANARY_STRIPE_API_KEY"

CLEAN = """
import io

from ledgerlink.log import configure_logging, get_logger


def test_redacted_log_is_fine():
    import os

    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    get_logger().info("calling", key=os.environ["LEDGERLINK_TEST_CANARY_STRIPE_API_KEY"])
    assert "REDACTED" in stream.getvalue()
"""

LEAKY = """
import logging
import os

import pytest
from prometheus_client import Counter

from ledgerlink.config import ConfigError
from ledgerlink.log import register_secret
from ledgerlink.metrics import REGISTRY

CANARY = os.environ["LEDGERLINK_TEST_CANARY_STRIPE_API_KEY"]


def test_print_leak():
    print("debug:", CANARY)


def test_error_message_leak():
    with pytest.raises(ConfigError):
        raise ConfigError("ledgerlink.toml", "connectors.stripe.api_key", f"bad value {CANARY}")


def test_stdlib_log_leak():
    logging.getLogger("somelib").warning("token is %s", CANARY)


def test_registered_secret_leak(capsys):
    register_secret("a-secret-the-code-registered-42")
    import sys

    sys.stderr.write("oops a-secret-the-code-registered-42\\n")


def test_metric_label_leak():
    Counter("leaky_calls", "x", ["key"], registry=REGISTRY).labels(key=CANARY).inc()
"""


def run_inner(
    tmp_path: Path, files: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    """Run pytest in a separate process on ``files`` with only the secret scan plugin enabled."""
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["secret_scan"]\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_TEST_CANARY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *options,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_a_clean_run_passes_and_says_what_it_checked(tmp_path: Path) -> None:
    """A run whose secrets only reach redacted logs passes, and the summary says the scan ran."""
    result = run_inner(tmp_path, {"test_clean.py": CLEAN})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secret scan:" in result.stdout
    assert "no leak" in result.stdout


@pytest.mark.parametrize("options", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_planted_leaks_fail_the_run_on_every_channel(
    tmp_path: Path, canary_secrets: dict[str, str], options: tuple[str, ...]
) -> None:
    """Leaks through stdout, an error message, a stdlib log, stderr and a metric label each fail the run, named by test and channel, also when xdist workers run the tests."""
    result = run_inner(tmp_path, {"test_leaky.py": LEAKY}, *options)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "5 passed" in out  # the tests pass; the scan fails the run
    leaks = [line for line in out.splitlines() if line.startswith("LEAK ")]
    expected = {
        "test_print_leak": "test output (Captured stdout call)",
        "test_error_message_leak": "ConfigError message",
        "test_stdlib_log_leak": "stdlib log (somelib)",
        "test_registered_secret_leak": "test output (Captured stderr call)",
        "(outside any test)": "metrics",
    }
    for test, channel in expected.items():
        assert any(test in line and channel in line for line in leaks), (test, channel, leaks)
    for value in [*canary_secrets.values(), "a-secret-the-code-registered-42"]:
        assert value not in out, "the report must not print the secret it found"


@pytest.mark.parametrize("secret", ["sk_test_51SomeOtherKeyValue", "short-but-ok"])
def test_hint_never_contains_the_secret(secret: str) -> None:
    """The stand-in printed for a leak keeps three characters and the length, never the secret."""
    from tests.secret_scan import hint

    assert secret not in hint(secret)
    assert str(len(secret)) in hint(secret)
