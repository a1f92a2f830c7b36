"""Encrypted credential storage: the :class:`~ledgerlink.connector.SecretStore` of the store.

Connectors persist what they rotate (an OAuth refresh token replaced at every refresh) through
:class:`DbSecretStore`. Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) before
they reach the database, so the ``credential`` table only holds tokens that are useless
without the key from the configuration. Several keys may be given to rotate the key: the first
encrypts, all of them decrypt. ``put`` commits before it returns, so a token the vendor has
just issued survives a crash right after.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.log import register_secret
from ledgerlink.store.db import for_writing
from ledgerlink.store.models import Credential
from ledgerlink.store.types import utcnow

__all__ = ["DbSecretStore", "generate_key"]

_TABLE = Credential.__table__  # type: ignore[attr-defined]

KeyLike = str | bytes | SecretStr


def generate_key() -> str:
    """Return a new random Fernet key (url-safe base64 text) for the store configuration."""
    return Fernet.generate_key().decode("ascii")


def _fernet(keys: KeyLike | Sequence[KeyLike]) -> MultiFernet:
    items: list[KeyLike] = [keys] if isinstance(keys, str | bytes | SecretStr) else list(keys)
    if not items:
        raise ConfigurationError("no encryption key configured for the credential store")
    fernets = []
    for item in items:
        raw = item.get_secret_value() if isinstance(item, SecretStr) else item
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        register_secret(text)
        try:
            fernets.append(Fernet(text))
        except ValueError:
            raise ConfigurationError(
                "the credential store key is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


class DbSecretStore:
    """A :class:`~ledgerlink.connector.SecretStore` keeping encrypted values in ``credential``.

    Args:
        engine: an engine on a store migrated to head.
        key: the Fernet key, or several (the first encrypts, all decrypt).

    Raises:
        ConfigurationError: no key, or a key that is not a Fernet key.
    """

    def __init__(self, engine: Engine, key: KeyLike | Sequence[KeyLike]) -> None:
        self._engine = engine
        self._fernet = _fernet(key)

    def __repr__(self) -> str:
        return f"DbSecretStore(dialect={self._engine.dialect.name!r})"

    def get(self, name: str) -> str | None:
        """Return the secret stored under ``name``, or None.

        Raises:
            ConfigurationError: the stored value was encrypted with a key not configured.
        """
        with self._engine.connect() as conn:
            token = conn.execute(
                select(_TABLE.c.ciphertext).where(_TABLE.c.name == name)
            ).scalar_one_or_none()
        if token is None:
            return None
        try:
            value = self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                f"credential {name!r} cannot be decrypted with the configured key(s)"
            ) from None
        register_secret(value)
        return value

    def put(self, name: str, value: str, *, now: datetime | None = None) -> None:
        """Encrypt and store ``value`` under ``name``, replacing any previous value; committed."""
        register_secret(value)
        token = self._fernet.encrypt(value.encode("utf-8")).decode("ascii")
        dialect_insert = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )
        stmt = dialect_insert(_TABLE).values(
            name=name, ciphertext=token, updated_at=now or utcnow()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[_TABLE.c.name],
            set_={"ciphertext": stmt.excluded.ciphertext, "updated_at": stmt.excluded.updated_at},
        )
        with for_writing(self._engine).begin() as conn:
            conn.execute(stmt)

    def delete(self, name: str) -> None:
        """Remove the secret ``name`` if present; committed."""
        with for_writing(self._engine).begin() as conn:
            conn.execute(_TABLE.delete().where(_TABLE.c.name == name))
