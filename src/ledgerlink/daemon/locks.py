"""Job locks: at most one replica runs a singleton job at a time.

On PostgreSQL a lock is a session-level advisory lock (``pg_try_advisory_lock``) on a 64-bit
key derived from the job name, held on a connection of its own for as long as the job runs.
When a replica dies, PostgreSQL ends its session and the lock goes with it, so a crashed
replica never blocks the others. On SQLite (a single replica only) a lock is a process-local
non-blocking mutex, and :class:`ReplicaGuard` makes a second ``ledgerlink serve`` on the same
SQLite file refuse to start.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ledgerlink.log import get_logger

__all__ = [
    "JobLocks",
    "LocalJobLocks",
    "PostgresJobLocks",
    "ReplicaGuard",
    "ReplicaRefusedError",
    "advisory_key",
    "locks_for",
]

_log = get_logger(component="daemon.locks")


def advisory_key(name: str) -> int:
    """Return the signed 64-bit advisory-lock key of ``name`` (stable across processes).

    Args:
        name: the job name, e.g. ``pull:stripe:invoices``.

    Returns:
        An integer in PostgreSQL's ``bigint`` range.
    """
    digest = hashlib.blake2b(f"ledgerlink:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class JobLocks(Protocol):
    """Try-locks by name, shared by every replica that can see the same database."""

    def hold(self, name: str) -> AbstractContextManager[bool]:
        """Context manager yielding True while the lock is held, False when someone else has it."""
        ...


class LocalJobLocks:
    """Process-local try-locks: enough for one replica (the only mode SQLite supports)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[str] = set()

    def __repr__(self) -> str:
        return f"LocalJobLocks(held={len(self._held)})"

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True and hold ``name`` unless this process already holds it (then yield False)."""
        with self._guard:
            if name in self._held:
                acquired = False
            else:
                self._held.add(name)
                acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                with self._guard:
                    self._held.discard(name)


class PostgresJobLocks:
    """Session-level advisory locks, each on a dedicated connection held while the job runs.

    Args:
        engine: an engine on the shared PostgreSQL database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"PostgresJobLocks(url={self._engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True while holding the advisory lock of ``name``, False when another session has it.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
        """
        key = advisory_key(name)
        conn = self._engine.connect()
        try:
            acquired = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            )
            conn.commit()  # end the implicit transaction: the lock is session-level
            try:
                yield acquired
            finally:
                if acquired:
                    _unlock(conn, key, name)
        finally:
            conn.close()


def _unlock(conn: Connection, key: int, name: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        conn.commit()
    except SQLAlchemyError as exc:
        # The session is gone or broken: drop the connection, which ends the session and
        # with it the lock, instead of returning a connection that may still hold it.
        _log.warning("lock.release_failed", job=name, error=type(exc).__name__)
        conn.invalidate()


def locks_for(engine: Engine) -> PostgresJobLocks | LocalJobLocks:
    """Return advisory locks on PostgreSQL, process-local locks otherwise."""
    if engine.dialect.name == "postgresql":
        return PostgresJobLocks(engine)
    return LocalJobLocks()


class ReplicaRefusedError(RuntimeError):
    """Another ``ledgerlink serve`` already runs on this SQLite database."""


class ReplicaGuard:
    """Make ``ledgerlink serve`` a single replica on SQLite, through a lock file beside the database.

    The lock is an ``flock`` on ``<database>.serve.lock``: the kernel releases it when the
    process ends, however it ends. On PostgreSQL the guard does nothing (replicas are welcome).

    Args:
        engine: the store's engine.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        self._path: Path | None = None
        if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            self._path = Path(f"{database}.serve.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the replica lock.

        Raises:
            ReplicaRefusedError: another process holds it.
        """
        if self._path is None:
            return
        handle = self._path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            msg = (
                f"another `ledgerlink serve` already runs on this SQLite database "
                f"(lock {self._path}); SQLite supports one replica only, use PostgreSQL "
                "to run several"
            )
            raise ReplicaRefusedError(msg) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Release the replica lock (no-op when not held)."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
