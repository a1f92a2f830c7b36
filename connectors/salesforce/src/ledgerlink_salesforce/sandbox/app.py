"""The sandbox's HTTP API: a Starlette app imitating Salesforce's OAuth, REST and Bulk 2.0.

Paths, response shapes and error bodies follow Salesforce's REST API reference:
``/services/oauth2/token`` (JWT bearer, refresh token and password grants),
``/services/data/vXX.X/query`` and ``queryAll`` (``nextRecordsUrl`` paging, honouring
``Sforce-Query-Options: batchSize=``), sObject rows, upsert by external id (300 with the
matching URLs when the value is ambiguous), sObject Collections, ``/composite`` (up to 25
subrequests, at most 5 of them queries or collections, one API call in all), Bulk API 2.0
query jobs (CSV results paged with ``Sforce-Locator``) and ``/limits``. Every data response carries
``Sforce-Limit-Info: api-usage=used/max``; when the daily budget is spent the answer is 403
``REQUEST_LIMIT_EXCEEDED``; an unknown or expired token gets 401 ``INVALID_SESSION_ID``.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledgerlink_salesforce.sandbox.data import (
    API_USER_ID,
    FIELD_TYPES,
    ORG_ID,
    SYSTEM_FIELDS,
    ObjectSpec,
    Org,
    Table,
    format_sf_datetime,
)
from ledgerlink_salesforce.sandbox.soql import Query, SoqlError, parse_query, to_datetime

__all__ = ["MAX_BATCH", "SalesforceApi", "describe", "render_error"]

MAX_BATCH = 2000
MIN_BATCH = 200
COLLECTION_LIMIT = 200
OPEN_CURSORS = 50
COMPOSITE_LIMIT = 25
"""Subrequests one ``/composite`` call may carry."""
COMPOSITE_QUERY_LIMIT = 5
"""Of those, how many may be queries (query, queryAll, query more) or sObject Collections."""
_VERSION = re.compile(r"^v(\d{2})\.0$")
_SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
_INDEXED_ORDER = [("SystemModstamp", False, False), ("Id", False, False)]


def render_error(status: int) -> tuple[bytes, dict[str, str]]:
    """Render an injected fault as Salesforce would answer it."""
    if status in {429, 403}:
        body = [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]
    elif status == 401:
        body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    elif status == 503:
        body = [
            {
                "message": "Server is unavailable, try again later.",
                "errorCode": "SERVER_UNAVAILABLE",
            }
        ]
    else:
        body = [
            {
                "message": "An unexpected error occurred. Please include this ErrorId if "
                "you contact support: 1234567890-12345 (-1234567890)",
                "errorCode": "UNKNOWN_EXCEPTION",
            }
        ]
    return json.dumps(body).encode(), {"content-type": "application/json;charset=UTF-8"}


def _error(
    status: int,
    code: str,
    message: str,
    fields: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse([body], status_code=status, headers=headers)


@dataclass(frozen=True)
class _SubRequest:
    """One ``/composite`` subrequest, shaped as the parts of a request the router reads."""

    method: str
    query_params: QueryParams
    headers: Headers


_Incoming = Request | _SubRequest
"""What the router reads a call from: an HTTP request, or a subrequest of ``/composite``."""


@dataclass
class _Cursor:
    """Server-side state of a paged query or bulk job result."""

    query: Query
    include_deleted: bool
    batch: int
    position: int = 0
    iterator: Iterator[dict[str, Any]] | None = None


@dataclass
class _BulkJob:
    job_id: str
    operation: str
    query_text: str
    created: str
    cursor: _Cursor
    state: str = "UploadComplete"
    polls: int = 0


@dataclass
class _Auth:
    """Credentials the sandbox accepts."""

    client_id: str
    username: str
    public_key_pem: str
    client_secret: str
    password: str
    refresh_tokens: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)


def _composite_plan(subrequests: list[Any]) -> list[tuple[_SubRequest, list[str], Any]] | str:
    """The routed form of each ``/composite`` subrequest, or ``"CODE: message"`` refusing all."""
    if len(subrequests) > COMPOSITE_LIMIT:
        return f"LIMIT_EXCEEDED: The request can't contain more than {COMPOSITE_LIMIT} operations."
    planned: list[tuple[_SubRequest, list[str], Any]] = []
    heavy = 0
    for sub in subrequests:
        if not isinstance(sub, dict) or not all(
            isinstance(sub.get(k), str) for k in ("method", "url", "referenceId")
        ):
            return "INVALID_FIELD: each subrequest needs method, url and referenceId"
        if "@{" in sub["url"] or "@{" in json.dumps(sub.get("body")):
            return "INVALID_FIELD: references are not supported by this sandbox"
        url = urlsplit(sub["url"])
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:2] != ["services", "data"]:
            return f"INVALID_FIELD: not a data API URL: {sub['url']}"
        parts = parts[2:]
        if parts[1:2] in (["query"], ["queryAll"]) or parts[1:3] == ["composite", "sobjects"]:
            heavy += 1
        headers = Headers({str(k): str(v) for k, v in (sub.get("httpHeaders") or {}).items()})
        request = _SubRequest(sub["method"].upper(), QueryParams(url.query), headers)
        planned.append((request, parts, sub.get("body")))
    if heavy > COMPOSITE_QUERY_LIMIT:
        return (
            f"LIMIT_EXCEEDED: The request can't contain more than {COMPOSITE_QUERY_LIMIT} "
            "query or sObject Collections operations."
        )
    return planned


class SalesforceApi:
    """The sandbox org behind HTTP. ``app`` is the ASGI application to serve."""

    def __init__(
        self,
        org: Org,
        *,
        client_id: str,
        username: str,
        public_key_pem: str,
        client_secret: str,
        password: str,
        refresh_token: str,
        base_url: str = "",
    ) -> None:
        self.org = org
        self.base_url = base_url
        self.auth = _Auth(
            client_id, username, public_key_pem, client_secret, password, {refresh_token}
        )
        self._cursors: dict[str, _Cursor] = {}
        self._jobs: dict[str, _BulkJob] = {}
        self._counter = itertools.count(1)
        self._total: dict[str, int] = {}
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route("/services/oauth2/token", self.token, methods=["POST"]),
                Route(
                    "/services/data/{rest:path}",
                    self.data,
                    methods=["GET", "POST", "PATCH", "DELETE", "PUT"],
                ),
            ]
        )

    # ----- test hooks ---------------------------------------------------------------------
    def expire_sessions(self) -> None:
        """Invalidate every issued access token (the next call gets INVALID_SESSION_ID)."""
        with self._lock:
            self.auth.sessions.clear()

    # ----- OAuth --------------------------------------------------------------------------
    def _issue(self) -> JSONResponse:
        token = "00DHs0000000001!" + secrets.token_urlsafe(48)
        with self._lock:
            self.auth.sessions.add(token)
        return JSONResponse(
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{ORG_ID}/{API_USER_ID}",
                "token_type": "Bearer",
                "scope": "api",
                "issued_at": "0",
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        )

    async def token(self, request: Request) -> Response:  # noqa: PLR0911 - a router: one answer per outcome
        """``POST /services/oauth2/token``: JWT bearer, refresh token and password grants."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = str(form.get("grant_type", ""))

        def refuse(description: str, error: str = "invalid_grant") -> JSONResponse:
            return JSONResponse({"error": error, "error_description": description}, status_code=400)

        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(
                    str(form.get("assertion", "")),
                    self.auth.public_key_pem,
                    algorithms=["RS256"],
                    options={"verify_aud": False},
                )
            except jwt.ExpiredSignatureError:
                return refuse("expired authorization code")
            except jwt.PyJWTError:
                return refuse("invalid assertion")
            if claims.get("iss") != self.auth.client_id:
                return refuse("client identifier invalid", "invalid_client_id")
            if claims.get("sub") != self.auth.username:
                return refuse("user hasn't approved this consumer")
            if "exp" not in claims:
                return refuse("invalid assertion")
            return self._issue()
        if grant == "refresh_token":
            if form.get("client_id") != self.auth.client_id:
                return refuse("client identifier invalid", "invalid_client_id")
            if form.get("refresh_token") not in self.auth.refresh_tokens:
                return refuse("expired access/refresh token")
            return self._issue()
        if grant == "password":
            if (
                form.get("client_id") != self.auth.client_id
                or form.get("client_secret") != self.auth.client_secret
            ):
                return refuse("invalid client credentials", "invalid_client")
            if (
                form.get("username") != self.auth.username
                or form.get("password") != self.auth.password
            ):
                return refuse("authentication failure")
            return self._issue()
        return refuse("grant type not supported", "unsupported_grant_type")

    # ----- data API -----------------------------------------------------------------------
    async def data(self, request: Request) -> Response:
        """Every ``/services/data/...`` call: authenticate, count, dispatch, add limit info."""
        rest = request.path_params["rest"]
        body = await request.body()  # always drain the body so the connection stays reusable
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            valid = token in self.auth.sessions
        if not valid:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with self.org.lock:
            if self.org.api_used >= self.org.api_max:
                return _error(
                    403,
                    "REQUEST_LIMIT_EXCEEDED",
                    "TotalRequests Limit exceeded.",
                    headers=self._limit_header(),
                )
            self.org.api_used += 1
        parts = [unquote(p) for p in rest.split("/") if p]
        try:
            payload = (
                json.loads(body)
                if body
                and request.method in {"POST", "PATCH"}
                and "json" in request.headers.get("content-type", "json")
                else None
            )
        except json.JSONDecodeError:
            return _error(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        with self.org.lock:
            response = self._dispatch(request, parts, payload)
        response.headers["Sforce-Limit-Info"] = self._limit_header()["Sforce-Limit-Info"]
        return response

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.org.api_used}/{self.org.api_max}"}

    def _dispatch(self, request: _Incoming, parts: list[str], payload: Any) -> Response:  # noqa: PLR0911 - a router: one answer per outcome
        if not parts or not _VERSION.match(parts[0]) or not 31 <= int(parts[0][1:3]) <= 66:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        version = parts[0]
        rest = parts[1:]
        method = request.method
        if rest[:1] in (["query"], ["queryAll"]) and method == "GET":
            if len(rest) == 2:
                return self._query_more(version, rest[0], rest[1])
            return self._query(request, version, include_deleted=rest[0] == "queryAll")
        if rest == ["limits"] and method == "GET":
            return JSONResponse(
                {
                    "DailyApiRequests": {
                        "Max": self.org.api_max,
                        "Remaining": self.org.api_max - self.org.api_used,
                    },
                    "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - len(self._jobs)},
                    "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                }
            )
        if rest[:1] == ["sobjects"] and len(rest) >= 2:
            return self._sobject(method, version, rest[1:], payload)
        if rest[:2] == ["composite", "sobjects"]:
            return self._collections(request, version, rest[2:], payload)
        if rest == ["composite"] and method == "POST":
            return self._composite(payload)
        if rest[:2] == ["jobs", "query"]:
            return self._bulk(request, rest[2:], payload)
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    # ----- composite ----------------------------------------------------------------------
    def _composite(self, payload: Any) -> Response:
        """Run the subrequests of a ``/composite`` call in order (one API call in all).

        Each subrequest goes through the same router as a request of its own; its answer
        becomes ``{body, httpHeaders, httpStatusCode, referenceId}``. The sandbox runs
        ``allOrNone: false`` (the default) only: references between subrequests (``@{...}``)
        and rolling back are not imitated, and a request asking for them is refused.
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("compositeRequest"), list):
            return _error(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        if payload.get("allOrNone"):
            return _error(400, "INVALID_FIELD", "allOrNone is not supported by this sandbox")
        subrequests: list[Any] = payload["compositeRequest"]
        planned = _composite_plan(subrequests)
        if isinstance(planned, str):
            code, _, message = planned.partition(": ")
            item = {"message": message, "errorCode": code}
            answer = {"body": [item], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": None}
            return JSONResponse({"compositeResponse": [answer]})
        answers = []
        for sub, (request, parts, body) in zip(subrequests, planned, strict=True):
            response = self._dispatch(request, parts, body)
            answers.append(
                {
                    "body": json.loads(bytes(response.body)) if response.body else None,
                    "httpHeaders": {},
                    "httpStatusCode": response.status_code,
                    "referenceId": sub["referenceId"],
                }
            )
        return JSONResponse({"compositeResponse": answers})

    # ----- queries ------------------------------------------------------------------------
    def _parse(self, text: str) -> Query:
        return parse_query(text, self._fields_of)

    def _fields_of(self, name: str) -> set[str] | None:
        table = self.org.table(name)
        return None if table is None else table.spec.field_set

    def _rows(self, query: Query, include_deleted: bool) -> Iterator[dict[str, Any]]:
        table = self.org.table(query.object)
        assert table is not None
        since = self._lower_bound(query)
        rows: Iterator[dict[str, Any]] = (
            r
            for r in table.scan(since)
            if (include_deleted or not r["IsDeleted"]) and (query.where is None or query.where(r))
        )
        if (
            query.order_by
            and query.order_by[: len(query.order_by)] != _INDEXED_ORDER[: len(query.order_by)]
        ):
            materialized = list(rows)
            for name, descending, nulls_last in reversed(query.order_by):
                materialized.sort(
                    key=lambda r, n=name, nl=nulls_last: (  # type: ignore[misc]
                        (r.get(n) is None) != nl,
                        r.get(n) if r.get(n) is not None else "",
                    ),
                    reverse=descending,
                )
            rows = iter(materialized)
        stop = None if query.limit is None else query.offset + query.limit
        return itertools.islice(rows, query.offset, stop)

    @staticmethod
    def _lower_bound(query: Query) -> datetime | None:
        bound: datetime | None = None
        for c in query.conjuncts:
            if (
                c.field == "SystemModstamp"
                and c.op in {">", ">=", "="}
                and isinstance(c.value, datetime)
            ):
                value = to_datetime(c.value)
                if value is not None and (bound is None or value > bound):
                    bound = value
        return bound

    def _count(self, query: Query, include_deleted: bool) -> int:
        table = self.org.table(query.object)
        assert table is not None
        simple = query.opaque_conditions == 0 and all(
            (c.field == "SystemModstamp" and c.op in {">=", ">"})
            or (c.field == "IsDeleted" and c.op == "=" and c.value is False)
            for c in query.conjuncts
        )
        strict = any(c.field == "SystemModstamp" and c.op == ">" for c in query.conjuncts)
        if simple and not strict and query.limit is None and not query.offset:
            deleted_ok = include_deleted and not any(
                c.field == "IsDeleted" for c in query.conjuncts
            )
            return table.count_since(self._lower_bound(query), include_deleted=deleted_ok)
        return sum(1 for _ in self._rows(query, include_deleted))

    def _render(
        self, version: str, object_name: str, record: dict[str, Any], fields: list[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": object_name,
                "url": f"/services/data/{version}/sobjects/{object_name}/{record['Id']}",
            }
        }
        for name in fields:
            out[name] = record.get(name)
        return out

    def _page(self, version: str, kind: str, locator: str, cursor: _Cursor) -> Response:
        if cursor.iterator is None:
            cursor.iterator = self._rows(cursor.query, cursor.include_deleted)
        records = list(itertools.islice(cursor.iterator, cursor.batch))
        cursor.position += len(records)
        table = self.org.table(cursor.query.object)
        assert table is not None
        probe = next(cursor.iterator, None)
        body: dict[str, Any] = {
            "totalSize": self._total.get(locator, 0),
            "done": probe is None,
            "records": [
                self._render(version, table.spec.name, r, cursor.query.fields) for r in records
            ],
        }
        if probe is not None:
            cursor.iterator = itertools.chain([probe], cursor.iterator)
            body["nextRecordsUrl"] = f"/services/data/{version}/{kind}/{locator}-{cursor.position}"
        else:
            self._cursors.pop(locator, None)
            self._total.pop(locator, None)
        return JSONResponse(body)

    def _query(self, request: _Incoming, version: str, *, include_deleted: bool) -> Response:
        text = request.query_params.get("q", "")
        try:
            query = self._parse(text)
        except SoqlError as exc:
            return _error(400, exc.code, exc.message)
        kind = "queryAll" if include_deleted else "query"
        total = self._count(query, include_deleted)
        if query.count_only:
            return JSONResponse({"totalSize": total, "done": True, "records": []})
        batch = MAX_BATCH
        options = request.headers.get("sforce-query-options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        if match:
            batch = max(MIN_BATCH, min(MAX_BATCH, int(match.group(1))))
        locator = f"01gHs{next(self._counter):010d}AAA"
        self._total[locator] = total
        cursor = _Cursor(query, include_deleted, batch)
        self._cursors[locator] = cursor
        while len(self._cursors) > OPEN_CURSORS:  # Salesforce also retires the oldest cursors
            oldest = next(iter(self._cursors))
            del self._cursors[oldest]
            self._total.pop(oldest, None)
        return self._page(version, kind, locator, cursor)

    def _query_more(self, version: str, kind: str, token: str) -> Response:
        locator, _, position = token.rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or not position.isdigit():
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        wanted = int(position)
        if wanted != cursor.position:  # a retry of a page already served: rewind
            cursor.iterator = itertools.islice(
                self._rows(cursor.query, cursor.include_deleted), wanted, None
            )
            cursor.position = wanted
        return self._page(version, kind, locator, cursor)

    # ----- sObject rows -------------------------------------------------------------------
    def _table_or_404(self, name: str) -> Table | Response:
        table = self.org.table(name)
        if table is None:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {name}")
        return table

    def _validate(
        self, table: Table, fields: dict[str, Any], *, creating: bool, record_id: str | None = None
    ) -> dict[str, Any] | None:
        known = {f.lower(): f for f in table.spec.field_set}
        for name in fields:
            if name == "attributes":
                continue
            if name.lower() not in known or name in SYSTEM_FIELDS:
                return {
                    "statusCode": "INVALID_FIELD",
                    "fields": [name],
                    "message": f"No such column '{name}' on sobject of type {table.spec.name}",
                }
        if creating:
            missing = [f for f in table.spec.required if fields.get(f) in (None, "")]
            if missing:
                return {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "fields": missing,
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                }
        for name in table.spec.unique:
            value = fields.get(name)
            if value is not None:
                holders = [i for i in table.find(name, str(value)) if i != record_id]
                if holders:
                    return {
                        "statusCode": "DUPLICATE_VALUE",
                        "fields": [name],
                        "message": f"duplicate value found: {name} duplicates value on "
                        f"record with id: {holders[0]}",
                    }
        if record_id is not None and self.org.locks.get(record_id[:15], 0) > 0:
            self.org.locks[record_id[:15]] -= 1
            return {
                "statusCode": "UNABLE_TO_LOCK_ROW",
                "fields": [],
                "message": "unable to obtain exclusive access to this record",
            }
        return None

    def _apply(
        self, table: Table, fields: dict[str, Any], record_id: str | None
    ) -> tuple[str, bool]:
        clean = {k: v for k, v in fields.items() if k != "attributes"}
        known = {f.lower(): f for f in table.spec.field_set}
        clean = {known[k.lower()]: v for k, v in clean.items()}
        if record_id is None:
            record = self.org.insert(table.spec.name, clean, by=API_USER_ID)
            return str(record["Id"]), True
        self.org.touch(table.spec.name, record_id, by=API_USER_ID, **clean)
        return record_id, False

    def _write_one(
        self, table: Table, fields: dict[str, Any], record_id: str | None
    ) -> dict[str, Any]:
        """Create (no id) or update one record; returns a SaveResult."""
        if record_id is not None:
            current = table.get(record_id)
            if current is None:
                return {
                    "id": None,
                    "success": False,
                    "errors": [
                        {
                            "statusCode": "MALFORMED_ID",
                            "fields": ["Id"],
                            "message": f"Record ID: id value of incorrect type: {record_id}",
                        }
                    ],
                }
            if current["IsDeleted"]:
                return {
                    "id": None,
                    "success": False,
                    "errors": [
                        {
                            "statusCode": "ENTITY_IS_DELETED",
                            "fields": [],
                            "message": "entity is deleted",
                        }
                    ],
                }
            record_id = str(current["Id"])
        problem = self._validate(table, fields, creating=record_id is None, record_id=record_id)
        if problem is not None:
            return {"id": None, "success": False, "errors": [problem]}
        new_id, _created = self._apply(table, fields, record_id)
        return {"id": new_id, "success": True, "errors": []}

    def _upsert_one(
        self, version: str, table: Table, field_name: str, value: str, fields: dict[str, Any]
    ) -> tuple[int, Any]:
        if field_name not in table.spec.external_ids and field_name != "Id":
            return 400, [
                {
                    "errorCode": "INVALID_FIELD",
                    "fields": [field_name],
                    "message": f"Field {field_name} is not an external id field",
                }
            ]
        matches = table.find(field_name, value)
        if len(matches) > 1:
            return 300, [
                f"/services/data/{version}/sobjects/{table.spec.name}/{m}" for m in matches
            ]
        body = {k: v for k, v in fields.items() if k != field_name}
        result = self._write_one(
            table, {**body, field_name: value}, matches[0] if matches else None
        )
        if not result["success"]:
            return 400, result
        return (201 if not matches else 200), {**result, "created": not matches}

    def _sobject(self, method: str, version: str, rest: list[str], payload: Any) -> Response:  # noqa: PLR0911 - a router: one answer per outcome
        found = self._table_or_404(rest[0])
        if isinstance(found, Response):
            return found
        table = found
        if rest[1:] == ["describe"] and method == "GET":
            return JSONResponse(describe(table.spec))
        if len(rest) == 1 and method == "POST":
            result = self._write_one(table, dict(payload or {}), None)
            if not result["success"]:
                return self._error_list(result["errors"])
            return JSONResponse(result, status_code=201)
        if len(rest) == 2:
            record = table.get(rest[1])
            if record is None or record["IsDeleted"]:
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            if method == "GET":
                return JSONResponse(
                    self._render(
                        version,
                        table.spec.name,
                        record,
                        ["Id", *sorted(table.spec.field_set - {"Id"})],
                    )
                )
            if method == "PATCH":
                result = self._write_one(table, dict(payload or {}), str(record["Id"]))
                if not result["success"]:
                    return self._error_list(result["errors"])
                return Response(status_code=204)
            if method == "DELETE":
                self.org.delete(table.spec.name, str(record["Id"]), by=API_USER_ID)
                return Response(status_code=204)
        if len(rest) == 3 and method == "PATCH":
            status, body = self._upsert_one(version, table, rest[1], rest[2], dict(payload or {}))
            if status == 400 and isinstance(body, dict):
                return self._error_list(body["errors"])
            return JSONResponse(body, status_code=status)
        return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    @staticmethod
    def _error_list(errors: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse(
            [
                {
                    "message": e["message"],
                    "errorCode": e["statusCode"],
                    "fields": e.get("fields", []),
                }
                for e in errors
            ],
            status_code=400,
        )

    # ----- sObject Collections ------------------------------------------------------------
    def _collections(  # noqa: PLR0912 - mirrors the endpoint's documented cases
        self, request: _Incoming, version: str, rest: list[str], payload: Any
    ) -> Response:
        method = request.method
        if method == "DELETE":
            ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            if len(ids) > COLLECTION_LIMIT:
                return _error(
                    400,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                )
            deleted: list[dict[str, Any]] = []
            for record_id in ids:
                table = next(
                    (t for t in self.org.tables.values() if t.spec.prefix == record_id[:3]), None
                )
                record = table.get(record_id) if table else None
                if table is None or record is None:
                    deleted.append(
                        {
                            "id": record_id,
                            "success": False,
                            "errors": [
                                {
                                    "statusCode": "MALFORMED_ID",
                                    "message": "malformed id",
                                    "fields": [],
                                }
                            ],
                        }
                    )
                elif record["IsDeleted"]:
                    deleted.append(
                        {
                            "id": record_id,
                            "success": False,
                            "errors": [
                                {
                                    "statusCode": "ENTITY_IS_DELETED",
                                    "message": "entity is deleted",
                                    "fields": [],
                                }
                            ],
                        }
                    )
                else:
                    self.org.delete(table.spec.name, record_id, by=API_USER_ID)
                    deleted.append({"id": str(record["Id"]), "success": True, "errors": []})
            return JSONResponse(deleted)
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            return _error(400, "JSON_PARSER_ERROR", "records is required")
        records: list[dict[str, Any]] = payload["records"]
        all_or_none = bool(payload.get("allOrNone", False))
        if len(records) > COLLECTION_LIMIT:
            return _error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        results: list[dict[str, Any]] = []
        for record in records:
            type_name = (record.get("attributes") or {}).get("type")
            if rest:
                type_name = type_name or rest[0]
                if type_name.lower() != rest[0].lower():
                    results.append(self._fail("INVALID_TYPE", "the record type does not match"))
                    continue
            table = self.org.table(str(type_name)) if type_name else None
            if table is None:
                results.append(self._fail("INVALID_TYPE", "missing or unknown sObject type"))
                continue
            fields = {k: v for k, v in record.items() if k != "attributes"}
            if rest and len(rest) == 2:
                results.append(self._collection_upsert(version, table, rest[1], fields))
            elif method == "POST":
                if "Id" in fields:
                    results.append(
                        self._fail("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                    )
                else:
                    results.append(self._write_one(table, fields, None))
            else:
                record_id = fields.pop("Id", None)
                if not record_id:
                    results.append(
                        self._fail("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
                    )
                else:
                    results.append(self._write_one(table, fields, str(record_id)))
        if all_or_none and any(not r["success"] for r in results):
            results = [
                r
                if not r["success"]
                else self._fail(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all "
                    "records were valid and the request was using AllOrNone header",
                )
                for r in results
            ]
        return JSONResponse(results)

    @staticmethod
    def _fail(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
        return {
            "id": None,
            "success": False,
            "errors": [{"statusCode": code, "message": message, "fields": fields or []}],
        }

    def _collection_upsert(
        self, version: str, table: Table, field_name: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        value = fields.get(field_name)
        if value in (None, ""):
            return {
                **self._fail("MISSING_ARGUMENT", f"{field_name} not specified", [field_name]),
                "created": False,
            }
        status, body = self._upsert_one(version, table, field_name, str(value), fields)
        if status == 300:
            ids = ", ".join(u.rsplit("/", 1)[-1] for u in body)
            return {
                **self._fail(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{field_name}: more than one record found for external id field: [{ids}]",
                    [field_name],
                ),
                "created": False,
            }
        if status == 400 and isinstance(body, list):
            return {
                **self._fail(body[0]["errorCode"], body[0]["message"], body[0].get("fields")),
                "created": False,
            }
        if not body["success"]:
            return {**body, "created": False}
        return dict(body)

    # ----- Bulk API 2.0 query jobs ---------------------------------------------------------
    def _bulk(self, request: _Incoming, rest: list[str], payload: Any) -> Response:  # noqa: PLR0911 - a router: one answer per outcome
        method = request.method
        if not rest and method == "POST":
            if not isinstance(payload, dict) or payload.get("operation") not in {
                "query",
                "queryAll",
            }:
                return _error(400, "INVALIDJOB", "operation must be query or queryAll")
            try:
                query = self._parse(str(payload.get("query", "")))
            except SoqlError as exc:
                return _error(400, "INVALIDJOB", f"{exc.code}: {exc.message}")
            if query.count_only or query.offset:
                return _error(
                    400,
                    "INVALIDJOB",
                    "Aggregate queries and OFFSET are not supported by Bulk API 2.0",
                )
            job_id = f"750Hs{next(self._counter):010d}AAA"
            created = format_sf_datetime(self.org.now())
            include_deleted = payload["operation"] == "queryAll"
            job = _BulkJob(
                job_id,
                payload["operation"],
                str(payload["query"]),
                created,
                _Cursor(query, include_deleted, 0),
            )
            self._jobs[job_id] = job
            return JSONResponse(self._job_info(job))
        if not rest:
            return _error(405, "METHOD_NOT_ALLOWED", "use POST to create a job")
        found = self._jobs.get(rest[0])
        if found is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        job = found
        if len(rest) == 1 and method == "GET":
            job.polls += 1
            job.state = "JobComplete"
            return JSONResponse(self._job_info(job))
        if len(rest) == 1 and method == "DELETE":
            del self._jobs[job.job_id]
            return Response(status_code=204)
        if len(rest) == 2 and rest[1] == "results" and method == "GET":
            if job.state != "JobComplete":
                return _error(400, "INVALIDJOB", "job is not complete")
            return self._bulk_results(request, job)
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _job_info(self, job: _BulkJob) -> dict[str, Any]:
        return {
            "id": job.job_id,
            "operation": job.operation,
            "object": job.cursor.query.object,
            "createdById": API_USER_ID,
            "createdDate": job.created,
            "systemModstamp": job.created,
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": 64.0,
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }

    def _bulk_results(self, request: _Incoming, job: _BulkJob) -> Response:
        cursor = job.cursor
        locator = request.query_params.get("locator", "")
        wanted = 0
        if locator:
            try:
                wanted = int(base64.b64decode(locator + "==").decode())
            except (ValueError, UnicodeDecodeError):
                return _error(400, "INVALIDLOCATOR", "invalid locator")
        max_records = int(request.query_params.get("maxRecords", "100000") or 100000)
        if cursor.iterator is None or wanted != cursor.position:
            cursor.iterator = itertools.islice(
                self._rows(cursor.query, cursor.include_deleted), wanted, None
            )
            cursor.position = wanted
        buffer = io.StringIO()
        buffer.write(",".join(f'"{f}"' for f in cursor.query.fields) + "\n")
        count = 0
        for record in itertools.islice(cursor.iterator, max_records):
            buffer.write(",".join(_csv_cell(record.get(f)) for f in cursor.query.fields) + "\n")
            count += 1
        cursor.position += count
        probe = next(cursor.iterator, None)
        if probe is not None:
            cursor.iterator = itertools.chain([probe], cursor.iterator)
            next_locator = base64.b64encode(str(cursor.position).encode()).decode().rstrip("=")
        else:
            next_locator = "null"
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(count)},
        )


def describe(spec: ObjectSpec) -> dict[str, Any]:
    """The ``describe`` answer of an sObject: its fields with type and what may be written.

    Real orgs answer much more; this carries what a client checks before it writes: every
    field's ``name``, ``type``, ``custom``, ``createable``/``updateable``, ``nillable``,
    ``externalId`` and ``unique``.
    """
    fields = []
    for name in ["Id", *sorted(spec.field_set - {"Id"})]:
        kind = FIELD_TYPES.get(name, "string")
        writable = name not in SYSTEM_FIELDS
        fields.append(
            {
                "name": name,
                "label": name.removesuffix("__c").replace("_", " "),
                "type": kind,
                "custom": name.endswith("__c"),
                "createable": writable,
                "updateable": writable,
                "nillable": writable and name not in spec.required,
                "externalId": name in spec.external_ids,
                "unique": name in spec.unique or name in spec.external_ids,
                "length": 255 if kind in {"string", "url", "phone", "email", "picklist"} else 0,
                "precision": 18 if kind == "currency" else 0,
                "scale": 2 if kind == "currency" else 0,
            }
        )
    return {
        "name": spec.name,
        "label": spec.name,
        "custom": False,
        "keyPrefix": spec.prefix,
        "createable": True,
        "updateable": True,
        "queryable": True,
        "fields": fields,
    }


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
        if _SF_DATETIME.match(text):  # Bulk CSV writes date-times in UTC with a Z
            text = text[:-5] + "Z"
    return '"' + text.replace('"', '""') + '"'
