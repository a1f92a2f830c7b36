"""Prometheus metrics shared by the core and the connectors.

All metrics live in one registry, :data:`REGISTRY`, which the daemon serves on ``/metrics``.
Label values never carry customer data or secrets: connector, stream, method, status only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "API_CALLS",
    "API_CALL_SECONDS",
    "REGISTRY",
    "VENDOR_LIMIT_MAX",
    "VENDOR_LIMIT_USED",
]

REGISTRY = CollectorRegistry(auto_describe=True)

API_CALLS = Counter(
    "ledgerlink_api_calls",
    "HTTP calls made to vendor APIs.",
    ["connector", "method", "status"],
    registry=REGISTRY,
)
API_CALL_SECONDS = Histogram(
    "ledgerlink_api_call_seconds",
    "Duration of vendor API calls.",
    ["connector"],
    registry=REGISTRY,
)
VENDOR_LIMIT_USED = Gauge(
    "ledgerlink_vendor_limit_used",
    "Vendor API budget used in the current window, as the vendor reports it.",
    ["connector", "limit"],
    registry=REGISTRY,
)
VENDOR_LIMIT_MAX = Gauge(
    "ledgerlink_vendor_limit_max",
    "Vendor API budget of the current window, as the vendor reports it.",
    ["connector", "limit"],
    registry=REGISTRY,
)
