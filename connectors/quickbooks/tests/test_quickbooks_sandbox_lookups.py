"""The QuickBooks sandbox answers id and time queries from its indexes exactly as by scanning.

Benchmarks page through a million documents and look up SyncTokens by id; the sandbox serves
those from an id lookup and a time-ordered log. These tests compare each answer with the one
a scan of every record gives.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ledgerlink_quickbooks.sandbox import QuickBooksSandbox
from ledgerlink_quickbooks.sandbox.qbql import parse_query


def _scan(sandbox: QuickBooksSandbox, entity: str, keep: Any) -> list[str]:
    table = sandbox.company.table(entity)
    return [str(r["Id"]) for r in table.by_id() if keep(r)]


def _ids(sandbox: QuickBooksSandbox, statement: str) -> list[str]:
    _entity, rows, _count = sandbox.company.query(parse_query(statement))
    return [str(r["Id"]) for r in rows]


def test_id_queries_answer_what_a_scan_answers(sandbox: QuickBooksSandbox) -> None:
    """``Id IN``, ``Id =`` and an unknown id, alone and with another condition."""
    sandbox.edit("Customer", "3", Notes="edited")
    assert _ids(sandbox, "SELECT * FROM Customer WHERE Id IN ('7', '3', '999', '12')") == [
        "3",
        "7",
        "12",
    ]
    assert _ids(sandbox, "SELECT * FROM Customer WHERE Id = '5'") == ["5"]
    assert _ids(sandbox, "SELECT * FROM Customer WHERE Id = '999'") == []
    active = _scan(sandbox, "Customer", lambda r: r.get("Active", True) and r["Id"] in {"3", "4"})
    assert _ids(sandbox, "SELECT * FROM Customer WHERE Id IN ('4', '3')") == active


def test_time_pages_follow_every_change_once(sandbox: QuickBooksSandbox) -> None:
    """Records changed after a time come back once each, oldest change first, as a scan gives."""
    start = sandbox.company.stamp()
    for rid in ("5", "9", "5", "2"):
        sandbox.advance(dt.timedelta(seconds=2))
        sandbox.edit("Customer", rid, Notes=f"changed {rid}")
    since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    statement = (
        f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '{since}' "
        "ORDERBY MetaData.LastUpdatedTime"
    )
    assert _ids(sandbox, statement) == ["9", "5", "2"]


def test_records_read_are_copies_and_keep_what_the_client_sent(
    sandbox: QuickBooksSandbox,
) -> None:
    """Changing a record read from the sandbox changes nothing stored; odd values round-trip."""
    company = sandbox.company
    stored = company.create(
        "Customer", {"DisplayName": "Copy Check Ltd", "Notes": "kept", "Big": 2**70}
    )
    read = company.read("Customer", stored["Id"])
    read["Notes"] = "changed by the caller"
    listed = company.table("Customer").get(int(stored["Id"]))
    assert listed is not None
    listed["Notes"] = "changed too"
    again = company.read("Customer", stored["Id"])
    assert again["Notes"] == "kept"
    assert again["Big"] == 2**70
    assert again == stored
