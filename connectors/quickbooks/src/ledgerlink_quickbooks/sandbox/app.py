"""The QuickBooks Online sandbox as a Starlette app: OAuth, query, CDC, CRUD, batch, reports.

Paths, parameters and bodies follow the Accounting API v3 (``/v3/company/{realmId}/...``)
and Intuit's OAuth 2.0 token endpoint (``/oauth2/v1/tokens/bearer``). Limits are the real
ones by default (500 requests per minute, 10 per second and 10 concurrent per realm, 40
batch requests per minute, 30 items per batch, MAXRESULTS 1000, CDC 30 days and 1,000 objects) and can be relaxed
for benchmarks through :class:`SandboxLimits`.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledgerlink_quickbooks.sandbox import data
from ledgerlink_quickbooks.sandbox.qbql import QuerySyntaxError, parse_query
from ledgerlink_quickbooks.sandbox.store import Clock, Company, QboFault

__all__ = [
    "OAuthServer",
    "SandboxLimits",
    "SandboxState",
    "build_app",
    "render_error",
]

JSON = dict[str, Any]
MAX_BATCH_ITEMS = 30
MAX_REQUESTID = 50


@dataclass
class SandboxLimits:
    """Throttling limits per realm; None switches one off."""

    requests_per_minute: int | None = 500
    requests_per_second: int | None = 10
    batch_per_minute: int | None = 40
    concurrent: int | None = 10


@dataclass
class _RefreshToken:
    issued: dt.datetime
    successor: str | None = None
    superseded_at: dt.datetime | None = None


class OAuthServer:
    """Intuit's token endpoint: refresh grant with rotation and a short grace for the old token.

    Every refresh issues a new access token (valid ``access_ttl``) and a new refresh token.
    The superseded refresh token keeps working for ``grace`` (answering with the same
    successor), then gets ``invalid_grant``.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 - fake sandbox credential
        access_ttl: dt.timedelta = dt.timedelta(hours=1),
        grace: dt.timedelta = dt.timedelta(minutes=2),
    ) -> None:
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_ttl = access_ttl
        self.grace = grace
        self.refresh_tokens: dict[str, _RefreshToken] = {}
        self.access_tokens: dict[str, dt.datetime] = {}
        self.refresh_calls = 0
        self._lock = threading.Lock()
        self.initial_refresh_token = self._new_refresh()

    def _new_refresh(self) -> str:
        token = "RT1-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = _RefreshToken(issued=self.clock.now())
        return token

    def refresh(self, refresh_token: str) -> JSON | None:
        """Answer a refresh grant, or None for ``invalid_grant``."""
        with self._lock:
            self.refresh_calls += 1
            now = self.clock.now()
            entry = self.refresh_tokens.get(refresh_token)
            if entry is None:
                return None
            if entry.successor is not None:
                if entry.superseded_at is None or now - entry.superseded_at > self.grace:
                    return None
                successor = entry.successor
            else:
                successor = self._new_refresh()
                entry.successor = successor
                entry.superseded_at = now
            access = "eyJ" + secrets.token_urlsafe(32)
            self.access_tokens[access] = now + self.access_ttl
            return {
                "token_type": "bearer",
                "access_token": access,
                "expires_in": int(self.access_ttl.total_seconds()),
                "refresh_token": successor,
                "x_refresh_token_expires_in": 8_726_400,
            }

    def valid(self, access_token: str) -> bool:
        """Whether ``access_token`` is known and unexpired."""
        expiry = self.access_tokens.get(access_token)
        return expiry is not None and self.clock.now() < expiry

    def expire_access_tokens(self) -> None:
        """Make every issued access token expire now (tests)."""
        with self._lock:
            now = self.clock.now()
            for token in self.access_tokens:
                self.access_tokens[token] = now


@dataclass
class SandboxState:
    """Everything the app serves: companies by realm, OAuth, limits, counters."""

    clock: Clock
    companies: dict[str, Company]
    oauth: OAuthServer
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    minorversions: collections.Counter[str] = field(default_factory=collections.Counter)
    _window: dict[str, collections.deque[dt.datetime]] = field(default_factory=dict)
    _second_window: dict[str, collections.deque[dt.datetime]] = field(default_factory=dict)
    _batch_window: dict[str, collections.deque[dt.datetime]] = field(default_factory=dict)
    _in_flight: collections.Counter[str] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, realm: str, *, batch: bool) -> bool:
        """Count a request against the realm's limits; False means throttle it."""
        now = self.clock.now()
        with self._lock:
            if self.limits.concurrent is not None and (
                self._in_flight[realm] >= self.limits.concurrent
            ):
                return False
            minute, second = dt.timedelta(minutes=1), dt.timedelta(seconds=1)
            checks = [
                (self._window, self.limits.requests_per_minute, minute),
                (self._second_window, self.limits.requests_per_second, second),
            ]
            if batch:
                checks.append((self._batch_window, self.limits.batch_per_minute, minute))
            for windows, limit, span in checks:
                if limit is None:
                    continue
                window = windows.setdefault(realm, collections.deque())
                while window and now - window[0] >= span:
                    window.popleft()
                if len(window) >= limit:
                    return False
            for windows, limit, _span in checks:
                if limit is not None:
                    windows[realm].append(now)
            self._in_flight[realm] += 1
            return True

    def release(self, realm: str) -> None:
        """One request of ``realm`` finished."""
        with self._lock:
            self._in_flight[realm] -= 1


def _time(clock: Clock) -> str:
    now = clock.now().astimezone(data.PACIFIC)
    return now.isoformat(timespec="milliseconds")


def render_error(status: int) -> tuple[bytes, dict[str, str]]:
    """The body QuickBooks sends with ``status`` (used by the fault injector)."""
    headers = {"content-type": "application/json"}
    if status == 401:
        body: JSON = _auth_fault_body()
        headers["www-authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
    elif status == 429:
        body = {
            "Fault": {
                "Error": [
                    {
                        "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                        "Detail": "The request limit was reached.",
                        "code": "3001",
                    }
                ],
                "type": "SERVICE",
            }
        }
    else:
        body = {
            "Fault": {
                "Error": [
                    {
                        "Message": "An application error has occurred while processing your "
                        "request",
                        "Detail": "System Failure Error: An unexpected error occurred while "
                        "accessing or saving your data. Please wait a few minutes and try again.",
                        "code": "10000",
                    }
                ],
                "type": "SystemFault",
            }
        }
    return json.dumps(body).encode(), headers


def _auth_fault_body() -> JSON:
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [
                {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": "Token expired",
                    "code": "3200",
                    "element": None,
                }
            ],
            "type": "AUTHENTICATION",
        },
    }


def _fault_response(state: SandboxState, fault: QboFault) -> JSONResponse:
    return JSONResponse({"Fault": fault.body(), "time": _time(state.clock)}, fault.status)


def _bad_request(state: SandboxState, detail: str, code: str = "2010") -> JSONResponse:
    return _fault_response(
        state, QboFault(code, "Request has invalid or unsupported property", detail)
    )


def build_app(state: SandboxState) -> Starlette:
    """Build the ASGI app serving ``state``."""

    async def token(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        expected = base64.b64encode(
            f"{state.oauth.client_id}:{state.oauth.client_secret}".encode()
        ).decode()
        if auth != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, 401)
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        answer = state.oauth.refresh(str(form.get("refresh_token", "")))
        if answer is None:
            return JSONResponse({"error": "invalid_grant"}, 400)
        return JSONResponse(answer, headers={"cache-control": "no-store"})

    async def api(request: Request) -> Response:
        realm = request.path_params["realm"]
        company = state.companies.get(realm)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not state.oauth.valid(auth[7:]):
            body, headers = render_error(401)
            return Response(body, 401, headers=headers)
        if company is None:
            return JSONResponse(
                {
                    "Fault": {
                        "Error": [
                            {
                                "Message": "message=ApplicationAuthorizationFailed; "
                                "errorCode=003100; statusCode=403",
                                "Detail": "",
                                "code": "3100",
                            }
                        ],
                        "type": "AUTHORIZATION",
                    },
                    "time": _time(state.clock),
                },
                403,
            )
        rest = request.path_params["rest"]
        batch = rest == "batch"
        if not state.admit(realm, batch=batch):
            body, headers = render_error(429)
            return Response(body, 429, headers=headers)
        try:
            version = request.query_params.get("minorversion")
            if version:
                state.minorversions[version] += 1
            return await _dispatch(state, company, request, rest)
        except QboFault as fault:
            return _fault_response(state, fault)
        finally:
            state.release(realm)

    return Starlette(
        routes=[
            Route("/oauth2/v1/tokens/bearer", token, methods=["POST"]),
            Route("/v3/company/{realm}/{rest:path}", api, methods=["GET", "POST"]),
        ]
    )


async def _dispatch(  # noqa: PLR0911, PLR0912 - one branch per API route
    state: SandboxState, company: Company, request: Request, rest: str
) -> Response:
    parts = rest.strip("/").split("/")
    head = parts[0].lower()
    now = _time(state.clock)
    if head == "query":
        text = request.query_params.get("query")
        if request.method == "POST":
            text = (await request.body()).decode()
        return JSONResponse(_query(company, text or ""), headers={"intuit_tid": "sandbox"})
    if head == "cdc" and request.method == "GET":
        return JSONResponse(_cdc(state, company, request))
    if head == "reports" and len(parts) > 1 and parts[1] == "TrialBalance":
        return JSONResponse(_trial_balance(company, now))
    if head == "companyinfo":
        return JSONResponse(
            {
                "CompanyInfo": {
                    "Id": company.realm_id,
                    "CompanyName": "ledgerlink Sandbox Company",
                    "Country": "US",
                    "SyncToken": "0",
                },
                "time": now,
            }
        )
    if request.method == "GET" and len(parts) == 2:
        table = company.table(head)
        return JSONResponse({table.name: company.read(table.name, parts[1]), "time": now})
    if request.method != "POST" or len(parts) != 1:
        raise QboFault("2010", "Request has invalid or unsupported property", "Unsupported path")
    requestid = request.query_params.get("requestid")
    if requestid is not None and len(requestid) > MAX_REQUESTID:
        return _bad_request(state, "requestid must be at most 50 characters long")
    if requestid is not None:
        with company.lock:
            seen = company.idempotency.get(requestid)
        if seen is not None:
            return JSONResponse(seen[1], seen[0])
    try:
        payload = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        return _bad_request(state, "Request body is not valid JSON")
    if head == "batch":
        status, body = 200, _batch(company, payload, now)
    else:
        operation = request.query_params.get("operation", "")
        try:
            table = company.table(head)
            if operation == "delete":
                result = company.delete(table.name, payload)
            elif operation == "void":
                result = company.void(table.name, payload)
            elif operation == "update" or payload.get("Id"):
                result = company.update(table.name, payload)
            else:
                result = company.create(table.name, payload)
            status, body = 200, {table.name: result, "time": now}
        except QboFault as fault:
            status, body = fault.status, {"Fault": fault.body(), "time": now}
    if requestid is not None:
        with company.lock:
            status, body = company.idempotency.setdefault(requestid, status, body)
    return JSONResponse(body, status)


def _query(company: Company, text: str) -> JSON:
    try:
        parsed = parse_query(text)
    except QuerySyntaxError as exc:
        raise QboFault("4000", "Error parsing query", f"QueryParserError: {exc}") from exc
    name, rows, total = company.query(parsed)
    response: JSON = {}
    if total is not None:
        response["totalCount"] = total
    elif rows:
        response[name] = rows
        response["startPosition"] = parsed.start_position
        response["maxResults"] = len(rows)
    return {"QueryResponse": response, "time": _time(company.clock)}


def _cdc(state: SandboxState, company: Company, request: Request) -> JSON:
    entities = [e for e in request.query_params.get("entities", "").split(",") if e]
    since_text = request.query_params.get("changedSince")
    if not entities or not since_text:
        raise QboFault(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter entities and changedSince are missing in the request",
        )
    try:
        since = data.parse_time(since_text)
    except ValueError as exc:
        raise QboFault(
            "2010", "Request has invalid or unsupported property", f"changedSince: {exc}"
        ) from exc
    responses: list[JSON] = []
    for name, rows in company.cdc(entities, since):
        block: JSON = {}
        if rows:
            block = {name: rows, "startPosition": 1, "maxResults": len(rows)}
        responses.append(block)
    return {"CDCResponse": [{"QueryResponse": responses}], "time": _time(state.clock)}


def _batch(company: Company, payload: JSON, now: str) -> JSON:
    items = payload.get("BatchItemRequest")
    if not isinstance(items, list) or not items:
        raise QboFault(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter BatchItemRequest is missing in the request",
        )
    if len(items) > MAX_BATCH_ITEMS:
        raise QboFault(
            "2010",
            "Request has invalid or unsupported property",
            f"Batch requests are limited to {MAX_BATCH_ITEMS} items; got {len(items)}",
        )
    responses: list[JSON] = []
    for item in items:
        bid = item.get("bId")
        try:
            if "Query" in item:
                answer = _query(company, item["Query"])
                responses.append({"bId": bid, "QueryResponse": answer["QueryResponse"]})
                continue
            operation = item.get("operation", "create")
            entity = next(k for k in item if k not in {"bId", "operation", "optionsData"})
            table = company.table(entity)
            body = item[entity]
            if operation == "delete":
                result = company.delete(table.name, body)
            elif operation == "void":
                result = company.void(table.name, body)
            elif operation == "update":
                result = company.update(table.name, body)
            else:
                result = company.create(table.name, body)
            responses.append({"bId": bid, table.name: result})
        except QboFault as fault:
            responses.append({"bId": bid, "Fault": fault.body()})
        except StopIteration:
            responses.append(
                {
                    "bId": bid,
                    "Fault": QboFault(
                        "2020",
                        "Required param missing, need to supply the required value for the API",
                        "Batch item has no entity",
                    ).body(),
                }
            )
    return {"BatchItemResponse": responses, "time": now}


def _trial_balance(company: Company, now: str) -> JSON:
    balances = company.trial_balance()
    names = {acc_id: name for acc_id, name, *_ in data.ACCOUNTS}
    rows: list[JSON] = []
    total_debit = total_credit = Decimal("0.00")
    for account_id in sorted(balances, key=int):
        amount = balances[account_id]
        debit = amount if amount > 0 else Decimal(0)
        credit = -amount if amount < 0 else Decimal(0)
        total_debit += debit
        total_credit += credit
        rows.append(
            {
                "ColData": [
                    {"value": names.get(account_id, account_id), "id": account_id},
                    {"value": f"{debit:.2f}" if debit else ""},
                    {"value": f"{credit:.2f}" if credit else ""},
                ]
            }
        )
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:8]
    return {
        "Header": {"ReportName": "TrialBalance", "Time": now, "Currency": "USD", "Id": digest},
        "Columns": {"Column": [{"ColTitle": ""}, {"ColTitle": "Debit"}, {"ColTitle": "Credit"}]},
        "Rows": {
            "Row": [
                *rows,
                {
                    "type": "Section",
                    "group": "GrandTotal",
                    "Summary": {
                        "ColData": [
                            {"value": "TOTAL"},
                            {"value": f"{total_debit:.2f}"},
                            {"value": f"{total_credit:.2f}"},
                        ]
                    },
                },
            ]
        },
    }
