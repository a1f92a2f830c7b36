"""The sandbox answers like Salesforce: shapes, ids, errors, limits, paging, determinism."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from ledgerlink_salesforce import plugin
from ledgerlink_salesforce.sandbox import SalesforceSandbox
from ledgerlink_salesforce.sandbox.data import (
    API_USER_ID,
    PEOPLE_IDS,
    Org,
    case_safe_id,
    salesforce_id,
)
from ledgerlink_salesforce.sandbox.soql import to_datetime

from ledgerlink.connector.protocol import Sandbox, SandboxOptions
from ledgerlink.connector.sandbox import Fault

V = "/services/data/v64.0"


class Api:
    """Raw HTTPS calls to a sandbox with a JWT-bearer session."""

    def __init__(self, sb: SalesforceSandbox) -> None:
        self.sb = sb
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = sb.ca_path
        settings = sb.connector_settings()
        assertion = jwt.encode(
            {
                "iss": settings["client_id"],
                "sub": settings["username"],
                "aud": settings["login_url"],
                "exp": int(time.time()) + 120,
            },
            settings["private_key"],
            algorithm="RS256",
        )
        answer = self.http.post(
            sb.base_url + "/services/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        ).json()
        self.identity_url = str(answer["id"])
        self.http.headers["Authorization"] = f"Bearer {answer['access_token']}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.sb.base_url + path, **kwargs)


@pytest.fixture
def api(sandbox: SalesforceSandbox) -> Iterator[Api]:
    client = Api(sandbox)
    yield client
    client.http.close()


def soql(api: Api, text: str, *, all_rows: bool = False, **kwargs: Any) -> requests.Response:
    return api("GET", f"{V}/{'queryAll' if all_rows else 'query'}", params={"q": text}, **kwargs)


def test_plugin_sandbox_satisfies_the_protocol() -> None:
    """plugin.start_sandbox returns a serving Sandbox whose settings plugin.connect accepts."""
    sb = plugin.start_sandbox(SandboxOptions(seed=1, size=10))
    try:
        assert isinstance(sb, Sandbox)
        assert sb.base_url.startswith("https://127.0.0.1:")
        assert plugin.connect(sb.connector_settings(), None).name == "salesforce"  # type: ignore[arg-type]
    finally:
        sb.stop()


def test_same_seed_gives_same_data_and_ids_have_real_prefixes() -> None:
    """Equal seeds generate equal records; Ids are 18 characters with the object's key prefix."""
    first, second, other = Org(seed=3, size=50), Org(seed=3, size=50), Org(seed=4, size=50)
    rows = list(first.tables["Account"].scan())
    assert rows == list(second.tables["Account"].scan())
    assert rows != list(other.tables["Account"].scan())
    prefixes = {
        "Account": "001",
        "Contact": "003",
        "Opportunity": "006",
        "Quote": "0Q0",
        "OpportunityLineItem": "00k",
        "QuoteLineItem": "0QL",
        "Product2": "01t",
        "PricebookEntry": "01u",
    }
    for name, prefix in prefixes.items():
        record = next(first.tables[name].scan())
        assert len(record["Id"]) == 18
        assert record["Id"].startswith(prefix)


def test_id_checksum_follows_salesforce_case_encoding() -> None:
    """The 3-character suffix encodes the case of the 15-character Id as Salesforce does."""
    assert case_safe_id("001D000000IqhSL") == "001D000000IqhSLIAZ"
    assert salesforce_id("001", 0) == "001Hs0000000000IAA"


def test_accounts_are_realistically_messy() -> None:
    """Seeded accounts include suffix variants, accents, missing phones and repeated companies."""
    rows = list(Org(seed=7, size=400).tables["Account"].scan())
    names = [r["Name"] for r in rows]
    assert any(n.rstrip().endswith(("Inc", "Inc.")) for n in names)
    assert any(n.rstrip().endswith(("GmbH", "Ltd", "Limited")) for n in names)
    assert any(any(ch in n for ch in "üéçãø") for n in names)
    assert any(r["Phone"] is None for r in rows)
    stems = [n.split(",")[0].split(" ")[0] for n in names]
    assert len(set(stems)) < len(stems)


def test_query_shape_and_limit_info(api: Api) -> None:
    """A query answers totalSize/done/records with attributes and carries Sforce-Limit-Info."""
    response = soql(api, "SELECT Id, Name FROM Account WHERE Name != null ORDER BY Name LIMIT 3")
    body = response.json()
    assert set(body) == {"totalSize", "done", "records"}
    assert body["done"] is True
    assert body["records"][0]["attributes"]["type"] == "Account"
    assert body["records"][0]["attributes"]["url"].startswith(f"{V}/sobjects/Account/001")
    names = [r["Name"] for r in body["records"]]
    assert names == sorted(names)
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_batch_size_paging_with_next_records_url(api: Api) -> None:
    """batchSize sets the page size (minimum 200) and nextRecordsUrl leads to the rest."""
    api.sb.org.tables["Contact"].base_count = 450
    first = soql(
        api, "SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=10"}
    ).json()
    assert (first["totalSize"], len(first["records"]), first["done"]) == (450, 200, False)
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        page = api("GET", page["nextRecordsUrl"]).json()
        seen += [r["Id"] for r in page["records"]]
    assert len(seen) == len(set(seen)) == 450


def test_query_all_includes_deleted_and_query_does_not(api: Api) -> None:
    """Deleted records show in queryAll with IsDeleted = true and are absent from query."""
    target = api.sb.org.tables["Account"].id_for(0)
    assert api("DELETE", f"{V}/sobjects/Account/{target}").status_code == 204
    statement = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{target}'"
    assert soql(api, statement).json()["totalSize"] == 0
    rows = soql(api, statement, all_rows=True).json()["records"]
    assert rows[0]["IsDeleted"] is True


def test_where_with_in_like_null_and_datetimes(api: Api) -> None:
    """IN, LIKE, null checks and date-time literals filter as SOQL does."""
    body = soql(
        api,
        "SELECT Id, Name FROM Product2 WHERE ProductCode IN ('PRO-M', 'SSO') "
        "OR Name LIKE 'starter%'",
    ).json()
    assert sorted(r["Name"] for r in body["records"]) == ["Pro", "SSO", "Starter"]
    none = soql(api, "SELECT Id FROM Account WHERE SystemModstamp > 2030-01-01T00:00:00Z")
    assert none.json()["totalSize"] == 0
    missing = soql(api, "SELECT Id, Phone FROM Account WHERE Phone = null").json()
    assert all(r["Phone"] is None for r in missing["records"])


def test_errors_use_salesforce_body_shape(api: Api) -> None:
    """Bad queries answer 400 with [{message, errorCode}] and the right code."""
    bad_field = soql(api, "SELECT Nope__c FROM Account")
    assert bad_field.status_code == 400
    assert bad_field.json()[0]["errorCode"] == "INVALID_FIELD"
    malformed = soql(api, "SELECT Id FROM Account WHERE")
    assert malformed.json()[0]["errorCode"] == "MALFORMED_QUERY"
    bad_type = soql(api, "SELECT Id FROM Nothing")
    assert bad_type.json()[0]["errorCode"] == "INVALID_TYPE"


def test_expired_session_is_401_invalid_session_id(api: Api) -> None:
    """After sessions expire, calls answer 401 INVALID_SESSION_ID."""
    api.sb.api.expire_sessions()
    response = api("GET", f"{V}/limits")
    assert response.status_code == 401
    assert response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_daily_limit_gives_request_limit_exceeded(api: Api) -> None:
    """Once the daily budget is spent every call is 403 REQUEST_LIMIT_EXCEEDED."""
    api.sb.org.api_max = api.sb.org.api_used + 1
    assert api("GET", f"{V}/limits").json()["DailyApiRequests"]["Remaining"] == 0
    refused = api("GET", f"{V}/limits")
    assert refused.status_code == 403
    assert refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_upsert_by_external_id_creates_updates_and_answers_300(api: Api) -> None:
    """PATCH by external id creates (201), then updates (200); a shared value answers 300."""
    path = f"{V}/sobjects/Account/Ledgerlink_Id__c/ll-1"
    created = api("PATCH", path, json={"Name": "First"})
    assert created.status_code == 201
    assert created.json()["created"] is True
    updated = api("PATCH", path, json={"Name": "Second"})
    assert (updated.status_code, updated.json()["id"]) == (200, created.json()["id"])
    api.sb.org.insert("Account", {"Name": "Clone", "Ledgerlink_Id__c": "ll-1"})
    ambiguous = api("PATCH", path, json={"Name": "Third"})
    assert ambiguous.status_code == 300
    assert len(ambiguous.json()) == 2
    assert all(u.startswith(f"{V}/sobjects/Account/001") for u in ambiguous.json())


def test_writes_are_stamped_with_the_session_user_and_audit_fields_are_read_only(
    api: Api,
) -> None:
    """An API write sets LastModifiedById to the user of the token's identity URL; people's
    edits keep theirs; the audit fields cannot be written."""
    user = api.identity_url.rsplit("/", 1)[1]
    assert user == API_USER_ID
    assert user not in PEOPLE_IDS
    org = api.sb.org
    account = org.tables["Account"].id_for(3)
    assert org.tables["Account"].get(account)["LastModifiedById"] in PEOPLE_IDS
    assert api("PATCH", f"{V}/sobjects/Account/{account}", json={"Phone": "1"}).status_code == 204
    created = api("POST", f"{V}/sobjects/Account", json={"Name": "New Co"}).json()["id"]

    def audit(record_id: str) -> tuple[str, str]:
        row = api("GET", f"{V}/query", params={"q": _audit_query(record_id)}).json()
        return row["records"][0]["CreatedById"], row["records"][0]["LastModifiedById"]

    assert audit(account)[1] == user
    assert audit(account)[0] in PEOPLE_IDS
    assert audit(created) == (user, user)
    org.touch("Account", created, Phone="2")
    assert audit(created) == (user, PEOPLE_IDS[0])
    refused = api("PATCH", f"{V}/sobjects/Account/{account}", json={"LastModifiedById": user})
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALID_FIELD"
    fields = {f["name"]: f for f in api("GET", f"{V}/sobjects/Account/describe").json()["fields"]}
    assert fields["LastModifiedById"]["type"] == "reference"
    assert not fields["LastModifiedById"]["updateable"]
    assert not fields["CreatedById"]["createable"]


def _audit_query(record_id: str) -> str:
    return f"SELECT Id, CreatedById, LastModifiedById FROM Account WHERE Id = '{record_id}'"


def test_collections_refuse_more_than_200_records(api: Api) -> None:
    """sObject Collections accept at most 200 records per call."""
    records = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
    refused = api("POST", f"{V}/composite/sobjects", json={"records": records})
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_collections_all_or_none_rolls_back_the_valid_records(api: Api) -> None:
    """With allOrNone true one bad record rolls back the others, each told why."""
    records = [
        {"attributes": {"type": "Account"}, "Name": "ok"},
        {"attributes": {"type": "Account"}},
    ]
    results = api(
        "POST", f"{V}/composite/sobjects", json={"allOrNone": True, "records": records}
    ).json()
    codes = [r["errors"][0]["statusCode"] for r in results]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING"]


def _subquery(reference: str, statement: str, kind: str = "query") -> dict[str, Any]:
    return {
        "method": "GET",
        "url": f"{V}/{kind}/?" + urlencode({"q": statement}),
        "referenceId": reference,
    }


def test_composite_answers_each_query_as_alone_for_one_api_call(api: Api) -> None:
    """Queries sent through /composite answer as they would alone, and cost one call."""
    statements = {
        "accounts": "SELECT Id, Name FROM Account ORDER BY Id LIMIT 5",
        "contacts": "SELECT Id, LastName FROM Contact ORDER BY Id LIMIT 3",
    }
    alone = {ref: soql(api, text).json() for ref, text in statements.items()}
    used = api.sb.org.api_used
    response = api(
        "POST",
        f"{V}/composite",
        json={"compositeRequest": [_subquery(ref, text) for ref, text in statements.items()]},
    )
    assert response.status_code == 200
    answers = response.json()["compositeResponse"]
    assert [a["referenceId"] for a in answers] == ["accounts", "contacts"]
    assert all(a["httpStatusCode"] == 200 for a in answers)
    assert {a["referenceId"]: a["body"]["records"] for a in answers} == {
        ref: body["records"] for ref, body in alone.items()
    }
    assert api.sb.org.api_used == used + 1
    assert response.headers["Sforce-Limit-Info"] == f"api-usage={used + 1}/{api.sb.org.api_max}"


def test_composite_subrequest_errors_stand_alone_and_limits_refuse_all(api: Api) -> None:
    """A bad subrequest gets its own error body; over 5 queries or 25 subrequests, none run."""
    mixed = [
        _subquery("good", "SELECT Id FROM Account LIMIT 1", "queryAll"),
        _subquery("bad", "SELECT Nope FROM Account"),
    ]
    answers = api("POST", f"{V}/composite", json={"compositeRequest": mixed}).json()
    good, bad = answers["compositeResponse"]
    assert (good["httpStatusCode"], len(good["body"]["records"])) == (200, 1)
    assert bad["httpStatusCode"] == 400
    assert bad["body"][0]["errorCode"] == "INVALID_FIELD"
    six = [_subquery(f"q{i}", "SELECT Id FROM Account LIMIT 1") for i in range(6)]
    refused = api("POST", f"{V}/composite", json={"compositeRequest": six}).json()
    assert [a["body"][0]["errorCode"] for a in refused["compositeResponse"]] == ["LIMIT_EXCEEDED"]
    gets = [
        {
            "method": "GET",
            "url": f"{V}/sobjects/Account/{api.sb.org.tables['Account'].id_for(i)}",
            "referenceId": f"a{i}",
        }
        for i in range(26)
    ]
    refused = api("POST", f"{V}/composite", json={"compositeRequest": gets}).json()
    assert refused["compositeResponse"][0]["body"][0]["errorCode"] == "LIMIT_EXCEEDED"
    answered = api("POST", f"{V}/composite", json={"compositeRequest": gets[:25]}).json()
    assert [a["httpStatusCode"] for a in answered["compositeResponse"]] == [200] * 25


def test_bulk_query_job_pages_csv_by_locator(api: Api) -> None:
    """A Bulk 2.0 query job completes and serves CSV pages linked by Sforce-Locator."""
    job = api(
        "POST",
        f"{V}/jobs/query",
        json={"operation": "query", "query": "SELECT Id, Name FROM Account"},
    ).json()
    assert job["state"] == "UploadComplete"
    assert api("GET", f"{V}/jobs/query/{job['id']}").json()["state"] == "JobComplete"
    first = api("GET", f"{V}/jobs/query/{job['id']}/results", params={"maxRecords": 25})
    assert first.headers["Sforce-NumberOfRecords"] == "25"
    assert first.text.splitlines()[0] == '"Id","Name"'
    second = api(
        "GET",
        f"{V}/jobs/query/{job['id']}/results",
        params={"maxRecords": 25, "locator": first.headers["Sforce-Locator"]},
    )
    assert second.headers["Sforce-NumberOfRecords"] == "15"
    assert second.headers["Sforce-Locator"] == "null"


def test_injected_faults_use_salesforce_error_bodies(api: Api) -> None:
    """A switched-on 503 fault answers in Salesforce's error format and is counted."""
    api.sb.faults.add(Fault(status=503, count=1))
    response = api("GET", f"{V}/limits")
    assert response.status_code == 503
    assert response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert api.sb.faults.request_count >= 1


def test_count_of_a_million_accounts_is_instant() -> None:
    """COUNT() and modstamp-bounded scans of a 1,000,000-account org generate nothing upfront."""
    org = Org(seed=7, size=1_000_000)
    table = org.tables["Account"]
    assert table.count_since(None, include_deleted=False) == 1_000_000
    last = table.generate(999_999)
    since = to_datetime(last["SystemModstamp"])
    assert since is not None
    assert [r["Id"] for r in table.scan(since)][-1] == last["Id"]


def test_scans_and_counts_from_a_modstamp_see_every_current_version() -> None:
    """Edits in any time order (back-dated ones too, two in one second), deletions and
    inserts: a scan from each SystemModstamp gives, in (SystemModstamp, Id) order, the current
    version of exactly the records stamped since, and the count agrees, as a walk over every
    record does."""
    org = Org(seed=3, size=60)
    table = org.tables["Account"]
    base = [table.id_for(i) for i in range(table.base_count)]
    stamps = sorted({str(table.get(i)["SystemModstamp"]) for i in base})  # type: ignore[index]
    middle = to_datetime(stamps[len(stamps) // 2])
    assert middle is not None
    org.touch("Account", base[3], Name="Edited once")
    org.touch("Account", base[3], Name="Edited twice in the same second")
    org.touch("Account", base[5], at=middle, Name="Back-dated")
    org.touch("Account", base[7], Name="Edited, then back-dated")
    org.touch("Account", base[7], at=middle, Name="Back-dated later")
    org.delete("Account", base[9])
    inserted = org.insert("Account", {"Name": "Inserted"})
    org.touch("Account", inserted["Id"], Name="Inserted, then edited")
    every = [table.get(i) for i in [*base, inserted["Id"]]]
    for text in [stamps[0], stamps[len(stamps) // 2], stamps[-1], str(inserted["SystemModstamp"])]:
        since = to_datetime(text)
        assert since is not None
        wanted = sorted(
            (r for r in every if r is not None and r["SystemModstamp"] >= text),
            key=lambda r: (r["SystemModstamp"], r["Id"]),
        )
        assert list(table.scan(since)) == wanted, text
        live = [r for r in wanted if not r["IsDeleted"]]
        assert table.count_since(since, include_deleted=True) == len(wanted), text
        assert table.count_since(since, include_deleted=False) == len(live), text
    assert [r["Name"] for r in table.scan(None) if r["Id"] == base[3]] == [
        "Edited twice in the same second"
    ]
