"""The sandbox's HTTP face: Stripe's paths, form bodies, list envelopes, errors, idempotency.

Requests are form-encoded the way stripe-python sends them (``metadata[k]=v``,
``items[0][price]=...``, ``expand[]=...``) and authenticated with ``Authorization: Bearer``.
A POST with an ``Idempotency-Key`` whose response was saved replays it with
``Idempotent-Replayed: true``; the same key with other parameters answers 400
``idempotency_error``. Lists answer ``{object: "list", data, has_more, url}`` newest first with
``limit`` (1..100), ``starting_after``, ``ending_before`` and ``created[gt|gte|lt|lte]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledgerlink_stripe.sandbox.billing import Billing, SandboxError, missing
from ledgerlink_stripe.sandbox.settlement import Settlement
from ledgerlink_stripe.sandbox.store import SandboxState, SavedResponse, WebhookEndpoint, new_id

__all__ = ["API_VERSION", "build_app", "decode_form", "render_fault"]

JSON = dict[str, Any]
API_VERSION = "2026-10-28.endive"
IDEMPOTENCY_TTL = 24 * 3600

# URL collection -> stored object name.
COLLECTIONS = {
    "customers": "customer",
    "products": "product",
    "prices": "price",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "invoiceitems": "invoiceitem",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "credit_notes": "credit_note",
    "disputes": "dispute",
    "payouts": "payout",
    "balance_transactions": "balance_transaction",
    "subscription_items": "subscription_item",
}
_PREFIXES = {
    "cus_": "customer",
    "prod_": "product",
    "price_": "price",
    "sub_": "subscription",
    "in_": "invoice",
    "pi_": "payment_intent",
    "ch_": "charge",
    "re_": "refund",
    "cn_": "credit_note",
    "dp_": "dispute",
    "po_": "payout",
    "txn_": "balance_transaction",
}
# Equality filters each list accepts (Stripe's list parameters).
_FILTERS: dict[str, tuple[str, ...]] = {
    "customer": ("email",),
    "price": ("product", "currency", "active", "type", "lookup_keys"),
    "product": ("active",),
    "subscription": ("customer", "status", "price", "test_clock"),
    "invoice": ("customer", "subscription", "status", "collection_method"),
    "invoiceitem": ("customer", "invoice"),
    "payment_intent": ("customer",),
    "charge": ("customer", "payment_intent"),
    "refund": ("charge", "payment_intent"),
    "credit_note": ("customer", "invoice"),
    "dispute": ("charge", "payment_intent"),
    "payout": ("status", "destination"),
    "balance_transaction": ("type", "currency", "source", "payout"),
}
_KEY = re.compile(r"[^\[\]]+|\[\]")


def decode_form(body: str) -> JSON:
    """Decode a Stripe form body into nested dicts and lists.

    ``a[b]=1`` becomes ``{"a": {"b": "1"}}``, ``items[0][price]=p`` becomes
    ``{"items": [{"price": "p"}]}`` and ``expand[]=x&expand[]=y`` becomes a list.
    """
    root: JSON = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _KEY.findall(key)
        if not parts:
            continue
        is_list = parts[-1] == "[]"
        if is_list:
            parts = parts[:-1]
        node: JSON = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(key)
            node = child
        if is_list:
            node.setdefault(parts[-1], []).append(value)
        else:
            node[parts[-1]] = value
    decoded: JSON = _listify(root)
    return decoded


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def _json(status: int, body: JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def render_fault(status: int) -> tuple[bytes, dict[str, str]]:
    """Render an injected fault the way Stripe answers it (body and headers)."""
    if status == 429:
        error = {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
        }
    else:
        error = {
            "type": "api_error",
            "message": "Something went wrong on Stripe's end. Please try again later.",
        }
    headers = {
        "content-type": "application/json",
        "stripe-should-retry": "true",
        "request-id": f"req_{new_id('')[:14]}",
    }
    return json.dumps({"error": error}).encode(), headers


class _Api:
    """Route handlers bound to one sandbox state."""

    def __init__(
        self, state: SandboxState, billing: Billing, api_key: str, settle_after: float
    ) -> None:
        self.state = state
        self.billing = billing
        self.settlement = Settlement(billing)
        self.api_key = api_key
        self.settle_after = settle_after
        self._last_settle = time.monotonic()

    # -- plumbing ----------------------------------------------------------------------------
    async def dispatch(
        self, request: Request, handler: Callable[[Request, JSON], JSON]
    ) -> Response:
        request_id = f"req_{new_id('')[1:15]}"
        base_headers = {"request-id": request_id, "stripe-version": API_VERSION}
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            error = SandboxError(
                401,
                "invalid_request_error" if not auth else "authentication_error",
                f"Invalid API Key provided: {auth.removeprefix('Bearer ')[:8]}*****",
            )
            return _json(401, error.body(), base_headers)
        raw = (await request.body()).decode()
        if request.method in {"GET", "DELETE"}:
            raw = request.url.query or raw
        try:
            params = decode_form(raw)
        except (ValueError, KeyError, AttributeError, TypeError):
            error = SandboxError(400, "invalid_request_error", "Invalid request body.")
            return _json(400, error.body(), base_headers)
        key = request.headers.get("idempotency-key")
        fingerprint = hashlib.sha256(
            f"{request.method} {request.url.path} {sorted(parse_qsl(raw))}".encode()
        ).hexdigest()
        with self.state.lock:
            if self.settle_after >= 0 and time.monotonic() - self._last_settle >= (
                self.settle_after
            ):
                self.billing.settle_charges()
                self._last_settle = time.monotonic()
            if request.method == "POST" and key:
                saved = self.state.idempotency.get((self.api_key, key))
                if saved is not None and self.state.now() - saved.created > IDEMPOTENCY_TTL:
                    saved = None  # Stripe keeps keys at least 24 hours
                if saved is not None:
                    if saved.fingerprint != fingerprint:
                        error = SandboxError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                        )
                        return _json(400, error.body(), base_headers)
                    headers = {
                        **base_headers,
                        "idempotent-replayed": "true",
                        "idempotency-key": key,
                    }
                    return Response(
                        saved.body,
                        status_code=saved.status,
                        media_type="application/json",
                        headers=headers,
                    )
            try:
                self.state.current_request = {"id": request_id, "idempotency_key": key}
                body = handler(request, params)
                status = 200
            except SandboxError as exc:
                body, status = exc.body(), exc.status
            finally:
                self.state.current_request = {"id": None, "idempotency_key": None}
            payload = json.dumps(body, separators=(",", ":")).encode()
            # Stripe saves a result once the endpoint started executing: successes and
            # declines; not validation errors (which a corrected retry may fix).
            if request.method == "POST" and key and status in {200, 402}:
                self.state.idempotency[(self.api_key, key)] = SavedResponse(
                    fingerprint, status, payload, self.state.now()
                )
        headers = dict(base_headers)
        if key:
            headers["idempotency-key"] = key
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    def route(
        self, handler: Callable[[Request, JSON], JSON]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.dispatch(request, handler)

        return endpoint

    def expand(self, obj: JSON, paths: list[str], *, in_list: bool) -> JSON:
        """Replace id fields named in ``expand[]`` by the objects they point to."""
        for path in paths:
            parts = path.split(".")
            if in_list:
                if parts[0] != "data":
                    continue
                parts = parts[1:]
            self._expand_path(obj, parts)
        return obj

    def _expand_path(self, node: Any, parts: list[str]) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str) and not rest:
            for prefix, object_name in _PREFIXES.items():
                if value.startswith(prefix):
                    found = self.state.store(object_name).get(value)
                    if found is not None:
                        node[head] = found
                    return
        elif isinstance(value, dict):
            self._expand_path(value, rest)

    # -- generic read paths ------------------------------------------------------------------
    def list_objects(self, request: Request, params: JSON) -> JSON:
        """GET /v1/{collection}."""
        collection = request.path_params["collection"]
        object_name = COLLECTIONS.get(collection)
        if object_name is None:
            raise _unknown(request)
        extra: Callable[[JSON], bool] | None = None
        if object_name == "subscription":
            # Stripe lists every status but canceled unless asked for ``status=all``.
            if params.get("status") == "all":
                params = {k: v for k, v in params.items() if k != "status"}
            elif "status" not in params:
                extra = _not_canceled
        if object_name == "balance_transaction" and params.get("payout"):
            return self._paid_out(params)
        return self._list(object_name, f"/v1/{collection}", params, extra)

    def _paid_out(self, params: JSON) -> JSON:
        """``GET /v1/balance_transactions?payout=po_...``: what an automatic payout paid out."""
        txns = self.settlement.paid_out(str(params["payout"]))
        ids = [txn["id"] for txn in txns]
        start = 0
        after = params.get("starting_after")
        if after:
            if after not in ids:
                raise missing("balance_transaction", after, "starting_after")
            start = ids.index(after) + 1
        limit = _limit(params)
        return {
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": start + limit < len(txns),
            "data": [dict(txn) for txn in txns[start : start + limit]],
        }

    def _list(
        self, object_name: str, url: str, params: JSON, extra: Callable[[JSON], bool] | None = None
    ) -> JSON:
        limit = _limit(params)
        created = params.get("created")
        bounds = created if isinstance(created, dict) else ({"eq": created} if created else {})
        filters = {name: params[name] for name in _FILTERS.get(object_name, ()) if name in params}

        def match(obj: JSON) -> bool:
            for name, value in filters.items():
                if str(obj.get(name)).lower() != str(value).lower():
                    return False
            if bounds and not _in_bounds(int(obj["created"]), bounds):
                return False
            return extra is None or extra(obj)

        store = self.state.store(object_name)
        for param in ("starting_after", "ending_before"):
            anchor = params.get(param)
            if anchor and store.get(anchor) is None and anchor not in store.changed:
                raise missing(object_name, anchor, param)
        data, has_more = store.page(
            limit=limit,
            starting_after=params.get("starting_after"),
            ending_before=params.get("ending_before"),
            match=match,
            created_since=_lower_bound(bounds),
        )
        expand = params.get("expand") or []
        return {
            "object": "list",
            "url": url,
            "has_more": has_more,
            "data": [self.expand(dict(obj), expand, in_list=True) for obj in data],
        }

    def retrieve(self, request: Request, params: JSON) -> JSON:
        """GET /v1/{collection}/{id}."""
        object_name = COLLECTIONS.get(request.path_params["collection"])
        if object_name is None:
            raise _unknown(request)
        object_id = request.path_params["id"]
        obj = self.state.store(object_name).get(object_id)
        if obj is None:
            if object_name == "customer" and object_id in self.state.store("customer").changed:
                return {"id": object_id, "object": "customer", "deleted": True}
            raise missing(object_name, object_id)
        return self.expand(dict(obj), params.get("expand") or [], in_list=False)

    def list_events(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """GET /v1/events with ``type`` or ``types[]`` and ``created`` filters."""
        limit = _limit(params)
        created = params.get("created")
        bounds = created if isinstance(created, dict) else ({"eq": created} if created else {})
        types = params.get("types") or ([params["type"]] if params.get("type") else [])
        self.state.prune_events()
        events = self.state.events

        def wanted(position: int) -> bool:
            if bounds and not _in_bounds(events.created(position), bounds):
                return False
            kind = events.type(position)
            return not types or any(
                t == kind or (t.endswith("*") and kind.startswith(t[:-1])) for t in types
            )

        def candidates(start: int, stop: int, *, newest_first: bool) -> Iterable[int]:
            if types:  # the events of these types only, from the log's index of types
                return events.of_types(types, start, stop, newest_first=newest_first)
            return range(stop - 1, start - 1, -1) if newest_first else range(start, stop)

        picked: list[int] = []
        has_more = False
        first = events.first_created_at(_lower_bound(bounds))
        end = events.end_before(_upper_bound(bounds))
        if params.get("ending_before"):
            start = events.position(params["ending_before"])
            if start is None:
                raise missing("event", params["ending_before"], "ending_before")
            for position in candidates(max(start + 1, first), end, newest_first=False):
                if wanted(position):
                    if len(picked) == limit:
                        has_more = True
                        break
                    picked.append(position)
            picked.reverse()
        else:
            stop = end
            if params.get("starting_after"):
                found = events.position(params["starting_after"])
                if found is None:
                    raise missing("event", params["starting_after"], "starting_after")
                stop = min(found, end)
            for position in candidates(first, stop, newest_first=True):
                if wanted(position):
                    if len(picked) == limit:
                        has_more = True
                        break
                    picked.append(position)
        data = [events[position] for position in picked]
        return {"object": "list", "url": "/v1/events", "has_more": has_more, "data": data}

    def retrieve_event(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """GET /v1/events/{id}."""
        event_id = request.path_params["id"]
        position = self.state.events.position(event_id)
        if position is None:
            raise missing("event", event_id)
        return self.state.events[position]

    def invoice_lines(self, request: Request, params: JSON) -> JSON:
        """GET /v1/invoices/{id}/lines."""
        invoice = self.billing.get("invoice", request.path_params["id"])
        lines = invoice["lines"]["data"]
        limit = _limit(params)
        start = 0
        if params.get("starting_after"):
            ids = [line["id"] for line in lines]
            start = (
                ids.index(params["starting_after"]) + 1
                if params["starting_after"] in ids
                else len(ids)
            )
        page = lines[start : start + limit]
        return {
            "object": "list",
            "url": f"/v1/invoices/{invoice['id']}/lines",
            "has_more": start + limit < len(lines),
            "data": page,
        }

    # -- write paths -------------------------------------------------------------------------
    def create(self, request: Request, params: JSON) -> JSON:
        """POST /v1/{collection}."""
        collection = request.path_params["collection"]
        creators: dict[str, Callable[[JSON], JSON]] = {
            "customers": self.billing.create_customer,
            "products": self.billing.create_product,
            "prices": self.billing.create_price,
            "subscriptions": self.billing.create_subscription,
            "invoices": self.billing.create_invoice,
            "invoiceitems": self.billing.create_invoice_item,
            "refunds": self.billing.create_refund,
            "credit_notes": self.settlement.create_credit_note,
            "charges": self.settlement.create_charge,
            "payouts": self.billing.create_payout,
        }
        creator = creators.get(collection)
        if creator is None:
            raise _unknown(request)
        return creator(params)

    def update(self, request: Request, params: JSON) -> JSON:
        """POST /v1/{collection}/{id}."""
        collection, object_id = request.path_params["collection"], request.path_params["id"]
        if collection == "customers":
            return self.billing.update_customer(object_id, params)
        if collection == "subscriptions":
            return self.billing.update_subscription(object_id, params)
        if collection == "disputes":
            return self.billing.update_dispute(object_id, params)
        raise _unknown(request)

    def delete(self, request: Request, params: JSON) -> JSON:
        """DELETE /v1/{collection}/{id}."""
        collection, object_id = request.path_params["collection"], request.path_params["id"]
        if collection == "customers":
            return self.billing.delete_customer(object_id)
        if collection == "subscriptions":
            return self.billing.cancel_subscription(object_id, params)
        raise _unknown(request)

    def action(self, request: Request, params: JSON) -> JSON:
        """POST /v1/invoices/{id}/finalize|pay|void|mark_uncollectible, /v1/credit_notes/{id}/void,
        /v1/disputes/{id}/close, legacy usage_records."""
        collection, object_id = request.path_params["collection"], request.path_params["id"]
        verb = request.path_params["action"]
        if collection == "invoices" and verb == "finalize":
            return self.billing.finalize_invoice(object_id)
        if collection == "invoices" and verb == "pay":
            return self.billing.pay_invoice(object_id, params)
        settlement = {
            ("invoices", "void"): self.settlement.void_invoice,
            ("invoices", "mark_uncollectible"): self.settlement.mark_uncollectible,
            ("credit_notes", "void"): self.settlement.void_credit_note,
        }.get((collection, verb))
        if settlement is not None:
            return settlement(object_id)
        if collection == "subscription_items" and verb == "usage_records":
            return self.billing.report_usage(object_id, params)
        if collection == "disputes" and verb == "close":
            return self.billing.close_dispute(object_id)
        raise _unknown(request)

    def create_meter(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """POST /v1/billing/meters."""
        return self.billing.create_meter(params)

    def get_meter(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """GET /v1/billing/meters/{id}."""
        return self.billing.get("billing.meter", request.path_params["id"])

    def create_meter_event(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """POST /v1/billing/meter_events."""
        return self.billing.create_meter_event(params)

    def create_clock(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """POST /v1/test_helpers/test_clocks."""
        return self.billing.create_test_clock(params)

    def get_clock(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """GET /v1/test_helpers/test_clocks/{id}."""
        return self.billing.get("test_helpers.test_clock", request.path_params["id"])

    def advance_clock(self, request: Request, params: JSON) -> JSON:
        """POST /v1/test_helpers/test_clocks/{id}/advance."""
        return self.billing.advance_test_clock(request.path_params["id"], params)

    def create_endpoint(self, request: Request, params: JSON) -> JSON:  # noqa: ARG002 - handler signature
        """POST /v1/webhook_endpoints: register a URL; the answer carries its ``secret``."""
        url = params.get("url")
        if not url:
            raise SandboxError(
                400,
                "invalid_request_error",
                "Missing required param: url.",
                code="parameter_missing",
                param="url",
            )
        endpoint = WebhookEndpoint(
            id=new_id("we_"),
            url=url,
            secret=new_id("whsec_"),
            enabled_events=list(params.get("enabled_events") or ["*"]),
            created=self.state.now(),
        )
        self.state.endpoints[endpoint.id] = endpoint
        return {
            "id": endpoint.id,
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": endpoint.enabled_events,
            "secret": endpoint.secret,
            "status": "enabled",
            "created": endpoint.created,
            "livemode": False,
            "api_version": API_VERSION,
            "metadata": {},
            "description": None,
            "application": None,
        }


def _not_canceled(obj: JSON) -> bool:
    return obj.get("status") != "canceled"


def _unknown(request: Request) -> SandboxError:
    return SandboxError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({request.method}: {request.url.path}).",
    )


def _limit(params: JSON) -> int:
    raw = params.get("limit", "10")
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise SandboxError(
            400,
            "invalid_request_error",
            f"Invalid integer: {raw}",
            code="parameter_invalid_integer",
            param="limit",
        ) from None
    if not 1 <= limit <= 100:
        raise SandboxError(
            400, "invalid_request_error", "Invalid limit: must be between 1 and 100", param="limit"
        )
    return limit


def _lower_bound(bounds: JSON) -> int | None:
    """The smallest ``created`` that ``bounds`` lets through, when it has a lower bound."""
    lower = [int(bounds[op]) + (op == "gt") for op in ("gt", "gte", "eq") if op in bounds]
    return max(lower) if lower else None


def _upper_bound(bounds: JSON) -> int | None:
    """The smallest ``created`` above what ``bounds`` lets through, when it has an upper
    bound."""
    upper = [int(bounds[op]) + (op in ("lte", "eq")) for op in ("lt", "lte", "eq") if op in bounds]
    return min(upper) if upper else None


def _in_bounds(value: int, bounds: JSON) -> bool:
    checks = {
        "gt": value.__gt__,
        "gte": value.__ge__,
        "lt": value.__lt__,
        "lte": value.__le__,
        "eq": value.__eq__,
    }
    return all(checks[op](int(limit)) for op, limit in bounds.items() if op in checks)


def build_app(
    state: SandboxState, billing: Billing, *, api_key: str, settle_after: float = 1.0
) -> Starlette:
    """Return the Starlette app serving ``state`` for clients holding ``api_key``.

    Args:
        state: the sandbox state.
        billing: its billing behaviour.
        api_key: the only secret key accepted.
        settle_after: seconds after which charges get their balance transaction on the next
            request; negative leaves settlement to test clock advances.
    """
    api = _Api(state, billing, api_key, settle_after)
    r = api.route
    routes = [
        Route("/v1/events", r(api.list_events), methods=["GET"]),
        Route("/v1/events/{id}", r(api.retrieve_event), methods=["GET"]),
        Route("/v1/webhook_endpoints", r(api.create_endpoint), methods=["POST"]),
        Route("/v1/test_helpers/test_clocks", r(api.create_clock), methods=["POST"]),
        Route("/v1/test_helpers/test_clocks/{id}", r(api.get_clock), methods=["GET"]),
        Route("/v1/test_helpers/test_clocks/{id}/advance", r(api.advance_clock), methods=["POST"]),
        Route("/v1/invoices/{id}/lines", r(api.invoice_lines), methods=["GET"]),
        Route("/v1/billing/meters", r(api.create_meter), methods=["POST"]),
        Route("/v1/billing/meters/{id}", r(api.get_meter), methods=["GET"]),
        Route("/v1/billing/meter_events", r(api.create_meter_event), methods=["POST"]),
        Route("/v1/{collection}", r(api.list_objects), methods=["GET"]),
        Route("/v1/{collection}", r(api.create), methods=["POST"]),
        Route("/v1/{collection}/{id}", r(api.retrieve), methods=["GET"]),
        Route("/v1/{collection}/{id}", r(api.update), methods=["POST"]),
        Route("/v1/{collection}/{id}", r(api.delete), methods=["DELETE"]),
        Route("/v1/{collection}/{id}/{action}", r(api.action), methods=["POST"]),
    ]
    return Starlette(routes=routes)
