"""The Stripe sandbox behaves like Stripe: forms, lists, ids, errors, idempotency, schemas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ledgerlink_stripe.sandbox import StripeSandbox
from ledgerlink_stripe.sandbox.app import decode_form
from ledgerlink_stripe.sandbox.data import SeedCatalog

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink.connector.sandbox import Fault


def _http(sandbox: StripeSandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.base_url, headers={"authorization": f"Bearer {sandbox.api_key}"}
    )


def test_decode_form_nests_metadata_items_and_expand() -> None:
    """Form keys with brackets decode to Stripe's nested parameters."""
    body = (
        "name=Acme&metadata[sf]=001&items[0][price]=price_a&items[0][quantity]=2"
        "&items[1][price]=price_b&expand[]=customer&expand[]=latest_invoice"
    )
    assert decode_form(body) == {
        "name": "Acme",
        "metadata": {"sf": "001"},
        "items": [{"price": "price_a", "quantity": "2"}, {"price": "price_b"}],
        "expand": ["customer", "latest_invoice"],
    }


def test_list_envelope_and_pagination_walk_every_customer(shared_sandbox: StripeSandbox) -> None:
    """Lists page newest first with starting_after until has_more is false, without repeats."""
    with _http(shared_sandbox) as http:
        seen: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 25}
            if after:
                params["starting_after"] = after
            body = http.get("/v1/customers", params=params).json()
            assert body["object"] == "list"
            assert body["url"] == "/v1/customers"
            seen += [c["id"] for c in body["data"]]
            if not body["has_more"]:
                break
            after = body["data"][-1]["id"]
    assert len(seen) == len(set(seen)) == 60
    assert all(cid.startswith("cus_") for cid in seen)


def test_ending_before_returns_the_newer_neighbours(shared_sandbox: StripeSandbox) -> None:
    """ending_before answers the objects just newer than the anchor, still newest first."""
    with _http(shared_sandbox) as http:
        first = http.get("/v1/invoices", params={"limit": 10}).json()["data"]
        back = http.get("/v1/invoices", params={"limit": 3, "ending_before": first[5]["id"]}).json()
    assert [i["id"] for i in back["data"]] == [i["id"] for i in first[2:5]]
    assert back["has_more"] is True


def test_limit_above_100_is_refused_in_stripe_error_format(shared_sandbox: StripeSandbox) -> None:
    """A limit over 100 answers 400 with Stripe's error body."""
    with _http(shared_sandbox) as http:
        response = http.get("/v1/charges", params={"limit": 101})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "limit"


def test_unknown_id_answers_resource_missing(shared_sandbox: StripeSandbox) -> None:
    """Retrieving an unknown id answers 404 resource_missing naming the object."""
    with _http(shared_sandbox) as http:
        response = http.get("/v1/customers/cus_doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_wrong_api_key_is_refused(shared_sandbox: StripeSandbox) -> None:
    """A request with another key answers 401 without echoing the whole key."""
    with httpx.Client(base_url=shared_sandbox.base_url) as http:
        response = http.get(
            "/v1/customers", headers={"authorization": "Bearer sk_test_wrongkey123456789"}
        )
    assert response.status_code == 401
    assert "wrongkey123456789" not in response.text


def test_idempotent_replay_and_key_reuse_with_other_params(sandbox: StripeSandbox) -> None:
    """Same key + same params replays the first answer; other params get idempotency_error."""
    with _http(sandbox) as http:
        first = http.post(
            "/v1/customers", data={"name": "Acme"}, headers={"idempotency-key": "k-1"}
        )
        again = http.post(
            "/v1/customers", data={"name": "Acme"}, headers={"idempotency-key": "k-1"}
        )
        other = http.post(
            "/v1/customers", data={"name": "Globex"}, headers={"idempotency-key": "k-1"}
        )
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


def test_same_seed_gives_same_data() -> None:
    """Two sandboxes started with the same seed serve identical objects."""
    payloads = []
    for _ in range(2):
        with StripeSandbox(SandboxOptions(seed=3, size=15)) as sandbox, _http(sandbox) as http:
            payloads.append(http.get("/v1/invoices", params={"limit": 100}).json()["data"])
    assert payloads[0] == payloads[1]


def test_large_sandbox_starts_without_materialising_data() -> None:
    """A million-customer sandbox serves its last page at once (objects are generated lazily)."""
    with StripeSandbox(SandboxOptions(seed=1, size=1_000_000)) as sandbox, _http(sandbox) as http:
        first = http.get("/v1/invoices", params={"limit": 100}).json()
        one = http.get(f"/v1/invoices/{first['data'][-1]['id']}").json()
    assert len(first["data"]) == 100
    assert first["has_more"]
    assert one == first["data"][-1]


def test_injected_429_uses_stripe_error_body(sandbox: StripeSandbox) -> None:
    """A throttling fault answers Stripe's rate_limit body with Stripe-Should-Retry."""
    sandbox.faults.add(Fault(status=429, count=1, retry_after=2))
    with _http(sandbox) as http:
        response = http.get("/v1/customers")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit"
    assert response.headers["stripe-should-retry"] == "true"
    assert response.headers["retry-after"] == "2"


def test_zero_decimal_currency_amounts_are_whole_yen(shared_sandbox: StripeSandbox) -> None:
    """JPY prices are whole yen (no minor unit), not cents."""
    with _http(shared_sandbox) as http:
        prices = http.get("/v1/prices", params={"limit": 100, "currency": "jpy"}).json()["data"]
        usd = http.get("/v1/prices", params={"limit": 100, "currency": "usd"}).json()["data"]
    by_product = {p["product"]: p["unit_amount"] for p in usd}
    pro = next(p for p in prices if p["lookup_key"] == "pro_jpy")
    assert pro["unit_amount"] == 7_350  # 49 USD is about 7,350 JPY, not 735,000
    assert by_product[pro["product"]] == 4_900


@pytest.mark.parametrize(
    "path",
    [
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "payment_intents",
        "charges",
        "refunds",
        "credit_notes",
        "disputes",
        "payouts",
        "balance_transactions",
    ],
)
def test_seeded_objects_match_stripe_schema(
    shared_sandbox: StripeSandbox, st: Any, path: str
) -> None:
    """Every seeded object of each list matches Stripe's published schema of that object."""
    with _http(shared_sandbox) as http:
        data = http.get(
            f"/v1/{path}",
            params={"limit": 100, "status": "all"} if path == "subscriptions" else {"limit": 100},
        ).json()["data"]
    assert data
    problems = [p for obj in data for p in st.validate(obj)]
    for obj in data:
        for nested in (obj.get("lines") or {}).get("data", []):
            kind = "credit_note_line_item" if obj["object"] == "credit_note" else "line_item"
            problems += st.validate(nested, kind)
        for item in (obj.get("items") or {}).get("data", []):
            problems += st.validate(item, "subscription_item")
    assert problems == []


def test_events_older_than_thirty_days_are_dropped() -> None:
    """/v1/events forgets events once they are older than the 30-day retention."""
    now = [1_800_000_000.0]
    with (
        StripeSandbox(SandboxOptions(size=10), clock=lambda: now[0]) as sandbox,
        _http(sandbox) as http,
    ):
        http.post("/v1/customers", data={"name": "Early"})
        now[0] += 29 * 86_400
        http.post("/v1/customers", data={"name": "Later"})
        assert len(http.get("/v1/events").json()["data"]) == 2
        now[0] += 2 * 86_400
        names = [e["data"]["object"]["name"] for e in http.get("/v1/events").json()["data"]]
    assert names == ["Later"]


def test_event_pages_and_lookups_survive_the_retention_cut() -> None:
    """Once old events are dropped, cursors and ``/v1/events/{id}`` still find the kept ones."""
    now = [1_800_000_000.0]
    with (
        StripeSandbox(SandboxOptions(size=10), clock=lambda: now[0]) as sandbox,
        _http(sandbox) as http,
    ):
        for name in ("Old 1", "Old 2"):
            http.post("/v1/customers", data={"name": name})
        now[0] += 29 * 86_400
        for name in ("New 1", "New 2", "New 3"):
            http.post("/v1/customers", data={"name": name})
        now[0] += 2 * 86_400
        events = http.get("/v1/events").json()["data"]
        first = http.get("/v1/events", params={"limit": 2}).json()
        rest = http.get(
            "/v1/events", params={"limit": 2, "starting_after": first["data"][-1]["id"]}
        ).json()
        back = http.get("/v1/events", params={"limit": 5, "ending_before": events[-1]["id"]}).json()
        one = http.get(f"/v1/events/{events[1]['id']}").json()
        gone = http.get("/v1/events/evt_unknown")
    names = [e["data"]["object"]["name"] for e in events]
    assert names == ["New 3", "New 2", "New 1"]
    assert first["has_more"] is True
    assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in events]
    assert rest["has_more"] is False
    assert [e["id"] for e in back["data"]] == [e["id"] for e in events[:2]]
    assert one == events[1]
    assert gone.status_code == 404


def test_events_filter_by_type_and_created(sandbox: StripeSandbox) -> None:
    """/v1/events honours type wildcards and created[gte]."""
    with _http(sandbox) as http:
        customer = http.post("/v1/customers", data={"name": "Typed"}).json()
        http.post(f"/v1/customers/{customer['id']}", data={"name": "Typed 2"})
        http.post("/v1/products", data={"name": "Widget"})
        only = http.get("/v1/events", params={"type": "customer.*"}).json()["data"]
        later = http.get("/v1/events", params={"created[gte]": 4_000_000_000}).json()["data"]
    assert [e["type"] for e in only] == ["customer.updated", "customer.created"]
    assert only[0]["data"]["previous_attributes"] == {"name": "Typed"}
    assert later == []


def _created_bounded(http: httpx.Client, bounds: dict[str, int]) -> list[dict[str, Any]]:
    """Every event a ``created`` bounded list gives, one per page, newest first."""
    params = {f"created[{op}]": value for op, value in bounds.items()}
    events: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = {**params, "limit": 1, **({"starting_after": after} if after else {})}
        body = http.get("/v1/events", params=query).json()
        events.extend(body["data"])
        if not body["has_more"]:
            return events
        after = body["data"][-1]["id"]


_BOUNDS = (
    {"gte": 200},
    {"gt": 200},
    {"gte": 150, "lte": 300},
    {"lt": 200},
    {"lte": 200},
    {"gte": 200, "lt": 400},
)


def _in(created: int, bounds: dict[str, int]) -> bool:
    checks = {"gte": created.__ge__, "gt": created.__gt__, "lte": created.__le__}
    return all(checks.get(op, created.__lt__)(value) for op, value in bounds.items())


def test_events_created_bounds_give_exactly_the_events_in_them() -> None:
    """created[gte|gt|lte|lt] lists give exactly the events in bounds, newest first, page by
    page (the log is searched, not walked, so the bounds must be exact at its edges)."""
    now = [0.0]
    with (
        StripeSandbox(SandboxOptions(size=10), clock=lambda: now[0]) as sandbox,
        _http(sandbox) as http,
    ):
        for number, at in enumerate((100, 200, 200, 300, 400)):
            now[0] = 1_800_000_000 + at
            http.post("/v1/customers", data={"name": f"C{number}"})
        got = {
            repr(b): [e["data"]["object"]["name"] for e in _created_bounded(http, shifted)]
            for b in _BOUNDS
            for shifted in [{op: 1_800_000_000 + v for op, v in b.items()}]
        }
    assert got == {
        repr({"gte": 200}): ["C4", "C3", "C2", "C1"],
        repr({"gt": 200}): ["C4", "C3"],
        repr({"gte": 150, "lte": 300}): ["C3", "C2", "C1"],
        repr({"lt": 200}): ["C0"],
        repr({"lte": 200}): ["C2", "C1", "C0"],
        repr({"gte": 200, "lt": 400}): ["C3", "C2", "C1"],
    }


def test_events_logged_out_of_time_order_are_still_found_by_created(
    sandbox: StripeSandbox,
) -> None:
    """An event log that is not in ``created`` order is walked whole: no event is missed."""
    base = sandbox.state.now() - 1_000
    times = (300, 100, 200, 100, 400)
    for number, at in enumerate(times):
        sandbox.state.events.append(
            {
                "id": f"evt_{number}",
                "object": "event",
                "type": "customer.created",
                "created": base + at,
                "data": {"object": {"id": f"cus_{number}"}},
            }
        )
    with _http(sandbox) as http:
        got = {
            repr(b): sorted(
                e["id"] for e in _created_bounded(http, {op: base + v for op, v in b.items()})
            )
            for b in _BOUNDS
        }
    for bounds in _BOUNDS:
        wanted = sorted(f"evt_{n}" for n, at in enumerate(times) if _in(at, bounds))
        assert got[repr(bounds)] == wanted, bounds
    assert got[repr({"gte": 200})] == ["evt_0", "evt_2", "evt_4"]


def _typed_pages(http: httpx.Client, params: dict[str, Any], anchor: str) -> list[str]:
    """Ids of every event a typed list gives, one per page, following ``anchor``."""
    ids: list[str] = []
    after: str | None = None
    while True:
        query = {**params, "limit": 1, **({anchor: after} if after else {})}
        body = http.get("/v1/events", params=query).json()
        ids.extend(e["id"] for e in body["data"])
        if not body["has_more"]:
            return ids
        after = body["data"][-1 if anchor == "starting_after" else 0]["id"]


def test_typed_event_lists_give_the_events_of_their_types_page_by_page() -> None:
    """A list of some types (``type``, ``types[]``, wildcards) gives exactly the events of those
    types, newest first, through ``starting_after`` and ``ending_before`` pages, also after
    the oldest events left the retention window (the log keeps an index per type)."""
    now = [1_800_000_000.0]
    with (
        StripeSandbox(SandboxOptions(size=10), clock=lambda: now[0]) as sandbox,
        _http(sandbox) as http,
    ):
        for number in range(4):
            customer = http.post("/v1/customers", data={"name": f"C{number}"}).json()
            http.post("/v1/products", data={"name": f"P{number}"})
            http.post(f"/v1/customers/{customer['id']}", data={"name": f"C{number}b"})
            now[0] += 10 * 86_400
        now[0] -= 10 * 86_400 - 1  # the first customer's events are now past retention
        every = http.get("/v1/events", params={"limit": 100}).json()["data"]
        position = {e["id"]: n for n, e in enumerate(every)}
        filters: list[tuple[dict[str, Any], set[str]]] = [
            ({"type": "customer.updated"}, {"customer.updated"}),
            ({"type": "customer.*"}, {"customer.created", "customer.updated"}),
            (
                {"types[]": ["product.created", "customer.updated"]},
                {"product.created", "customer.updated"},
            ),
        ]
        for params, kinds in filters:
            wanted = [e["id"] for e in every if e["type"] in kinds]
            assert wanted
            assert _typed_pages(http, params, "starting_after") == wanted, params
            oldest = next(e["id"] for e in reversed(every) if e["type"] not in kinds)
            newer = [w for w in wanted if position[w] < position[oldest]]
            before = _typed_pages(http, {**params, "ending_before": oldest}, "ending_before")
            assert sorted(before) == sorted(newer), params
    assert len(every) == 9  # three of the twelve events were dropped


def test_events_name_the_request_and_its_idempotency_key(sandbox: StripeSandbox) -> None:
    """An event caused by an API call carries that call's request id and idempotency key."""
    with _http(sandbox) as http:
        http.post("/v1/customers", data={"name": "Keyed"}, headers={"idempotency-key": "k-9"})
        event = http.get("/v1/events", params={"limit": 1}).json()["data"][0]
    assert event["request"]["idempotency_key"] == "k-9"
    assert event["request"]["id"].startswith("req_")


def test_the_seed_creates_nothing_in_the_future() -> None:
    """Refunds, credit notes and disputes of the latest charges, and their balance
    transactions, are created by the seed's end at the latest: Stripe creates nothing in the
    future, and one such object moved a ``created[gte]`` reader's start days ahead, so that it
    missed what was created in between (every new fee at 10,000 companies)."""
    now = 1_800_000_000
    catalog = SeedCatalog(seed=7, size=10_000, now=now)
    late: dict[str, int] = {}
    for kind in ("refund", "credit_note", "dispute", "balance_transaction", "charge"):
        made = (catalog.kinds[kind].make(i) for i in range(catalog.counts[kind]))
        late[kind] = sum(1 for obj in made if obj is not None and obj["created"] > now)
    assert late == dict.fromkeys(late, 0)
