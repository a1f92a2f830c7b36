"""Settings of a QuickBooks Online connection, validated at connect time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["PRODUCTION_BASE_URL", "PRODUCTION_TOKEN_URL", "QuickBooksSettings"]

PRODUCTION_BASE_URL = "https://quickbooks.api.intuit.com"
PRODUCTION_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"  # noqa: S105 - a URL, not a secret


class QuickBooksSettings(BaseModel):
    """How to reach one QuickBooks Online company (realm).

    Attributes:
        client_id: the Intuit app's client id.
        client_secret: the Intuit app's client secret.
        refresh_token: the refresh token from the authorization step; once the connector has
            rotated it, the newest one lives in the secret store and wins over this value.
        realm_id: the company id.
        minorversion: API minor version sent with every call.
        base_url: API root (the sandbox's address in tests).
        token_url: OAuth 2.0 token endpoint.
        verify: TLS verification: True, False or a CA bundle path.
        requests_per_minute: client-side pace for all calls (Intuit: 500 per realm).
        batch_requests_per_minute: client-side pace for ``/batch`` (Intuit: 40 per realm/app).
        page_size: MAXRESULTS of query pages (at most 1000).
        batch_size: operations per ``/batch`` call (at most 30).
        cdc_reuse_seconds: how long one CDC answer serves the other streams of a cycle.
        query_refresh_seconds: how often entities without CDC support (TaxCode) are queried
            again; between two refreshes a cycle costs them no call.
        timeout: seconds per HTTP call (Intuit times requests out after 120 s).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    refresh_token: SecretStr | None = None
    realm_id: str = Field(pattern=r"^[0-9]{1,32}$")
    minorversion: int = Field(default=75, ge=1, le=999)
    base_url: str = PRODUCTION_BASE_URL
    token_url: str = PRODUCTION_TOKEN_URL
    verify: bool | str = True
    requests_per_minute: float = Field(default=480, gt=0)
    batch_requests_per_minute: float = Field(default=40, gt=0)
    page_size: int = Field(default=1000, ge=1, le=1000)
    batch_size: int = Field(default=30, ge=1, le=30)
    cdc_reuse_seconds: float = Field(default=60, ge=0)
    query_refresh_seconds: float = Field(default=3600, ge=0)
    timeout: float = Field(default=120, gt=0)
