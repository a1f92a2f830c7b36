"""Normalising landed records on the store: quarantine of bad records, idempotent and retryable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ledgerlink.connector.protocol import Record
from ledgerlink.domain import Money, Party, SourceRef
from ledgerlink.mapping import (
    MappingSet,
    Normalizer,
    get_quarantine,
    iter_normalized,
    list_quarantine,
    load_mappings,
    normalize_changed,
    quarantine_record,
    retry_quarantined,
)
from ledgerlink.store import Quarantine, Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings()


def customer(number: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"cus_{number}",
        "object": "customer",
        "name": f"Customer {number}",
        "email": f"billing{number}@example.com",
        "currency": "usd",
        "created": 1_700_000_000 + number,
        **changes,
    }


def land(store: Store, payloads: list[dict[str, Any]], now: datetime, **kw: Any) -> None:
    store.land("stripe", [Record("customers", p["id"], p, **kw) for p in payloads], now=now)


def quarantine_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Quarantine)).scalar_one())


def test_bad_record_is_quarantined_and_the_others_map(
    store: Store, engine: Engine, mappings: MappingSet
) -> None:
    """One unmappable record goes to quarantine with stage map and reason; the rest map."""
    land(store, [customer(1), customer(2, currency="zzz"), customer(3)], T0)
    report = normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    assert (report.mapped, report.quarantined) == (2, 1)
    assert [e.source.id for e in report.entities] == ["cus_1", "cus_3"]
    assert all(isinstance(e, Party) for e in report.entities)
    (row,) = list_quarantine(engine)
    assert (row.system, row.object, row.external_id, row.stage) == (
        "stripe",
        "customers",
        "cus_2",
        "map",
    )
    assert "currency (from currency): unknown currency code 'zzz'" in row.reason
    assert row.payload["currency"] == "zzz"
    assert row.resolved_at is None


def test_the_same_failing_record_keeps_one_quarantine_row(
    store: Store, engine: Engine, mappings: MappingSet
) -> None:
    """Failing again updates the record's one quarantine row instead of adding rows."""
    land(store, [customer(2, currency="zzz")], T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0 + timedelta(minutes=5))
    land(store, [customer(2, currency="zzz", name="   ")], T0 + timedelta(minutes=10))
    later = T0 + timedelta(minutes=10)
    normalize_changed(engine, mappings, "stripe", since=later, now=later)
    assert quarantine_rows(engine) == 1
    (row,) = list_quarantine(engine)
    assert "name (from name) is required" in row.reason
    assert row.payload["name"] == "   "


def test_a_fixed_record_resolves_its_quarantine_row(
    store: Store, engine: Engine, mappings: MappingSet
) -> None:
    """When the source fixes the record, the next run maps it and resolves the row."""
    land(store, [customer(2, currency="zzz")], T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    fixed_at = T0 + timedelta(hours=1)
    land(store, [customer(2, currency="eur")], fixed_at)
    report = normalize_changed(engine, mappings, "stripe", since=fixed_at, now=fixed_at)
    assert report.mapped == 1
    assert list_quarantine(engine) == []
    (row,) = list_quarantine(engine, include_resolved=True)
    assert row.resolved_at == fixed_at


def test_open_quarantine_is_retried_each_run_and_mapping_fixes_release_it(
    store: Store, engine: Engine, mappings: MappingSet, tmp_path: Path
) -> None:
    """A quarantined record is tried again every run, so fixing the mapping releases it."""
    land(store, [customer(1), customer(2, currency="zzz")], T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    later = T0 + timedelta(hours=2)
    report = normalize_changed(engine, mappings, "stripe", since=later, now=later)
    assert (report.mapped, report.quarantined) == (0, 1)
    (tmp_path / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n"
        "      currency: {from: currency, transforms: [{lookup: {table: {zzz: USD}, keep_unknown: true}}, currency]}\n"
    )
    fixed = load_mappings(tmp_path)
    report = normalize_changed(engine, fixed, "stripe", since=later, now=later)
    assert report.mapped == 1
    assert report.entities[0].source == SourceRef(system="stripe", object="customers", id="cus_2")
    assert report.entities[0].currency == "USD"
    assert list_quarantine(engine) == []


def test_retry_resolves_and_the_next_cycle_passes_the_record_on(
    store: Store, engine: Engine, mappings: MappingSet, tmp_path: Path
) -> None:
    """`quarantine retry` resolves a record that maps now, and the next cycle includes it."""
    land(store, [customer(2, currency="zzz"), customer(3, currency="qqq")], T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    rows = {row.external_id: row.id for row in list_quarantine(engine)}
    (tmp_path / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      currency: {const: EUR}\n"
    )
    fixed = load_mappings(tmp_path)
    retried_at = T0 + timedelta(hours=3)
    outcomes = retry_quarantined(engine, fixed, ids=[rows["cus_2"], 999], now=retried_at)
    assert [(o.id, o.ok) for o in outcomes] == [(rows["cus_2"], True), (999, False)]
    assert outcomes[1].reason == "not found"
    still = retry_quarantined(engine, mappings, ids=None, now=retried_at)
    assert [(o.ref.id, o.ok) for o in still] == [("cus_3", False)]
    assert "unknown currency code 'qqq'" in (still[0].reason or "")
    report = normalize_changed(
        engine, fixed, "stripe", since=T0 + timedelta(hours=1), now=retried_at
    )
    assert sorted(e.source.id for e in report.entities) == ["cus_2", "cus_3"]
    assert all(e.currency == "EUR" for e in report.entities if isinstance(e, Party))
    assert list_quarantine(engine) == []


def test_a_kept_reader_skips_records_still_waiting_but_maps_those_released_since(
    store: Store, engine: Engine, mappings: MappingSet, tmp_path: Path
) -> None:
    """Without ``waiting`` (a kept matcher, whose mappings quarantined them), an unchanged
    record still in quarantine is not mapped again, one released by a retry since is, and so
    is one changed since; each once, in the order they were landed."""
    land(store, [customer(n, currency="zzz") for n in (2, 3, 4)] + [customer(5)], T0)
    normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    rows = {row.external_id: row.id for row in list_quarantine(engine)}
    (tmp_path / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      currency: {const: EUR}\n"
    )
    retried_at = T0 + timedelta(hours=2)
    retry_quarantined(engine, load_mappings(tmp_path), ids=[rows["cus_3"]], now=retried_at)
    land(store, [customer(4, currency="eur")], retried_at)
    since = T0 + timedelta(hours=1)
    seen = [
        (outcome.ref.id, outcome.error is None)
        for outcome in iter_normalized(
            engine, mappings, "stripe", since=since, now=retried_at, waiting=False, batch_size=1
        )
    ]
    assert seen == [("cus_4", True), ("cus_3", False)]
    waiting = [
        outcome.ref.id
        for outcome in iter_normalized(engine, mappings, "stripe", since=since, now=retried_at)
    ]
    assert waiting == ["cus_4", "cus_2", "cus_3"]


def test_tombstones_unmapped_objects_and_paging(
    store: Store, engine: Engine, mappings: MappingSet
) -> None:
    """Deletions are reported, unmapped objects counted, and small pages cover every record."""
    land(store, [customer(n) for n in range(1, 6)], T0)
    store.land("stripe", [Record("dispute", "dp_1", {"id": "dp_1"})], now=T0)
    land(store, [customer(4)], T0 + timedelta(minutes=1), deleted=True)
    report = normalize_changed(engine, mappings, "stripe", since=None, now=T0, batch_size=2)
    assert report.mapped == 4
    assert report.deleted_refs == [SourceRef(system="stripe", object="customers", id="cus_4")]
    assert report.unmapped == 1
    only_since = normalize_changed(
        engine, mappings, "stripe", since=T0 + timedelta(minutes=1), now=T0, batch_size=2
    )
    assert (only_since.mapped, only_since.deleted) == (0, 1)


def test_quarantine_record_helper_and_lookup(engine: Engine) -> None:
    """quarantine_record inserts once per record and stage, and get_quarantine reads it back."""
    with engine.begin() as conn:
        first = quarantine_record(
            conn,
            system="quickbooks",
            object_name="Invoice",
            external_id="9",
            stage="plan",
            reason="no customer link",
            payload={"Id": "9", "TotalAmt": 10.5},
            now=T0,
        )
        again = quarantine_record(
            conn,
            system="quickbooks",
            object_name="Invoice",
            external_id="9",
            stage="plan",
            reason="still no link",
            payload={"Id": "9"},
            now=T0,
        )
    assert first == again
    row = get_quarantine(engine, first)
    assert row is not None
    assert (row.reason, row.payload, row.created_at) == ("still no link", {"Id": "9"}, T0)
    assert get_quarantine(engine, first + 1) is None
    outcome = retry_quarantined(engine, load_mappings(), ids=[first], now=T0)
    assert outcome[0].ok is False
    assert "retried by its own step" in (outcome[0].reason or "")
    with pytest.raises(ValueError, match=r"'nope'"), engine.begin() as conn:
        quarantine_record(
            conn,
            system="s",
            object_name="o",
            external_id="1",
            stage="nope",
            reason="r",
            payload={},
            now=T0,
        )


def test_money_survives_the_store_exactly(
    store: Store, engine: Engine, mappings: MappingSet
) -> None:
    """An invoice landed as JSON and normalised from the store keeps exact Money."""
    invoice = {
        "id": "in_1",
        "customer": "cus_1",
        "currency": "kwd",
        "status": "open",
        "total": 1005,
        "amount_due": 1005,
        "created": 1_700_000_000,
        "lines": {"data": []},
    }
    store.land("stripe", [Record("invoices", "in_1", invoice)], now=T0)
    report = normalize_changed(engine, mappings, "stripe", since=None, now=T0)
    (entity,) = report.entities
    assert entity.total == Money(1005, "KWD")  # type: ignore[attr-defined]


def test_an_unexpected_error_quarantines_only_that_record(
    store: Store, engine: Engine, mappings: MappingSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met while mapping one record quarantines it with the error and the rest still map."""
    land(store, [customer(1), customer(2), customer(3)], T0)
    normalizer = Normalizer(mappings)
    mapper = normalizer.mapper("stripe", "customers")
    assert mapper is not None
    original = mapper.map

    def flaky(external_id: str, payload: Any) -> Any:
        if external_id == "cus_2":
            raise ZeroDivisionError("division by zero")
        return original(external_id, payload)

    monkeypatch.setattr(mapper, "map", flaky)
    report = normalize_changed(engine, normalizer, "stripe", since=None, now=T0)
    assert (report.mapped, report.quarantined) == (2, 1)
    (row,) = list_quarantine(engine)
    assert row.external_id == "cus_2"
    assert row.reason == "unexpected ZeroDivisionError while mapping: division by zero"
