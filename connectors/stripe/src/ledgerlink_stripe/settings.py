"""Settings of a Stripe connection, validated at connect time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["PINNED_API_VERSION", "StripeSettings"]

PINNED_API_VERSION = "2026-10-28.endive"
"""The API version every request carries; the one stripe-python 16 is generated for."""


class StripeSettings(BaseModel):
    """How to reach Stripe and how to read it.

    Attributes:
        api_key: a secret (``sk_``) or restricted (``rk_``) key.
        api_base: the API root; the sandbox's loopback URL in tests.
        api_version: the pinned ``Stripe-Version``.
        webhook_secrets: endpoint secrets accepted by the webhook intake (several while
            rotating).
        webhook_tolerance_seconds: how far a signature timestamp may be from now, either way.
        webhook_max_body_bytes: bodies larger than this are refused unread.
        page_size: list page size (Stripe's maximum is 100).
        event_retention_days: how long Stripe keeps events; an older cursor re-lists.
        max_attempts: attempts per call for retryable errors.
        timeout_seconds: HTTP timeout per call.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr
    api_base: str = "https://api.stripe.com"
    api_version: str = PINNED_API_VERSION
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    page_size: int = Field(default=100, ge=1, le=100)
    event_retention_days: int = Field(default=30, ge=1, le=30)
    max_attempts: int = Field(default=5, ge=1, le=10)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value()
        if not key.startswith(("sk_", "rk_")):
            msg = "api_key must be a secret (sk_...) or restricted (rk_...) key"
            raise ValueError(msg)
        return value

    @field_validator("api_base")
    @classmethod
    def _base_shape(cls, value: str) -> str:
        if not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            msg = "api_base must be https://, or http:// on loopback for a sandbox"
            raise ValueError(msg)
        return value.rstrip("/")
