"""Shared database fixtures: every database test runs on SQLite and on PostgreSQL.

* ``database_url`` (parametrized, ids ``sqlite`` and ``postgresql``): a database migrated to
  head with empty tables, private to the test.
  - SQLite: a copy of a template file migrated once per session, in the test's ``tmp_path``.
  - PostgreSQL: a database created once per session (per xdist worker) on the server at
    ``LEDGERLINK_TEST_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
    migrated once, dropped at the end; every test starts with its tables truncated.
  Two runs on the same server never see each other's rows, and migrations run once per session.
  Databases left by runs of this host that were killed before their teardown are dropped when
  the next run starts.
* ``engine`` and ``store``: an engine and a :class:`~ledgerlink.store.Store` on that database.
* ``empty_database_url`` (parametrized the same way): a database with no tables at all, for
  migration tests (a fresh SQLite file; a fresh PostgreSQL schema through ``search_path``).

When PostgreSQL cannot be reached the PostgreSQL tests fail (never skip), so CI cannot pass
without it. The terminal summary says how many tests ran on each database; with pytest-xdist
(``-n``) each worker hands its counts to the controller, which prints the total.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import URL, Engine, make_url

from ledgerlink.store import Store, create_engine_for, head_revision, upgrade
from ledgerlink.store.models import Customer, CustomerLink

pytest_plugins = ["tests.secret_scan"]

# The CLI's consoles fix their width from COLUMNS when ledgerlink.cli is imported, after which
# the COLUMNS a CLI test passes (CliRunner env) is ignored. pytest-xdist workers start with
# COLUMNS=80 set, so tables and long paths would wrap or be cut there and not in one process.
os.environ.pop("COLUMNS", None)

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
_DATABASE_FIXTURES = ("database_url", "empty_database_url")
_tests_by_backend: dict[str, set[str]] = {backend: set() for backend in BACKENDS}
# Names the databases of this host's runs, so a run only ever cleans up after its own host.
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _pg_server_url() -> URL:
    url = make_url(os.environ.get("LEDGERLINK_TEST_DATABASE_URL") or DEFAULT_TEST_DATABASE_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def _libpq_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _drop_databases_of_dead_runs(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop databases left by runs of this host that were killed before their teardown."""
    prefix = f"ledgerlink_test_{_HOST_TAG}_"
    names = admin.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
    ).fetchall()
    for (name,) in names:
        pid = str(name)[len(prefix) :].split("_", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[URL]:
    """A PostgreSQL database private to this test session, migrated to head."""
    server = _pg_server_url()
    try:
        admin = psycopg.connect(_libpq_dsn(server), autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {server.render_as_string(hide_password=True)} "
            f"({exc.__class__.__name__}: {str(exc).strip()}). Start it or point "
            "LEDGERLINK_TEST_DATABASE_URL at a server where the user may create databases.",
            pytrace=False,
        )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"ledgerlink_test_{_HOST_TAG}_{os.getpid()}_{worker}_{uuid.uuid4().hex[:6]}"
    with admin:
        _drop_databases_of_dead_runs(admin)
        admin.execute(f'CREATE DATABASE "{name}"')
        url = server.set(database=name)
        try:
            upgrade(_render(url))
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _pg_admin_engine(_pg_database: URL) -> Iterator[Engine]:
    """An engine on the session's PostgreSQL database, used to reset it between tests."""
    engine = create_engine_for(_pg_database)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests get copies of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


def _reset_postgresql(engine: Engine) -> None:
    """Bring the session database back to head with every table empty."""
    with engine.begin() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if version != head_revision():
        upgrade(engine)
    with engine.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars()
        names = ", ".join(f'"{name}"' for name in tables)
        if names:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database at head with empty tables, private to this test."""
    backend: str = request.param
    if backend == "sqlite":
        path = tmp_path / "ledgerlink.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        _reset_postgresql(request.getfixturevalue("_pg_admin_engine"))
        url = _render(request.getfixturevalue("_pg_database"))
    _tests_by_backend[backend].add(request.node.nodeid)
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a database without any table, private to this test (for migration tests)."""
    backend: str = request.param
    if backend == "sqlite":
        _tests_by_backend[backend].add(request.node.nodeid)
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    engine: Engine = request.getfixturevalue("_pg_admin_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    _tests_by_backend[backend].add(request.node.nodeid)
    url: URL = request.getfixturevalue("_pg_database")
    try:
        yield _render(url.update_query_dict({"options": f"-csearch_path={schema}"}))
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database (at head, empty tables), disposed of afterwards."""
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    """A :class:`~ledgerlink.store.Store` on the test's database."""
    return Store(engine)


LinkCustomer = Callable[..., None]


@pytest.fixture
def link_customer(store: Store) -> LinkCustomer:
    """``link_customer(*records, customer="cust-1", name="Acme", at=...)``: make a golden
    customer (unless it exists) and link ``records`` ((system, object, external id)) to it, as
    matching does."""

    def link(
        *records: tuple[str, str, str],
        customer: str = "cust-1",
        name: str = "Acme",
        at: datetime = datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    ) -> None:
        table = Customer.__table__  # type: ignore[attr-defined]
        with store.engine.begin() as conn:
            if conn.execute(select(table.c.id).where(table.c.id == customer)).first() is None:
                conn.execute(
                    insert(table).values(
                        id=customer,
                        display_name=name,
                        fields={},
                        lineage={},
                        created_at=at,
                        updated_at=at,
                        version=1,
                    )
                )
            conn.execute(
                insert(CustomerLink.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "system": system,
                        "object": obj,
                        "external_id": external_id,
                        "customer_id": customer,
                        "score": 1.0,
                        "method": "xref",
                        "status": "linked",
                        "reasons": [],
                        "created_at": at,
                        "updated_at": at,
                    }
                    for system, obj, external_id in records
                ],
            )

    return link


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the PostgreSQL variants of database tests with ``postgres``; run slow files first.

    The files holding a test marked ``slow`` go first, in their collected order (each file's
    tests stay together and in order), so that with xdist (``--dist loadfile``) the longest
    files start at once and the short ones fill in around them.
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        if any(callspec.params.get(name) == "postgresql" for name in _DATABASE_FIXTURES):
            item.add_marker(pytest.mark.postgres)
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the tests it ran per database to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["database_tests"] = {
            backend: sorted(nodeids) for backend, nodeids in _tests_by_backend.items()
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """On the xdist controller, add up the tests each finished worker ran per database."""
    workeroutput: dict[str, Any] = getattr(node, "workeroutput", None) or {}
    for backend, nodeids in workeroutput.get("database_tests", {}).items():
        _tests_by_backend[backend].update(nodeids)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many tests ran against each database (with xdist, on all workers together)."""
    terminalreporter.write_line(
        f"database tests: {len(_tests_by_backend['postgresql'])} on postgresql, "
        f"{len(_tests_by_backend['sqlite'])} on sqlite"
    )
