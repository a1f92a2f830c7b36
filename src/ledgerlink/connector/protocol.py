"""The connector contract: what a plugin provides and what the core expects of it.

A connector is stateless. The core asks it to ``read`` a stream from a :class:`Cursor` and
receives :class:`Page` values, each with its records and the cursor valid *after* it; the sync
engine stores a page's records and its cursor in one transaction, so a crash never skips or
half-applies a page. The core asks it to ``write`` :class:`WriteOp` values that already carry
their idempotency key (persisted in the outbox before any call) and receives one
:class:`WriteResult` per operation.

Connectors are found through the ``ledgerlink.connectors`` entry-point group; the object an
entry point names is a :class:`ConnectorPlugin`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from ledgerlink.connector.errors import ConnectorError

if TYPE_CHECKING:
    from ledgerlink.connector.roster import Roster
    from ledgerlink.connector.sandbox import FaultInjector

__all__ = [
    "CheckItem",
    "CheckReport",
    "Connector",
    "ConnectorContext",
    "ConnectorPlugin",
    "Cursor",
    "Page",
    "Prefetching",
    "Record",
    "Sandbox",
    "SandboxOptions",
    "SecretStore",
    "Stream",
    "WriteAction",
    "WriteOp",
    "WriteResult",
    "WriterSpec",
]

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stream:
    """Description of one readable object of a system.

    Attributes:
        name: the vendor's object name (``Account``, ``customers``, ``Invoice``).
        entity: the canonical entity it feeds (``party``, ``contact``, ``invoice``, ...).
        primary_key: field holding the record's id in the payload.
        cursor_field: field the incremental cursor follows, or None for full refresh only.
        lookback: overlap re-read before the cursor so late commits are not missed.
        writable: whether the connector can write this object.
        supports_deletes: whether reads report deletions as tombstones.
    """

    name: str
    entity: str
    primary_key: str = "id"
    cursor_field: str | None = None
    lookback: timedelta = timedelta(0)
    writable: bool = False
    supports_deletes: bool = True


@dataclass(frozen=True, slots=True)
class Cursor:
    """Immutable position in a stream.

    ``value`` is the last cursor value landed (an ISO-8601 UTC timestamp, an event time, ...).
    ``boundary_ids`` are the ids already landed at exactly that value, so a re-read from the
    boundary (closed start) can drop them. ``state`` holds connector-specific JSON (read mode,
    a bulk job id, the time of the last full list) and must stay small.
    """

    value: str | None = None
    boundary_ids: frozenset[str] = frozenset()
    state: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        """Return a JSON-safe dict for storage in ``sync_state``."""
        return {
            "value": self.value,
            "boundary_ids": sorted(self.boundary_ids),
            "state": dict(self.state),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cursor:
        """Rebuild a cursor from :meth:`to_json` output; None gives the initial cursor."""
        if not data:
            return cls()
        return cls(
            value=data.get("value"),
            boundary_ids=frozenset(data.get("boundary_ids") or ()),
            state=dict(data.get("state") or {}),
        )

    def observe(self, records: Iterable[Record]) -> Cursor:
        """Return the cursor after landing ``records`` (cursor values must be comparable strings).

        The new value is the greatest ``cursor_value`` seen; ``boundary_ids`` collects every id
        at that value, merged with the current ones when the value did not move.
        """
        value = self.value
        ids = set(self.boundary_ids)
        for record in records:
            cv = record.cursor_value
            if cv is None:
                continue
            if value is None or cv > value:
                value = cv
                ids = {record.id}
            elif cv == value:
                ids.add(record.id)
        return replace(self, value=value, boundary_ids=frozenset(ids))

    def with_state(self, **changes: Any) -> Cursor:
        """Return a copy whose connector state has ``changes`` applied (None removes a key)."""
        state = dict(self.state)
        for key, val in changes.items():
            if val is None:
                state.pop(key, None)
            else:
                state[key] = val
        return replace(self, state=state)


@dataclass(frozen=True, slots=True)
class Record:
    """One raw record read from a system, or a tombstone when ``deleted`` is true."""

    object: str
    id: str
    payload: Mapping[str, Any]
    deleted: bool = False
    cursor_value: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """A batch of records and the cursor that is valid once they are stored."""

    stream: str
    records: Sequence[Record]
    cursor: Cursor


class WriteAction(enum.StrEnum):
    """What a write operation does on the target."""

    CREATE = "create"
    UPDATE = "update"
    UPSERT = "upsert"
    DELETE = "delete"
    VOID = "void"
    """Cancel a posted document in place (QuickBooks ``operation=void``: it keeps its Id)."""


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """What a connector can write: object, actions, batch size, external-id field for upserts."""

    object: str
    actions: frozenset[WriteAction]
    batch_size: int = 1
    external_id_field: str | None = None


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One write to a target system.

    Attributes:
        idempotency_key: deterministic key from the outbox row; the connector passes it to the
            vendor's idempotency mechanism (``Idempotency-Key``, ``requestid``, external id).
        object: target object (``Account``, ``customers``, ``Invoice``).
        action: create, update, upsert, delete or void.
        payload: fields to write, in the vendor's names.
        remote_id: the target's id, for update, delete and void.
        external_id: the external-id value, for upsert.
    """

    idempotency_key: str
    object: str
    action: WriteAction
    payload: Mapping[str, Any]
    remote_id: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one :class:`WriteOp`: the target's id, or the classified error."""

    idempotency_key: str
    remote_id: str | None = None
    error: ConnectorError | None = None
    replayed: bool = False
    response: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the write took effect (or was already in effect)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One named check of ``Connector.check`` with its outcome."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Result of ``Connector.check``: credentials, permissions, reachable endpoints."""

    items: Sequence[CheckItem]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(item.ok for item in self.items)


@runtime_checkable
class SecretStore(Protocol):
    """Durable, encrypted storage for credentials a connector rotates (OAuth refresh tokens)."""

    def get(self, name: str) -> str | None:
        """Return the stored secret ``name`` or None."""
        ...

    def put(self, name: str, value: str) -> None:
        """Store ``value`` durably (committed before returning)."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the core hands a connector at connect time."""

    secrets: SecretStore
    run_id: str = ""


@runtime_checkable
class Connector(Protocol):
    """A connected, stateless client of one system."""

    name: str

    def streams(self) -> Sequence[Stream]:
        """Return the streams this connection can read."""
        ...

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield pages of ``stream`` from ``cursor`` (lazily; the last page may be empty).

        Raises:
            ConnectorError: a subclass naming what the caller should do.
        """
        ...

    def writers(self) -> Sequence[WriterSpec]:
        """Return what this connection can write."""
        ...

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        """Apply ``ops`` (batched as the vendor allows), yielding one result per operation."""
        ...

    def check(self) -> CheckReport:
        """Validate credentials and permissions."""
        ...

    def close(self) -> None:
        """Release network clients."""
        ...


@runtime_checkable
class Prefetching(Protocol):
    """A connector that can start several streams' reads in fewer calls (optional).

    The pull loop calls :meth:`prefetch` with every stream's stored cursor before reading
    them one by one; the connector may fetch what those reads will ask first in one call
    (Salesforce ``/composite``) and serve it to :meth:`Connector.read` from the same cursor.
    What it fetched must not change what the reads yield, only how many calls they cost.
    """

    def prefetch(self, cursors: Mapping[str, Cursor]) -> None:
        """Fetch ahead for reads from ``cursors`` (stream name -> stored cursor).

        Must not raise :class:`~ledgerlink.connector.errors.ConnectorError`: on failure the
        reads ask on their own and report their errors.
        """
        ...


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """How to seed and run a connector's sandbox.

    Attributes:
        seed: random seed; the same seed gives the same data.
        size: number of top-level customers/accounts to seed.
        port: TCP port on 127.0.0.1, 0 for any free port.
        roster: companies shared by every system's sandbox; when given, a sandbox seeds its
            customers (Salesforce Account, Stripe customer, QuickBooks Customer) from
            ``roster.rows(<its name>)`` instead of inventing them, and ``size`` is ignored for
            them (what hangs off customers, such as Stripe subscriptions, follows the roster).
    """

    seed: int = 7
    size: int = 50
    port: int = 0
    roster: Roster | None = None


@runtime_checkable
class Sandbox(Protocol):
    """A running fake of a vendor API on loopback.

    ``faults`` switches faults on and off and counts the requests served (the server-side
    truth of how many API calls a client made).
    """

    base_url: str
    faults: FaultInjector

    def connector_settings(self) -> dict[str, Any]:
        """Return settings with which ``ConnectorPlugin.connect`` reaches this sandbox."""
        ...

    def stop(self) -> None:
        """Stop serving."""
        ...


@runtime_checkable
class ConnectorPlugin(Protocol):
    """The object an entry point of group ``ledgerlink.connectors`` names."""

    name: str
    version: str
    description: str
    settings_model: type[BaseModel]

    def stream_catalog(self) -> Sequence[Stream]:
        """Return every stream the connector can read, without connecting."""
        ...

    def connect(self, settings: Mapping[str, Any], context: ConnectorContext) -> Connector:
        """Validate ``settings`` against ``settings_model`` and return a connection.

        Raises:
            ConfigurationError: the settings are invalid.
        """
        ...

    def start_sandbox(self, options: SandboxOptions) -> Sandbox:
        """Start this system's sandbox on loopback and return it, serving."""
        ...
