"""Stripe webhook signatures: the ``Stripe-Signature`` header, made and checked.

The header reads ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` and may carry
several ``v1`` values while an endpoint secret is being rotated. The sandbox signs with
:func:`sign_payload`; the webhook intake checks with :func:`verify_signature`, which, unlike
the SDK, refuses timestamps too far in the future as well as too old.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["SignatureError", "parse_signature_header", "sign_payload", "verify_signature"]


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, from the future, or wrong."""


def _digest(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_payload(
    payload: bytes, secret: str, timestamp: int, extra_secrets: Sequence[str] = ()
) -> str:
    """Return a ``Stripe-Signature`` header value for ``payload``.

    Args:
        payload: the exact body bytes.
        secret: the endpoint secret (``whsec_...``).
        timestamp: unix seconds to sign.
        extra_secrets: more secrets to add ``v1`` entries for (rotation).
    """
    parts = [f"t={timestamp}"]
    parts += [f"v1={_digest(payload, s, timestamp)}" for s in (secret, *extra_secrets)]
    return ",".join(parts)


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """Return the timestamp and the ``v1`` signatures of a ``Stripe-Signature`` header.

    Raises:
        SignatureError: no timestamp, a non-integer one, or no ``v1`` signature.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("signature header has a malformed timestamp") from None
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("signature header has no timestamp")
    if not signatures:
        raise SignatureError("signature header has no v1 signature")
    return timestamp, signatures


def verify_signature(
    payload: bytes, header: str | None, secrets: Sequence[str], *, now: float, tolerance: float
) -> int:
    """Check ``header`` against every secret and the time window; return the timestamp.

    Args:
        payload: the exact body bytes received.
        header: the ``Stripe-Signature`` header value.
        secrets: endpoint secrets currently valid (old and new during rotation).
        now: current unix time.
        tolerance: seconds a timestamp may differ from ``now``, in either direction.

    Raises:
        SignatureError: missing or malformed header, timestamp outside the window, or no
            signature matching any secret.
    """
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    if timestamp < now - tolerance:
        raise SignatureError("signature timestamp is too old")
    if timestamp > now + tolerance:
        raise SignatureError("signature timestamp is in the future")
    for secret in secrets:
        expected = _digest(payload, secret, timestamp)
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return timestamp
    raise SignatureError("no signature matches the endpoint secrets")
