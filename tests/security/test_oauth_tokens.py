"""QuickBooks refresh tokens in the real credential store: encrypted at rest, stored before use, never a lock-out.

The connector runs against the QuickBooks sandbox (which rotates refresh tokens and keeps the
previous one valid for a grace period, as Intuit does) with :class:`DbSecretStore` on SQLite
and PostgreSQL, keyed with the secret scan's canary Fernet key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.store import Credential
from ledgerlink.store.secrets import DbSecretStore

KEY_ENV = "LEDGERLINK_TEST_CANARY_ENCRYPTION_KEY"


class ProcessDied(BaseException):
    """Stands for the process being killed: nothing after it runs."""


class Recording:
    """A secret store that remembers every plain value put, and can die before storing."""

    def __init__(self, inner: DbSecretStore, *, die: bool = False) -> None:
        self.inner = inner
        self.die = die
        self.seen: list[str] = []

    def get(self, name: str) -> str | None:
        return self.inner.get(name)

    def put(self, name: str, value: str) -> None:
        self.seen.append(value)
        if self.die:
            raise ProcessDied
        self.inner.put(name, value)


@pytest.fixture
def sandbox() -> Iterator[Any]:
    running = load_plugin("quickbooks").start_sandbox(SandboxOptions(seed=4, size=3))
    yield running
    running.stop()


def connect(sandbox: Any, secrets: Any) -> Any:
    return load_plugin("quickbooks").connect(
        sandbox.connector_settings(), ConnectorContext(secrets=secrets)
    )


def raw_credentials(engine: Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM credential")).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def test_rotated_tokens_are_stored_encrypted_and_never_in_the_raw_column(
    engine: Engine, sandbox: Any
) -> None:
    """Every refresh token the vendor issues is stored, and the credential table never holds one in plain text."""
    store = Recording(DbSecretStore(engine, os.environ[KEY_ENV]))
    connector = connect(sandbox, store)
    try:
        assert connector.check().ok
    finally:
        connector.close()
    initial = sandbox.connector_settings()["refresh_token"]
    assert store.seen, "the rotated refresh token was not stored"
    raw = raw_credentials(engine)
    with engine.connect() as conn:
        assert conn.execute(select(Credential)).first() is not None
    for token in [initial, *store.seen]:
        assert token not in raw
    assert store.get(_name(engine)) == store.seen[-1]


def _name(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT name FROM credential")).scalar_one())


def test_killed_between_rotation_and_store_write_the_next_start_gets_in(
    engine: Engine, sandbox: Any
) -> None:
    """A refresh whose new token was lost (killed before the store write) does not lock the hub out."""
    durable = DbSecretStore(engine, os.environ[KEY_ENV])
    first = connect(sandbox, durable)
    try:
        assert first.check().ok  # a stored, encrypted refresh token exists now
    finally:
        first.close()
    before = raw_credentials(engine)

    dying = connect(sandbox, Recording(durable, die=True))
    try:
        with pytest.raises(ProcessDied):
            dying.tokens.access_token()
    finally:
        dying.close()
    assert raw_credentials(engine) == before  # the vendor rotated; the store never heard of it

    restarted = connect(sandbox, durable)
    try:
        assert restarted.check().ok
    finally:
        restarted.close()
    assert raw_credentials(engine) != before  # and the next rotation was stored
