"""Configuration of the Salesforce connector, validated at start-up.

Secrets (private key, client secret, refresh token, password, security token) are
``SecretStr``: they never show in reprs, logs or validation errors.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DEFAULT_API_VERSION", "SalesforceSettings"]

DEFAULT_API_VERSION = "64.0"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class SalesforceSettings(BaseModel):
    """Settings of one Salesforce org connection.

    Attributes:
        instance_url: ``https://MyDomain.my.salesforce.com`` (the token answer may override it).
        login_url: where tokens come from: ``https://login.salesforce.com``,
            ``https://test.salesforce.com`` for sandboxes, or the My Domain URL.
        api_version: REST API version, ``NN.0``.
        auth: ``jwt`` (default, server to server), ``refresh_token`` or ``password``.
        client_id: the connected app's consumer key.
        username: the integration user (jwt and password flows).
        private_key: PEM of the key whose certificate is on the connected app (jwt).
        client_secret: the consumer secret (password flow; optional for refresh_token).
        refresh_token: a refresh token of the connected app (refresh_token flow).
        password, security_token: the integration user's password and token (password flow).
        ca_bundle: PEM file to trust instead of the system store (sandboxes, proxies).
        streams: which streams to read (default: all).
        fields: per stream, the fields to read (``Id``, ``SystemModstamp`` and ``IsDeleted`` are
            always added).
        external_id_field: the unique external-id field used for upserts.
        external_id_fields: per object overrides of ``external_id_field``.
        bulk_threshold: a first load above this many rows uses a Bulk API 2.0 query job.
        bulk_page_size: ``maxRecords`` per Bulk results page (bounds the client's memory: two
            pages are alive at most while the engine stores one).
        query_batch_size: ``Sforce-Query-Options: batchSize`` for REST queries (200..2000).
        overlap_seconds: how far before the cursor an incremental read starts again.
        skip_own_writes: leave out of that overlap the records this connection's user changed
            last and that are stamped more than ``timeout_seconds`` before the cursor: such a
            write had committed before the read that moved the cursor began, so it was read
            already. Turn it off when other tools write to Salesforce as the same user.
        api_budget_share: the share of the daily API budget this hub may use (0..1].
        timeout_seconds: per-request timeout.
        max_attempts: attempts per call for transient errors.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_url: str
    login_url: str = "https://login.salesforce.com"
    api_version: str = DEFAULT_API_VERSION
    auth: Literal["jwt", "refresh_token", "password"] = "jwt"
    client_id: str = Field(min_length=1)
    username: str | None = None
    private_key: SecretStr | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    ca_bundle: str | None = None
    streams: list[str] | None = None
    fields: dict[str, list[str]] = Field(default_factory=dict)
    external_id_field: str = "Ledgerlink_Id__c"
    external_id_fields: dict[str, str] = Field(default_factory=dict)
    bulk_threshold: int = Field(default=10_000, ge=0)
    bulk_page_size: int = Field(default=20_000, ge=1, le=1_000_000)
    query_batch_size: int = Field(default=2000, ge=200, le=2000)
    overlap_seconds: int = Field(default=300, ge=0, le=86_400)
    skip_own_writes: bool = True
    api_budget_share: float = Field(default=0.8, gt=0, le=1)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("instance_url", "login_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith("https://"):
            msg = "must be an https:// URL"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.0", value):
            msg = "must look like 64.0"
            raise ValueError(msg)
        return value

    @field_validator("external_id_field")
    @classmethod
    def _field_name(cls, value: str) -> str:
        if not _NAME.match(value):
            msg = "must be a field API name"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _flow_needs(self) -> SalesforceSettings:
        missing: list[str] = []
        if self.auth == "jwt":
            missing = [n for n in ("username", "private_key") if getattr(self, n) is None]
        elif self.auth == "refresh_token":
            missing = [n for n in ("refresh_token",) if getattr(self, n) is None]
        else:
            missing = [
                n for n in ("username", "password", "client_secret") if getattr(self, n) is None
            ]
        if missing:
            msg = f"auth={self.auth} needs {', '.join(missing)}"
            raise ValueError(msg)
        for name, names in self.fields.items():
            bad = [f for f in (name, *names) if not _NAME.match(f)]
            if bad:
                msg = f"fields: not API names: {', '.join(bad)}"
                raise ValueError(msg)
        return self

    def external_id_for(self, object_name: str) -> str:
        """The external-id field upserts of ``object_name`` use."""
        return self.external_id_fields.get(object_name, self.external_id_field)
