"""Attacks on ``POST /webhooks/stripe`` of a running daemon: refused with the right status, never stored.

The daemon runs with the real Stripe plugin against the Stripe sandbox, its endpoint secret
read from the environment (a canary of the secret scan). "Processed" means landed as a
``stripe/events`` source record, which is all the intake does with an accepted event.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerlink_stripe.signature import sign_payload

from ledgerlink.config import load_config
from ledgerlink.connector import Sandbox, SandboxOptions, load_plugin
from ledgerlink.daemon import Daemon, DaemonOptions
from ledgerlink.store import Store

SECRET_ENV = "LEDGERLINK_TEST_CANARY_STRIPE_WEBHOOK_SECRET"
JSON_TYPE = {"content-type": "application/json; charset=utf-8"}


@pytest.fixture
def stripe_sandbox() -> Iterator[Sandbox]:
    sandbox = load_plugin("stripe").start_sandbox(SandboxOptions(seed=3, size=3))
    yield sandbox
    sandbox.stop()


@pytest.fixture
def daemon(
    database_url: str, stripe_sandbox: Sandbox, tmp_path: Path, canary_secrets: dict[str, str]
) -> Iterator[Daemon]:
    """A daemon whose Stripe webhook secret comes from the environment, serving on loopback."""
    assert SECRET_ENV in canary_secrets
    settings = stripe_sandbox.connector_settings()
    config_file = tmp_path / "ledgerlink.toml"
    config_file.write_text(
        f"[database]\nurl = {json.dumps(database_url)}\n\n"
        "[connectors.stripe]\n"
        + "".join(
            f"{key} = {json.dumps(value)}\n"
            for key, value in settings.items()
            if isinstance(value, str | int | bool)
        )
        + f'webhook_secrets = ["env:{SECRET_ENV}"]\n'
        + "webhook_tolerance_seconds = 300\n",
        encoding="utf-8",
    )
    running = Daemon(
        load_config(config_file, required=True),
        DaemonOptions(port=0, first_run_within=3600, workers=1),
    )
    running.start()
    try:
        yield running
    finally:
        running.shutdown()


def secret() -> str:
    import os

    return os.environ[SECRET_ENV]


def event(event_id: str = "evt_attack_1", *, created: int | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "invoice.paid",
            "created": created or int(time.time()),
            "data": {"object": {"id": "in_attack_1", "object": "invoice", "amount_paid": 100}},
        }
    ).encode()


def signed(body: bytes, *, key: str | None = None, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {**JSON_TYPE, "stripe-signature": sign_payload(body, key or secret(), stamp)}


def stored_events(daemon: Daemon) -> set[str]:
    store: Store = daemon.store
    with store.engine.connect() as conn:
        from sqlalchemy import select

        from ledgerlink.store import SourceRecord

        rows = conn.execute(
            select(SourceRecord.external_id).where(  # type: ignore[call-overload]
                SourceRecord.system == "stripe", SourceRecord.object == "events"
            )
        )
        return {str(row[0]) for row in rows}


def post(daemon: Daemon, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30) as http:
        return http.post("/webhooks/stripe", content=body, headers=headers)


def test_valid_delivery_is_stored_once_and_replays_are_not_processed_again(daemon: Daemon) -> None:
    """A signed event is stored; the same delivery replayed is acknowledged as a duplicate and stored once."""
    body = event()
    first = post(daemon, body, signed(body))
    assert (first.status_code, first.json()) == (200, {"outcome": "accepted"})
    replay = post(daemon, body, signed(body))
    assert (replay.status_code, replay.json()) == (200, {"outcome": "duplicate"})
    assert stored_events(daemon) == {"evt_attack_1"}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("wrong signature", 400),
        ("wrong secret", 400),
        ("no signature", 400),
        ("tampered body", 400),
        ("too old", 400),
        ("in the future", 400),
        ("old capture replayed", 400),
        ("oversize for stripe", 413),
        ("oversize for the daemon", 413),
        ("wrong content type", 415),
        ("form content type", 415),
        ("malformed json, signed", 400),
        ("not an event, signed", 400),
    ],
)
def test_attack_is_refused_with_its_status_and_not_processed(
    daemon: Daemon, case: str, status: int
) -> None:
    """Each attack gets its status (400 signature/time/body, 413 size, 415 type) and nothing is stored."""
    body = event()
    now = time.time()
    headers: dict[str, Any]
    if case == "wrong signature":
        headers = {**JSON_TYPE, "stripe-signature": f"t={int(now)},v1={'0' * 64}"}
    elif case == "wrong secret":
        headers = signed(body, key="whsec_attacker_guess_0000000000")
    elif case == "no signature":
        headers = dict(JSON_TYPE)
    elif case == "tampered body":
        headers = signed(body)
        body = body.replace(b"100", b"999")
    elif case == "too old":
        headers = signed(body, at=now - 330)
    elif case == "in the future":
        headers = signed(body, at=now + 330)
    elif case == "old capture replayed":
        headers = signed(body, at=now - 86_400)
    elif case == "oversize for stripe":
        body = event()[:-1] + b', "pad": "' + b"x" * (300 * 1024) + b'"}'
        headers = signed(body)
    elif case == "oversize for the daemon":
        body = b"x" * (1024 * 1024 + 1)
        headers = signed(body)
    elif case == "wrong content type":
        headers = {**signed(body), "content-type": "text/plain"}
    elif case == "form content type":
        headers = {**signed(body), "content-type": "application/x-www-form-urlencoded"}
    elif case == "malformed json, signed":
        body = b'{"id": "evt_attack_1", "object": "event",'
        headers = signed(body)
    else:
        body = json.dumps({"id": "evt_attack_1", "object": "charge"}).encode()
        headers = signed(body)
    answer = post(daemon, body, headers)
    assert answer.status_code == status, answer.text
    assert stored_events(daemon) == set()


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.binary(max_size=400), sign=st.booleans(), drift=st.integers(-1000, 1000))
def test_any_bytes_never_get_a_500_and_only_valid_events_are_stored(
    daemon: Daemon, body: bytes, sign: bool, drift: int
) -> None:
    """Random bodies, signed or not, at any time drift: 200/400 only, and only signed, timely, well-formed events are stored."""
    headers = (
        signed(body, at=time.time() + drift)
        if sign
        else {**JSON_TYPE, "stripe-signature": "t=1,v1=ab"}
    )
    before = stored_events(daemon)
    answer = post(daemon, body, headers)
    assert answer.status_code in (200, 400), answer.text
    after = stored_events(daemon)
    if not sign or abs(drift) > 302 or answer.status_code != 200:
        assert after == before
