"""Landing CSV files in the store (SQLite and PostgreSQL): counts, atomicity, the command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.csvimport import FileRefusedError, import_file
from ledgerlink.store import Store
from ledgerlink.store.models import SourceRecord

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]

HEADER = "id,Name,Email,Address Line1,Address Country,Created (UTC)\n"


def customers(count: int, start: int = 0, name: str = "Customer") -> str:
    return HEADER + "".join(
        f"cus_{i:05d},{name} {i},c{i}@example.com,{i} Main St,US,2024-01-15 10:00:00\n"
        for i in range(start, start + count)
    )


def stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(_SOURCE.c.external_id, _SOURCE.c.payload)).all()
    return {
        ext_id: json.loads(payload) if isinstance(payload, str) else payload
        for ext_id, payload in rows
    }


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_SOURCE)).scalar_one())


def test_file_lands_as_source_records(store: Store, engine: Engine, tmp_path: Path) -> None:
    """Every valid row lands under the connector's system/object/id with its nested payload."""
    path = tmp_path / "customers.csv"
    path.write_text(customers(3))
    summary = import_file(store, path, system="stripe", object_name="customer", now=NOW)
    assert (summary.rows, summary.result.inserted, summary.problems) == (3, 3, [])
    record = store.get_source_record("stripe", "customers", "cus_00001")
    assert record is not None
    assert record.payload["address"] == {"line1": "1 Main St", "country": "US"}
    assert record.payload["created"] == 1705312800


def test_reimport_counts_updated_and_unchanged(
    store: Store, engine: Engine, tmp_path: Path
) -> None:
    """Importing a newer export updates changed rows, leaves identical ones, adds new ones."""
    first = tmp_path / "first.csv"
    first.write_text(customers(4))
    import_file(store, first, system="stripe", object_name="customers", now=NOW)
    second = tmp_path / "second.csv"
    second.write_text(customers(2) + customers(3, start=2, name="Renamed")[len(HEADER) :])
    summary = import_file(store, second, system="stripe", object_name="customers", now=NOW)
    assert (summary.result.inserted, summary.result.updated, summary.result.unchanged) == (1, 2, 2)
    assert stored(engine)["cus_00003"]["name"] == "Renamed 3"


def test_rejected_rows_do_not_stop_the_rest(store: Store, engine: Engine, tmp_path: Path) -> None:
    """Ragged and duplicate rows are reported; the file's other rows land."""
    path = tmp_path / "mixed.csv"
    path.write_text(customers(3) + "cus_00001,Dup,,,,\ncus_9,short\n")
    summary = import_file(store, path, system="stripe", object_name="customers", now=NOW)
    assert [p.line for p in summary.problems] == [5, 6]
    assert count(engine) == 3


def test_failure_mid_file_leaves_nothing(
    store: Store, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When landing fails after some batches were written, none of the file's rows remain."""
    path = tmp_path / "big.csv"
    path.write_text(customers(10))
    store.batch_size = 3
    real_land = store._land
    calls = []

    def failing_land(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_land(*args, **kwargs)

    monkeypatch.setattr(store, "_land", failing_land)
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(store, path, system="stripe", object_name="customers", now=NOW)
    assert len(calls) == 3
    assert count(engine) == 0


def test_refused_file_lands_nothing(store: Store, engine: Engine, tmp_path: Path) -> None:
    """A file with a refused encoding on its last line lands none of its earlier rows."""
    path = tmp_path / "bad.csv"
    path.write_bytes(customers(5).encode() + "cus_x,Caf\u00e9,,,,\n".encode() + b"cus_y,\xff\n")
    with pytest.raises(FileRefusedError) as refused:
        import_file(store, path, system="stripe", object_name="customers", now=NOW)
    assert refused.value.line == 8
    assert count(engine) == 0


runner = CliRunner()


def invoke(database_url: str, *args: str) -> Any:
    return runner.invoke(
        app, ["import", "csv", *args], env={"LEDGERLINK_DATABASE__URL": database_url}
    )


def test_command_prints_summary_and_exits_0(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """`import csv` prints rows/inserted/updated/unchanged/problems and exits 0 on a clean file."""
    path = tmp_path / "accounts.csv"
    path.write_text("Account ID,Account Name,Billing City\n001A,Acme,Paris\n001B,Beta,Lyon\n")
    result = invoke(database_url, "--system", "salesforce", "--object", "Account", str(path))
    assert result.exit_code == 0, result.output
    assert "2 rows" in result.output
    assert "2 inserted, 0 updated, 0 unchanged, 0 problems" in result.output
    assert stored(engine)["001A"]["BillingCity"] == "Paris"


def test_command_exits_1_on_rejected_rows(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Rejected rows are listed with their lines and the command exits 1; the rest land."""
    good = tmp_path / "good.csv"
    good.write_text("Ref,Customer\n1,Acme\n1,Again\n")
    refused = tmp_path / "refused.csv"
    refused.write_bytes("Ref,Customer\n2,B\n".encode("utf-16"))
    result = invoke(
        database_url,
        "--system",
        "quickbooks",
        "--object",
        "Customer",
        "--map",
        "Ref=Id",
        str(good),
        str(refused),
    )
    assert result.exit_code == 1
    assert "line 3: duplicate id 1 (first on line 2)" in result.output
    assert "UTF-16" in result.output
    assert list(stored(engine)) == ["1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--system", "hubspot", "--object", "x"], "known systems: quickbooks, salesforce, stripe"),
        (["--system", "stripe", "--object", "Account"], "known objects: customers"),
        (["--system", "stripe", "--object", "customers", "--map", "nofield"], "COLUMN=FIELD"),
    ],
)
def test_command_usage_errors_exit_2(
    database_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    """Unknown systems/objects and malformed --map exit 2 with a message naming the fix."""
    path = tmp_path / "any.csv"
    path.write_text(customers(1))
    result = invoke(database_url, *args, str(path))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_progress_reports_bytes_up_to_the_file_size(
    store: Store, engine: Engine, tmp_path: Path
) -> None:
    """The progress callback sees bytes read grow to the file's size as batches land."""
    path = tmp_path / "customers.csv"
    path.write_text(customers(5000))
    store.batch_size = 1000
    seen: list[tuple[int, int]] = []
    import_file(
        store,
        path,
        system="stripe",
        object_name="customers",
        now=NOW,
        progress=lambda done, total: seen.append((done, total)),
    )
    size = path.stat().st_size
    assert len(seen) >= 5
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (size, size)
    assert all(total == size for _, total in seen)
