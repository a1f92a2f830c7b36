"""Query injection through every value the hub puts into a SOQL or QuickBooks query.

Names, external ids and ids chosen by hypothesis (quotes, backslashes, line breaks, LIKE
wildcards, unicode, and classic injection tails) are written to the Salesforce and QuickBooks
sandboxes over loopback, then looked up the way the connectors look records up. A lookup finds
exactly the record carrying that value, and an injection tail appended to a real value finds
nothing (a working injection would return every record).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ledgerlink_quickbooks import qbql

from ledgerlink.connector import Connector, ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.connector.protocol import WriteAction, WriteOp

INJECTION_TAILS = [
    "' OR Name != '",
    "' OR DisplayName != '",
    "\\' OR Id != \\'",
    "'--",
    "') OR (Id != '",
    "' AND Id IN (SELECT Id FROM Account) AND Name != '",
    "%",
    "_",
]
_VALUE = st.one_of(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
        | st.sampled_from("'\"\\%_\n\t"),
        min_size=1,
        max_size=24,
    ),
    st.tuples(st.text(max_size=6), st.sampled_from(INJECTION_TAILS)).map("".join),
).filter(lambda s: s.strip() != "")
_counter = itertools.count()


class MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


def _running(system: str) -> Iterator[Connector]:
    plugin = load_plugin(system)
    sandbox = plugin.start_sandbox(SandboxOptions(seed=9, size=5))
    settings_ = dict(sandbox.connector_settings())
    if system == "quickbooks":
        sandbox.limits.requests_per_second = None  # type: ignore[attr-defined]
        settings_ |= {"requests_per_minute": 60_000, "batch_requests_per_minute": 60_000}
    connector = plugin.connect(settings_, ConnectorContext(secrets=MemorySecrets()))
    try:
        yield connector
    finally:
        connector.close()
        sandbox.stop()


@pytest.fixture(scope="module")
def salesforce() -> Iterator[Connector]:
    yield from _running("salesforce")


@pytest.fixture(scope="module")
def quickbooks() -> Iterator[Connector]:
    yield from _running("quickbooks")


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=_VALUE, tail=st.sampled_from(INJECTION_TAILS))
def test_salesforce_lookups_by_name_and_external_id_find_exactly_one(
    salesforce: Any, value: str, tail: str
) -> None:
    """An account named and keyed with any text is found alone by Name and by external id; an injection tail finds nothing."""
    n = next(_counter)
    name = f"{value}#{n}"
    external = f"{value}#{n}"
    field = salesforce.settings.external_id_for("Account")
    [result] = salesforce.write(
        [WriteOp(f"inj-{n}", "Account", WriteAction.UPSERT, {"Name": name}, external_id=external)]
    )
    if not result.ok:  # the vendor may refuse a value (length, characters): nothing to look up
        event("refused by Salesforce")
        return
    event("looked up in Salesforce")
    by_name = salesforce.find("Account", "Name", name, ["Id", "Name"])
    assert [(r["Id"], r["Name"]) for r in by_name] == [(result.remote_id, name)]
    by_key = salesforce.find("Account", field, external, ["Id"])
    assert [r["Id"] for r in by_key] == [result.remote_id]
    assert salesforce.find("Account", "Name", name + tail, ["Id"]) == []
    assert salesforce.find("Account", field, external + tail, ["Id"]) == []


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=_VALUE, tail=st.sampled_from(INJECTION_TAILS))
def test_quickbooks_queries_by_name_and_id_find_exactly_one(
    quickbooks: Any, value: str, tail: str
) -> None:
    """A customer named with any text is found alone by DisplayName and by Id; an injection tail finds nothing."""
    n = next(_counter)
    name = f"{value}#{n}"
    [created] = quickbooks.write(
        [WriteOp(f"inj-{n}", "Customer", WriteAction.CREATE, {"DisplayName": name})]
    )
    if not created.ok:  # QuickBooks refuses some names (a colon, a tab): nothing to look up
        event("refused by QuickBooks")
        return
    event("looked up in QuickBooks")

    def customers(where: str) -> list[dict[str, Any]]:
        answer = quickbooks.query(qbql.select("Customer", [where]))
        return list((answer.get("QueryResponse") or {}).get("Customer") or [])

    found = customers(f"DisplayName = {qbql.quote(name)}")
    assert [(r["Id"], r["DisplayName"]) for r in found] == [(created.remote_id, name)]
    by_id = customers(f"Id IN ({qbql.quote(str(created.remote_id))}, {qbql.quote(value + tail)})")
    assert [r["Id"] for r in by_id] == [created.remote_id]
    assert customers(f"DisplayName = {qbql.quote(name + tail)}") == []
