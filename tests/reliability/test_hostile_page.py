"""A page of good and hostile records through pull and normalize: the good land, the bad wait in quarantine.

The page goes through the real pull loop (``ledgerlink.sync.engine.pull``) and the real
normalisation (``normalize_changed``) on SQLite and PostgreSQL; only the vendor is scripted, so
the test can choose exactly which records are hostile.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ledgerlink.connector.protocol import CheckReport, Cursor, Page, Record, Stream
from ledgerlink.mapping import Normalizer, list_quarantine, normalize_changed
from ledgerlink.store import SourceRecord, Store
from ledgerlink.sync.engine import pull

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
Samples = Mapping[tuple[str, str], dict[str, Any]]


class ScriptedStripe:
    """A vendor that serves the given records as one page per stream, then nothing."""

    name = "stripe"

    def __init__(self, records: dict[str, list[Record]]) -> None:
        self.records = records

    def streams(self) -> Sequence[Stream]:
        return [Stream(name=name, entity="x", primary_key="id") for name in self.records]

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        if cursor.value is None:
            yield Page(stream, self.records[stream], Cursor(value="2025-06-01T00:00:00Z"))

    def check(self) -> CheckReport:
        return CheckReport(items=())

    def close(self) -> None:
        return None


def _with(base: dict[str, Any], record_id: str, **changes: Any) -> Record:
    payload = copy.deepcopy(base)
    payload["id"] = record_id
    for key, value in changes.items():
        payload[key] = value
    return Record(object="", id=record_id, payload=payload)


def _page(stream: str, records: list[Record]) -> list[Record]:
    return [Record(stream, r.id, r.payload) for r in records]


def test_mixed_page_lands_good_records_and_quarantines_bad_ones_with_reasons(
    engine: Engine, store: Store, normalizer: Normalizer, vendor_samples: Samples
) -> None:
    """Good records (even with 1 MB or odd unicode text) map; each hostile one is quarantined with the field and reason; the cycle goes on."""
    customer = vendor_samples[("stripe", "customers")]
    invoice = vendor_samples[("stripe", "invoices")]
    good = {
        "customers": [
            _with(customer, "cus_plain"),
            _with(customer, "cus_rtl", name="\u202eevil\u202c Corp 💸"),
            _with(customer, "cus_huge", description="Ω" * 500_000),
            _with(customer, "cus_zalgo", name="Z\u0351\u0352a\u035blgo GmbH"),
        ],
        "invoices": [
            _with(invoice, "in_plain"),
            _with(invoice, "in_zero", total=0, amount_due=0, amount_paid=0, subtotal=0),
            _with(invoice, "in_big", total=2**63, amount_due=2**63),
        ],
    }
    bad = {
        "cus_name_dict": ("customers", {"name": {"first": "A"}}, "name"),
        "cus_email_list": ("customers", {"email": ["a@b.example"]}, "email"),
        "cus_created_text": ("customers", {"created": "yesterday"}, "created"),
        "in_currency": ("invoices", {"currency": "ZZZ"}, "currency"),
        "in_total_text": ("invoices", {"total": "12abc"}, "total"),
        "in_total_null": ("invoices", {"total": None}, "total"),
        "in_total_float": ("invoices", {"total": 12.5}, "total"),
        "in_created_far": ("invoices", {"created": 2**63}, "created"),
    }
    pages: dict[str, list[Record]] = {stream: list(records) for stream, records in good.items()}
    base = {"customers": customer, "invoices": invoice}
    # Interleave: hostile records sit between good ones inside the same page.
    for index, (record_id, (stream, changes, _field)) in enumerate(bad.items()):
        pages[stream].insert(
            index % (len(pages[stream]) + 1), _with(base[stream], record_id, **changes)
        )
    connector = ScriptedStripe({s: _page(s, r) for s, r in pages.items()})

    results = pull(store, connector)  # type: ignore[arg-type]
    assert all(r.ok for r in results), [r.error for r in results]
    with engine.connect() as conn:
        landed = conn.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
    assert landed == sum(len(r) for r in pages.values())

    report = normalize_changed(engine, normalizer, "stripe", since=None, now=NOW)
    mapped_ids = {e.source.id for e in report.entities}
    assert mapped_ids == {r.id for records in good.values() for r in records}
    assert report.quarantined == len(bad)

    rows = list_quarantine(engine, system="stripe")
    reasons = {row.external_id: row.reason for row in rows}
    assert set(reasons) == set(bad)
    for record_id, (_stream, _changes, field) in bad.items():
        assert field in reasons[record_id], (record_id, reasons[record_id])

    huge = next(e for e in report.entities if e.source.id == "in_big")
    assert huge.total.amount == 2**63  # type: ignore[attr-defined]
    rtl = next(e for e in report.entities if e.source.id == "cus_rtl")
    assert "\u202e" in rtl.name  # type: ignore[attr-defined]

    again = normalize_changed(engine, normalizer, "stripe", since=None, now=NOW)
    assert again.quarantined == len(bad)
    assert len(list_quarantine(engine, system="stripe")) == len(bad)


def test_a_page_the_store_cannot_hold_stops_only_its_stream(
    engine: Engine, store: Store, vendor_samples: Samples
) -> None:
    """A vendor page with a NaN (Python's JSON parser accepts it) fails its stream with a reason; the other streams still land."""
    customer = vendor_samples[("stripe", "customers")]
    invoice = vendor_samples[("stripe", "invoices")]
    connector = ScriptedStripe(
        {
            "customers": _page(
                "customers",
                [_with(customer, "cus_ok"), _with(customer, "cus_nan", balance=float("nan"))],
            ),
            "invoices": _page("invoices", [_with(invoice, "in_ok")]),
        }
    )
    results = {r.stream: r for r in pull(store, connector)}  # type: ignore[arg-type]
    assert not results["customers"].ok
    assert "JSON" in (results["customers"].error or "")
    assert results["invoices"].ok
    assert (
        store.get_source_record("stripe", "customers", "cus_ok") is None
    )  # one transaction per page
    assert store.get_source_record("stripe", "invoices", "in_ok") is not None
    assert store.load_cursor("stripe", "customers").value is None
