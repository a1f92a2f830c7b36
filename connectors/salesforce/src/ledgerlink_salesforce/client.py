"""The Salesforce API client: simple-salesforce under the hub's auth, retries and budget.

simple-salesforce does the REST and Bulk API 2.0 calls; this module decides everything
around them:

* the session comes from :class:`~ledgerlink_salesforce.auth.Authenticator`; a call answered
  ``INVALID_SESSION_ID`` refreshes once and is sent again;
* one ``requests.Session`` carries every call, trusting the configured CA bundle (pinned, so
  ``REQUESTS_CA_BUNDLE`` in the environment cannot override it) with a default timeout;
* a response hook reads ``Sforce-Limit-Info`` on *every* answer (errors and bulk included)
  into the ``ledgerlink_vendor_limit_*`` gauges and counts calls in ``ledgerlink_api_calls``;
* before each call the client checks that it keeps to ``budget_share`` of the daily budget;
* errors map through :mod:`ledgerlink_salesforce.errors`; transient ones are retried with
  backoff by a :class:`~ledgerlink.connector.http.RetryPolicy` (a spent daily budget is not
  retried in place: the engine waits for the window).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import Operation, _Bulk2Client
from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError

from ledgerlink.connector.errors import (
    AuthExpiredError,
    ConfigurationError,
    QuotaExhaustedError,
    RetryableError,
)
from ledgerlink.connector.http import RetryPolicy
from ledgerlink.log import get_logger
from ledgerlink.metrics import API_CALLS, VENDOR_LIMIT_MAX, VENDOR_LIMIT_USED
from ledgerlink_salesforce.auth import Authenticator, Session
from ledgerlink_salesforce.errors import DAILY_LIMIT_RETRY_AFTER, error_from_body

__all__ = ["BulkPage", "SalesforceClient", "SalesforceRetryPolicy", "parse_limit_info"]

T = TypeVar("T")
_LIMIT = re.compile(r"api-usage=(\d+)/(\d+)")
_CONNECTOR = "salesforce"
_log = get_logger(connector="salesforce")


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """Return (used, max) from a ``Sforce-Limit-Info`` header, or None when absent."""
    if not header:
        return None
    match = _LIMIT.search(header)
    return (int(match.group(1)), int(match.group(2))) if match else None


class SalesforceRetryPolicy(RetryPolicy):
    """The core policy, except that a spent daily budget goes back to the engine at once."""

    def should_retry(self, error: BaseException) -> bool:
        """True for transient errors other than :class:`QuotaExhaustedError`."""
        return super().should_retry(error) and not isinstance(error, QuotaExhaustedError)


class _PinnedSession(requests.Session):
    """A session whose ``verify`` and timeout are not overridden by the environment."""

    def __init__(self, verify: str | bool, timeout: float) -> None:
        super().__init__()
        self.verify = verify
        self._timeout = timeout

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings: Any = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class BulkPage:
    """One page of Bulk API 2.0 query results: CSV text and the locator of the next page."""

    __slots__ = ("csv_text", "locator", "number_of_records")

    def __init__(self, csv_text: str, locator: str, number_of_records: int) -> None:
        self.csv_text = csv_text
        self.locator = locator
        self.number_of_records = number_of_records


class SalesforceClient:
    """REST and Bulk 2.0 calls with the hub's auth, error mapping, retries and budget."""

    def __init__(
        self,
        auth: Authenticator,
        *,
        instance_url: str,
        api_version: str,
        ca_bundle: str | None = None,
        timeout: float = 60.0,
        budget_share: float = 1.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.auth = auth
        self.instance_url = instance_url.rstrip("/")
        self.api_version = api_version
        self.budget_share = budget_share
        self.retry = retry or SalesforceRetryPolicy()
        self.sleep = sleep
        self.http = session or _PinnedSession(ca_bundle or True, timeout)
        self.http.hooks["response"].append(self._observe)
        self.api_used: int | None = None
        self.api_max: int | None = None
        self._sf: Salesforce | None = None
        self._sf_session: Session | None = None

    # ----- plumbing -----------------------------------------------------------------------
    def _observe(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        method = response.request.method or "GET"
        API_CALLS.labels(_CONNECTOR, method, str(response.status_code)).inc()
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.api_used, self.api_max = usage
            VENDOR_LIMIT_USED.labels(_CONNECTOR, "api-usage").set(usage[0])
            VENDOR_LIMIT_MAX.labels(_CONNECTOR, "api-usage").set(usage[1])

    def _salesforce(self) -> Salesforce:
        session = self.auth.session()
        if self._sf is None or self._sf_session is not session:
            self._sf = Salesforce(
                session_id=session.access_token,
                instance_url=session.instance_url or self.instance_url,
                version=self.api_version,
                session=self.http,
                object_pairs_hook=dict,
            )
            self._sf_session = session
        return self._sf

    def _check_budget(self) -> None:
        if self.api_used is None or not self.api_max or self.budget_share >= 1:
            return
        allowed = int(self.api_max * self.budget_share)
        if self.api_used >= allowed:
            msg = (
                f"keeping to {self.budget_share:.0%} of the daily API budget "
                f"({self.api_used}/{self.api_max} used)"
            )
            raise QuotaExhaustedError(
                msg, vendor_code="LEDGERLINK_BUDGET", retry_after=DAILY_LIMIT_RETRY_AFTER
            )

    def _once(self, fn: Callable[[Salesforce], T]) -> T:
        self._check_budget()
        sf = self._salesforce()
        try:
            return fn(sf)
        except SalesforceError as exc:
            raise error_from_body(exc.status, exc.content) from None
        except SalesforceOperationError as exc:
            msg = f"Bulk API job failed: {str(exc)[:200]}"
            raise RetryableError(msg) from None
        except requests.exceptions.SSLError as exc:
            msg = f"TLS verification failed for {self.instance_url}: check ca_bundle"
            raise ConfigurationError(msg) from exc
        except requests.exceptions.RequestException as exc:
            msg = f"Salesforce call failed in transit: {type(exc).__name__}"
            raise RetryableError(msg) from None
        except ValueError as exc:  # a truncated or non-JSON body
            msg = f"Salesforce answer could not be decoded: {type(exc).__name__}"
            raise RetryableError(msg) from None

    def call(self, fn: Callable[[Salesforce], T]) -> T:
        """Run ``fn`` with a live :class:`Salesforce` under retries and one session refresh.

        Raises:
            ConnectorError: the mapped error when retries are exhausted or not allowed.
        """
        refreshed = False
        while True:
            stale = self._sf_session
            try:
                return self.retry.call(lambda: self._once(fn))
            except AuthExpiredError:
                if refreshed:
                    raise
                _log.info("salesforce.session_expired", action="refresh")
                self.auth.refresh(stale)
                refreshed = True

    # ----- REST ---------------------------------------------------------------------------
    def query(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None
    ) -> dict[str, Any]:
        """Run a SOQL query (``queryAll`` when ``include_deleted``) and return the first page."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        result: dict[str, Any] = self.call(
            lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers)
        )
        return result

    def query_more(self, next_records_url: str, *, batch_size: int | None = None) -> dict[str, Any]:
        """Fetch the page at ``nextRecordsUrl``."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        result: dict[str, Any] = self.call(
            lambda sf: sf.query_more(next_records_url, identifier_is_url=True, headers=headers)
        )
        return result

    def count(self, soql: str) -> int:
        """Return ``totalSize`` of a ``SELECT COUNT() ...`` query."""
        return int(self.query(soql)["totalSize"])

    def rest(
        self,
        path: str,
        method: str = "GET",
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Call ``/services/data/vXX.X/{path}`` and return the decoded body (None on 204)."""
        return self.call(
            lambda sf: sf.restful(path, params=dict(params or {}) or None, method=method, json=json)
        )

    def composite(self, subrequests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """POST subrequests to ``/composite`` (``allOrNone: false``): one API call in all.

        Returns:
            The ``compositeResponse`` items (``body``, ``httpStatusCode``, ``referenceId``); a
            subrequest that failed carries its own error body, the others their answers.
        """
        body = self.rest(
            "composite", "POST", json={"allOrNone": False, "compositeRequest": list(subrequests)}
        )
        answers: list[dict[str, Any]] = list((body or {}).get("compositeResponse") or [])
        return answers

    def limits(self) -> dict[str, Any]:
        """Return the org's ``/limits`` document."""
        result: dict[str, Any] = self.call(lambda sf: sf.limits())
        return result

    # ----- Bulk API 2.0 -------------------------------------------------------------------
    def _bulk(self, sf: Salesforce, object_name: str) -> _Bulk2Client:
        return _Bulk2Client(object_name, sf.bulk2_url, dict(sf.headers), self.http)

    def bulk_create_query(
        self, object_name: str, soql: str, *, include_deleted: bool = False
    ) -> str:
        """Create a Bulk 2.0 query job and return its id."""
        operation = Operation.query_all if include_deleted else Operation.query
        job = self.call(lambda sf: self._bulk(sf, object_name).create_job(operation, soql))
        return str(job["id"])

    def bulk_wait(
        self,
        object_name: str,
        job_id: str,
        *,
        poll: float = 0.5,
        max_poll: float = 10.0,
        timeout: float = 3600.0,
    ) -> None:
        """Poll the job until ``JobComplete``.

        Raises:
            RetryableError: the job failed, was aborted or did not finish in ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            info = self.call(lambda sf: self._bulk(sf, object_name).get_job(job_id, True))
            state = info.get("state")
            if state == "JobComplete":
                return
            if state in {"Failed", "Aborted"}:
                msg = f"Bulk API query job {job_id} ended {state}: {info.get('errorMessage')}"
                raise RetryableError(msg)
            if time.monotonic() > deadline:
                msg = f"Bulk API query job {job_id} still {state} after {timeout:g}s"
                raise RetryableError(msg)
            self.sleep(delay)
            delay = min(max_poll, delay * 2)

    def bulk_results(
        self, object_name: str, job_id: str, locator: str = "", max_records: int = 50_000
    ) -> BulkPage:
        """Fetch one page of a job's CSV results (``locator`` empty for the first)."""
        result = self.call(
            lambda sf: self._bulk(sf, object_name).get_query_results(job_id, locator, max_records)
        )
        return BulkPage(
            str(result["records"]), str(result["locator"] or ""), int(result["number_of_records"])
        )

    def close(self) -> None:
        """Close the HTTP session and the auth client."""
        self.http.close()
        self.auth.close()
