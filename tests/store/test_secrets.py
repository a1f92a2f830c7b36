"""The encrypted credential store: round trip, ciphertext at rest, keys and rotation."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ledgerlink.connector import ConfigurationError, SecretStore
from ledgerlink.store import Credential, DbSecretStore, create_engine_for, generate_key

REFRESH_TOKEN = "AB11-refresh-token-0f9c2d7e5b"


def test_put_then_get_returns_the_value(engine: Engine) -> None:
    """A stored secret is read back unchanged, and a missing one is None."""
    secrets = DbSecretStore(engine, generate_key())
    assert isinstance(secrets, SecretStore)
    assert secrets.get("quickbooks.refresh_token") is None
    secrets.put("quickbooks.refresh_token", REFRESH_TOKEN)
    assert secrets.get("quickbooks.refresh_token") == REFRESH_TOKEN


def test_ciphertext_at_rest_does_not_contain_the_secret(engine: Engine) -> None:
    """The credential table holds a token that contains neither the secret nor the key."""
    key = generate_key()
    DbSecretStore(engine, key).put("quickbooks.refresh_token", REFRESH_TOKEN)
    with engine.connect() as conn:
        ciphertext = conn.execute(select(Credential.ciphertext)).scalar_one()  # type: ignore[call-overload]
    assert REFRESH_TOKEN not in ciphertext
    assert key not in ciphertext


def test_put_is_committed_before_it_returns(database_url: str) -> None:
    """A value put through one engine is visible to a fresh engine right after put returns."""
    key = generate_key()
    writer = create_engine_for(database_url)
    reader = create_engine_for(database_url)
    try:
        DbSecretStore(writer, key).put("stripe.api_key", "rk_test_first")
        DbSecretStore(writer, key).put("stripe.api_key", "rk_test_second")
        assert DbSecretStore(reader, key).get("stripe.api_key") == "rk_test_second"
    finally:
        writer.dispose()
        reader.dispose()


def test_wrong_key_is_a_configuration_error(engine: Engine) -> None:
    """Reading with a key that did not encrypt the value fails clearly, without the value."""
    DbSecretStore(engine, generate_key()).put("token", REFRESH_TOKEN)
    with pytest.raises(ConfigurationError, match="cannot be decrypted") as info:
        DbSecretStore(engine, generate_key()).get("token")
    assert REFRESH_TOKEN not in str(info.value)


def test_old_key_still_decrypts_during_rotation(engine: Engine) -> None:
    """During key rotation old values still decrypt and new values use the new key."""
    old, new = generate_key(), generate_key()
    DbSecretStore(engine, old).put("token", "old-value")
    rotating = DbSecretStore(engine, [SecretStr(new), SecretStr(old)])
    assert rotating.get("token") == "old-value"
    rotating.put("token", "new-value")
    assert DbSecretStore(engine, new).get("token") == "new-value"


def test_invalid_key_is_a_configuration_error(engine: Engine) -> None:
    """A key that is not a Fernet key is refused at construction, without echoing it."""
    with pytest.raises(ConfigurationError, match="not a Fernet key") as info:
        DbSecretStore(engine, "not-a-key-but-a-password")
    assert "not-a-key-but-a-password" not in str(info.value)
    with pytest.raises(ConfigurationError, match="no encryption key"):
        DbSecretStore(engine, [])


def test_repr_does_not_show_the_key(engine: Engine) -> None:
    """The store's repr names the database kind only."""
    key = generate_key()
    assert key not in repr(DbSecretStore(engine, key))


def test_delete_removes_the_secret(engine: Engine) -> None:
    """A deleted secret reads back as None."""
    secrets = DbSecretStore(engine, generate_key())
    secrets.put("token", REFRESH_TOKEN)
    secrets.delete("token")
    assert secrets.get("token") is None
