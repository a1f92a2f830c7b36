"""The landed party and billing records the customer planner reads, mapped.

Mapping a landed record (its JSON parsed, then validated into a domain entity) is most of what
a plan costs: with a million invoices and payments landed, reading and mapping them all takes
minutes, on every plan, even when a handful changed. :class:`MappedRecords` keeps the mapped
records of one store between plans of a long-running process (the daemon, a benchmark's
cycles) and reads again only the records whose ``changed_at`` moved since the newest change it
has seen (less :data:`LANDING_LOOKBACK`, for the clock's adjustments), using the
``(system, object, changed_at)`` index; :class:`ChangedRecords` fetches the payloads of only
those whose content or tombstone differs from what it gave before. A tombstone moves
``changed_at`` too, so deletions are seen. Without it (``ledgerlink sync run``, tests) every
plan reads everything, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection

from ledgerlink.domain.entities import (
    Invoice,
    InvoiceStatus,
    Party,
    Payment,
    PaymentStatus,
    SourceRef,
    Subscription,
)
from ledgerlink.domain.money import Money
from ledgerlink.mapping.apply import Normalizer
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.store.db import driver_rows
from ledgerlink.store.models import CustomerLink, LinkStatus, SourceRecord
from ledgerlink.sync._packed import pack, unpack

__all__ = [
    "LANDING_LOOKBACK",
    "LOOKBACK",
    "ChangedRecords",
    "InvoiceFacts",
    "LinkRow",
    "MappedRecord",
    "MappedRecords",
    "PassLinks",
    "PaymentFacts",
    "read_links",
    "read_mapped",
]

_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]

Key = tuple[str, str, str]
"""(system, object, external id) of a landed record."""

LinkRow = tuple[str, str, str, str]
"""(system, object, external id, customer id) of a linked record."""

LOOKBACK = timedelta(seconds=60)
"""How far back a reader of outbox rows by id looks (see
:class:`~ledgerlink.sync._ledger_world.KeptLedgerWorld`): a plan takes its rows' ids before it
commits, so a row may become visible after a higher one; kept to a few times the longest
write of a plan."""

LANDING_LOOKBACK = timedelta(seconds=5)
"""How far before the newest change seen a re-read of landed records starts. Landing
transactions run one at a time and stamp their records once they hold the landing lock (see
:meth:`ledgerlink.store.Store.landing_time`), so a landing that commits after a read carries a
``changed_at`` no earlier than the newest that read saw: the window is only for the clock's
own adjustments (NTP slewing it, a step back). Every refresh re-reads what landed within it:
a minute, as it was when landings took their time before waiting for the lock, made each
pass after a big landing compare hundreds of thousands of rows again."""


_WINDOW_CHUNK = 500


class ChangedRecords:
    """Reads, for a reader that keeps landed records between reads, what changed since.

    Each read asks the ``(system, object, changed_at)`` index for the records whose
    ``changed_at`` is at most :data:`LANDING_LOOKBACK` before the newest change seen, compares their
    content hash and tombstone with what it already gave for the same rows, and fetches the
    payloads of the others only: a quiet read costs one index range per object, not the
    window's payloads decoded again. The first read gives every live record.

    The window's rows come back as an id, a hash and two flags the database computes (deleted;
    within the next read's window), no timestamp: a pass reads the window several times (one
    reader per planner), and parsing each row's time was most of what that cost. The newest
    change comes from the index (``max(changed_at)`` per object, read before the range, so it
    never runs ahead of what the range gives).

    Use: :meth:`begin`, then :meth:`rows` for each (system, object), then :meth:`end`.
    """

    def __init__(self) -> None:
        self.newest: datetime | None = None
        self._given: dict[int, tuple[str, bool]] = {}
        self._seen: dict[int, tuple[str, bool]] = {}
        self._since: datetime | None = None
        self.read = 0
        """Records whose payload the last read fetched."""

    @property
    def first(self) -> bool:
        """Whether no read has ended yet (the next gives everything)."""
        return self.newest is None

    def start_at_newest(self, conn: Connection, kinds: Iterable[tuple[str, str]]) -> None:
        """Begin without a first read: the next read gives what changed within
        :data:`LANDING_LOOKBACK` of the newest change of ``kinds`` now (for a reader that loaded
        those records another way)."""
        for system, obj in kinds:
            self._newest_of(conn, system, obj)

    def _newest_of(self, conn: Connection, system: str, obj: str) -> None:
        newest = conn.execute(
            select(func.max(_SOURCE.c.changed_at)).where(
                _SOURCE.c.system == system, _SOURCE.c.object == obj
            )
        ).scalar_one_or_none()
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest

    def begin(self) -> None:
        """Start a read."""
        self._since = None if self.newest is None else self.newest - LANDING_LOOKBACK
        self._seen = {}
        self.read = 0

    def rows(self, conn: Connection, system: str, obj: str) -> Iterator[Any]:
        """The changed rows of one object (``external_id``, ``payload``, ``changed_at``,
        ``deleted_at``); tombstones only after the first read."""
        where = (_SOURCE.c.system == system, _SOURCE.c.object == obj)
        columns = (
            _SOURCE.c.id,
            _SOURCE.c.external_id,
            _SOURCE.c.payload,
            _SOURCE.c.changed_at,
            _SOURCE.c.deleted_at,
            _SOURCE.c.content_hash,
        )
        self._newest_of(conn, system, obj)
        if self.newest is None:
            return  # nothing of this object landed yet
        # Rows from here on are in the next read's window (whatever newer change a later
        # object brings, that window starts no earlier): remembered by :meth:`end`.
        keep_from = self.newest - LANDING_LOOKBACK
        if self._since is None:
            for row in conn.execute(select(*columns).where(*where, _SOURCE.c.deleted_at.is_(None))):
                if row.changed_at >= keep_from:
                    self._seen[row.id] = (row.content_hash, False)
                self.read += 1
                yield row
            return
        wanted = []
        for row_id, digest, gone, kept in conn.execute(
            select(
                _SOURCE.c.id,
                _SOURCE.c.content_hash,
                _SOURCE.c.deleted_at.is_not(None),
                _SOURCE.c.changed_at >= keep_from,
            ).where(*where, _SOURCE.c.changed_at >= self._since)
        ):
            state = (digest, bool(gone))
            if kept:
                self._seen[row_id] = state
            if self._given.get(row_id) != state:
                wanted.append(row_id)
        for start in range(0, len(wanted), _WINDOW_CHUNK):
            chunk = wanted[start : start + _WINDOW_CHUNK]
            for row in conn.execute(select(*columns).where(_SOURCE.c.id.in_(chunk))):
                self.read += 1
                yield row

    def end(self) -> None:
        """End a read: remember what it gave within the next read's window."""
        if self.newest is None:
            return
        self._given, self._seen = self._seen, {}


def _shared(ref: SourceRef | None, refs: dict[SourceRef, SourceRef] | None) -> SourceRef | None:
    """``ref``, or the equal reference ``refs`` holds already (kept from now on)."""
    if ref is None or refs is None:
        return ref
    return refs.setdefault(ref, ref)


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """What the hub values read of an invoice (see :mod:`ledgerlink.sync._hub`).

    A mapped :class:`~ledgerlink.domain.entities.Invoice` takes about 5 KB; kept for every
    landed invoice between plans that would be gigabytes. These few fields are all a plan
    reads of it.
    """

    source: SourceRef
    party: SourceRef | None
    status: InvoiceStatus
    created_at: datetime | None
    issued_at: datetime | None
    amount_remaining: Money | None

    @classmethod
    def of(cls, invoice: Invoice, refs: dict[SourceRef, SourceRef] | None = None) -> InvoiceFacts:
        """The facts of ``invoice``; its party's reference taken from ``refs`` when there
        (a customer's invoices share one, instead of a copy each)."""
        return cls(
            invoice.source,
            _shared(invoice.party, refs),
            invoice.status,
            invoice.created_at,
            invoice.issued_at,
            invoice.amount_remaining,
        )


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What the hub values read of a payment (see :class:`InvoiceFacts`)."""

    source: SourceRef
    party: SourceRef | None
    status: PaymentStatus
    created_at: datetime | None
    paid_at: datetime | None
    amount: Money

    @classmethod
    def of(cls, payment: Payment, refs: dict[SourceRef, SourceRef] | None = None) -> PaymentFacts:
        """The facts of ``payment`` (see :meth:`InvoiceFacts.of`)."""
        return cls(
            payment.source,
            _shared(payment.party, refs),
            payment.status,
            payment.created_at,
            payment.paid_at,
            payment.amount,
        )


Entity = Party | Invoice | Payment | Subscription | InvoiceFacts | PaymentFacts


@dataclass(slots=True)
class MappedRecord:
    """One landed record mapped to its entity (raw payload kept for parties only).

    A long-running process keeps one per landed party: the payload and the entity's dump are
    kept packed (see :mod:`ledgerlink.sync._packed`) and decoded by the plan of a customer
    that changed.
    """

    system: str
    object: str
    id: str
    packed: bytes | None
    """The raw payload (:func:`~ledgerlink.sync._packed.pack`); None for billing records."""
    entity: Entity
    changed_at: datetime
    _dump: bytes | None = None

    @property
    def payload(self) -> dict[str, Any] | None:
        """The raw payload (a fresh dict), for parties."""
        return None if self.packed is None else unpack(self.packed)

    def packed_dump(self) -> bytes:
        """The entity as JSON-ready values, packed (computed once)."""
        if self._dump is None:
            assert isinstance(self.entity, Party)  # only parties are dumped
            self._dump = pack(self.entity.model_dump(mode="json"))
        return self._dump


def _mapped(
    normalizer: Normalizer,
    system: str,
    obj: str,
    row: Any,
    *,
    compact: bool = False,
    refs: dict[SourceRef, SourceRef] | None = None,
    known: Mapping[Key, tuple[str, Party]] | None = None,
) -> MappedRecord | None:
    mapper = normalizer.mapper(system, obj)
    if mapper is None:
        return None
    hint = None if known is None else known.get((system, obj, row.external_id))
    if hint is not None and hint[0] == row.content_hash:
        entity: Any = hint[1]  # mapped from this very content by the same mappings
    else:
        try:
            entity = mapper.map(row.external_id, row.payload)
        except ValueError:
            return None  # quarantined by the mapping stage; nothing to plan from
    if isinstance(entity, Party):
        packed = pack(row.payload or {})
        return MappedRecord(system, obj, row.external_id, packed, entity, row.changed_at)
    kept: Entity
    if compact and isinstance(entity, Invoice):
        kept = InvoiceFacts.of(entity, refs)
    elif compact and isinstance(entity, Payment):
        kept = PaymentFacts.of(entity, refs)
    elif isinstance(entity, Invoice | Payment | Subscription):
        kept = entity
    else:
        return None
    return MappedRecord(system, obj, row.external_id, None, kept, row.changed_at)


def _read_all(
    conn: Connection, normalizer: Normalizer, kinds: Iterable[tuple[str, str]]
) -> Iterator[MappedRecord]:
    query = select(
        _SOURCE.c.system,
        _SOURCE.c.object,
        _SOURCE.c.external_id,
        _SOURCE.c.payload,
        _SOURCE.c.changed_at,
    ).where(
        tuple_(_SOURCE.c.system, _SOURCE.c.object).in_(list(kinds)),
        _SOURCE.c.deleted_at.is_(None),
    )
    for row in conn.execute(query):
        record = _mapped(normalizer, row.system, row.object, row)
        if record is not None:
            yield record


class MappedRecords:
    """Mapped landed records of one store, kept up to date between plans (see the module).

    Invoices and payments are kept as :class:`InvoiceFacts` and :class:`PaymentFacts` (what a
    plan reads of them), parties and subscriptions whole.

    Safe to share between threads: one refresh at a time. Forgets everything when called with
    other mappings (a reloaded mapping set maps records differently).
    """

    def __init__(self) -> None:
        self._mappings: MappingSet | None = None
        self._kinds: frozenset[tuple[str, str]] = frozenset()
        self._rows: dict[tuple[str, str, str], MappedRecord] = {}
        self._changes = ChangedRecords()
        self._refs: dict[SourceRef, SourceRef] = {}
        """The parties' references the kept facts share (one per party, not per invoice)."""
        self._order: dict[Key, int] = {}
        """Key -> its place in ``_rows`` (the order a full read gives the records in)."""
        self._next = 0
        self._billing_of: dict[Key, set[Key]] = {}
        """Party key -> the keys of the billing records that name it as their party."""
        self._party_of: dict[Key, Key] = {}
        self._names: dict[tuple[str, str], dict[str, str]] | None = None
        self._holders: dict[tuple[str, tuple[str, str]], set[Key]] = {}
        """(name, (system, object)) -> the keys of the parties holding that name."""
        self._renamed: set[tuple[str, tuple[str, str]]] = set()
        """Names whose holders changed since :meth:`names` last answered."""
        self.planned: dict[str, Any] = {}
        """Customer id -> what its last stored plan was made from (see
        :func:`ledgerlink.sync.plan.plan`): the values compared, and the mapped entities whose
        identity the values name (kept, so no other object takes their ``id``)."""
        self.unplanned: set[Key] = set()
        """Parties whose record or billing records changed since the last stored plan."""
        self.rebilled: set[Key] = set()
        """Parties whose billing records changed since the last stored plan."""
        self.relanded: set[Key] = set()
        """Parties whose own record landed again (or went) since the last :meth:`settle`."""
        self._versions: dict[Key, int] = {}
        """Party key -> how many times its record changed other than as expected (see
        :meth:`settle`); what a plan compares instead of the record itself."""
        self.hints: Mapping[Key, tuple[str, Party]] | None = None
        """Records just mapped elsewhere (matching's parties): key -> (content hash, entity);
        the next :meth:`refresh` takes the entity of a row with that hash instead of mapping
        it again, then drops them."""
        self.echoes: Any = None
        """What the planner expects written records to look like when they land back (the
        planner's own record, see :meth:`settle`)."""
        self.everything = True
        """Whether the next plan must look at every customer (nothing planned from these
        records yet)."""
        self.blocked: dict[str, Any] = {}
        """Customer id -> the names its last stored plan did not give its records because
        other records held them, with their holders (the planner's own record)."""
        self.seen: Any = None
        """What the last stored plan read besides the records (the planner's own snapshot)."""
        self.taken: Any = None
        """The names landed records hold, kept by the planner between plans."""
        self.mrr: Any = None
        """The customers' MRR as last measured (:class:`~ledgerlink.sync._hub.KeptMrr`)."""
        self._lock = threading.Lock()
        self.reread = 0
        """Records read and mapped by the last refresh."""

    def __len__(self) -> int:
        return len(self._rows)

    def records(
        self,
        conn: Connection,
        mappings: MappingSet,
        normalizer: Normalizer,
        kinds: Iterable[tuple[str, str]],
    ) -> list[MappedRecord]:
        """Every live mapped record of ``kinds``, after reading what changed since last time."""
        self.refresh(conn, mappings, normalizer, kinds)
        return list(self._rows.values())

    def refresh(
        self,
        conn: Connection,
        mappings: MappingSet,
        normalizer: Normalizer,
        kinds: Iterable[tuple[str, str]],
    ) -> None:
        """Read and map what changed since the last refresh; note the parties it touched in
        :attr:`unplanned`."""
        wanted = frozenset(kinds)
        with self._lock:
            if mappings is not self._mappings or wanted != self._kinds:
                self._mappings, self._kinds = mappings, wanted
                self._rows, self._changes, self.planned = {}, ChangedRecords(), {}
                self._refs, self._order, self._next = {}, {}, 0
                self._billing_of, self._party_of, self._names = {}, {}, None
                self._holders, self._renamed = {}, set()
                self.unplanned, self.everything, self.seen = set(), True, None
                self.rebilled, self.relanded, self._versions = set(), set(), {}
                self.blocked, self.echoes = {}, None
                self.taken = self.mrr = None
            self._changes.begin()
            for system, obj in sorted(wanted):
                for row in self._changes.rows(conn, system, obj):
                    key = (system, obj, row.external_id)
                    record = (
                        None
                        if row.deleted_at is not None
                        else _mapped(
                            normalizer,
                            system,
                            obj,
                            row,
                            compact=True,
                            refs=self._refs,
                            known=self.hints,
                        )
                    )
                    self._put(key, record)
            self._changes.end()
            self.hints = None
            self.reread = self._changes.read

    def _put(self, key: Key, record: MappedRecord | None) -> None:
        old = self._rows.get(key)
        if old is not None:
            self._unindex(key, old)
        if record is None:
            if old is not None:
                del self._rows[key], self._order[key]
            return
        if old is None:
            self._order[key] = self._next
            self._next += 1
        self._rows[key] = record
        if isinstance(record.entity, Party):
            name = (record.entity.name.strip().lower(), (record.system, record.object))
            self._holders.setdefault(name, set()).add(key)
            self._renamed.add(name)
            self.unplanned.add(key)
            self.relanded.add(key)
            return
        party = record.entity.party
        if party is not None:
            owner = (party.system, party.object, party.id)
            self._party_of[key] = owner
            self._billing_of.setdefault(owner, set()).add(key)
            self.unplanned.add(owner)
            self.rebilled.add(owner)

    def _unindex(self, key: Key, old: MappedRecord) -> None:
        if isinstance(old.entity, Party):
            name = (old.entity.name.strip().lower(), (old.system, old.object))
            holders = self._holders.get(name)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._holders[name]
            self._renamed.add(name)
            self.unplanned.add(key)
            self.relanded.add(key)
            return
        owner = self._party_of.pop(key, None)
        if owner is not None:
            self._billing_of[owner].discard(key)
            self.unplanned.add(owner)
            self.rebilled.add(owner)

    def settle(self, expected: Callable[[Key, MappedRecord | None], bool]) -> int:
        """Tell the parties' records landed again since the last call from echoes.

        ``expected(key, record)`` says whether a record that landed again is what the hub's
        own write made of it (and nothing else changed that a plan reads; ``record`` is None
        for a record gone, never an echo, asked so the expectation is dropped). Such an echo keeps
        the party's version and, unless its billing changed too, leaves it out of
        :attr:`unplanned`; any other landing (or a record gone) moves its version. Returns the
        echoes found.
        """
        echoes = 0
        with self._lock:
            for key in self.relanded:
                record = self.party(key)
                if expected(key, record) and record is not None:
                    echoes += 1
                    if key not in self.rebilled:
                        self.unplanned.discard(key)
                else:
                    self._versions[key] = self._versions.get(key, 0) + 1
            self.relanded.clear()
        return echoes

    def version(self, key: Key) -> int:
        """How many times the party's record changed other than as expected (:meth:`settle`)."""
        return self._versions.get(key, 0)

    def party(self, key: Key) -> MappedRecord | None:
        """The mapped party record ``key`` (None when it is not a live mapped party)."""
        record = self._rows.get(key)
        return record if record is not None and isinstance(record.entity, Party) else None

    def billing(self, parties: Iterable[Key]) -> list[MappedRecord]:
        """The billing records of ``parties``, in the order a full read gives them."""
        keys = [k for p in parties for k in self._billing_of.get(p, ())]
        keys.sort(key=self._order.__getitem__)
        return [self._rows[k] for k in keys]

    def in_order(self, keys: Iterable[Key]) -> list[Key]:
        """``keys`` in the order a full read gives their records."""
        return sorted(keys, key=lambda k: self._order.get(k, -1))

    def names(self) -> dict[tuple[str, str], dict[str, str]]:
        """(system, object) -> trimmed lower-cased party name -> the id of a record holding it
        (the last in read order), for every mapped party; kept, and revised for the names whose
        holders changed since it last answered."""
        if self._names is None:
            names: dict[tuple[str, str], dict[str, str]] = {}
            for record in self._rows.values():
                if isinstance(record.entity, Party):
                    names.setdefault((record.system, record.object), {})[
                        record.entity.name.strip().lower()
                    ] = record.id
            self._names = names
        else:
            for name, kind in self._renamed:
                holders = self._holders.get((name, kind))
                if holders:
                    last = max(holders, key=self._order.__getitem__)
                    self._names.setdefault(kind, {})[name] = self._rows[last].id
                else:
                    self._names.get(kind, {}).pop(name, None)
        self._renamed = set()
        return self._names


_LINK = CustomerLink.__table__  # type: ignore[attr-defined]


def _linked(conn: Connection, above: int = 0) -> tuple[list[LinkRow], int]:
    """The linked records whose link id is above ``above``, in the order the links were made,
    and the highest link id then (the rows' snapshot: it is read first, and only rows up to it
    are read, as a statement on PostgreSQL sees the commits made before it began)."""
    highest = conn.execute(select(func.max(_LINK.c.id))).scalar_one() or 0
    if highest <= above:
        return [], above
    statement = (
        select(_LINK.c.system, _LINK.c.object, _LINK.c.external_id, _LINK.c.customer_id)
        .where(
            _LINK.c.status == LinkStatus.LINKED.value,
            _LINK.c.id > above,
            _LINK.c.id <= highest,
        )
        .order_by(_LINK.c.id)
    )
    return cast("list[LinkRow]", driver_rows(conn, statement)), highest


def read_links(conn: Connection) -> list[LinkRow]:
    """Every linked record and its customer, in the order the links were made.

    The customer, quotes and ledger planners each need them; one plan reads them once
    (:func:`ledgerlink.sync.cycle.plan_all`) and hands the same rows to each.
    """
    return PassLinks.read(conn).rows


@dataclass(frozen=True)
class PassLinks:
    """The links one pass's plans read: every linked record (:func:`read_links`) and the
    highest link id then, so that the plans made after the pass's push read only the links
    made since (:meth:`since`)."""

    rows: list[LinkRow]
    highest: int

    @classmethod
    def read(cls, conn: Connection) -> PassLinks:
        """Every linked record, in the order the links were made."""
        return cls(*_linked(conn))

    def since(self, conn: Connection) -> PassLinks:
        """These links and the links made after them (a read of the links above
        :attr:`highest`, not of every link).

        For the plans that follow a pass's push: the push links the records it created (it
        only ever adds links), and matching, the other writer of links, does not run in
        between. A person's change to an existing link meanwhile (``ledgerlink conflicts``)
        is read by the next pass's plan, as the records landed meanwhile are.
        """
        rows, highest = _linked(conn, self.highest)
        if highest == self.highest:
            return self
        return PassLinks([*self.rows, *rows], highest)


def read_mapped(
    conn: Connection,
    mappings: MappingSet,
    normalizer: Normalizer,
    kinds: Iterable[tuple[str, str]],
    cache: MappedRecords | None = None,
) -> Iterable[MappedRecord]:
    """The live party and billing records of ``kinds``, mapped; through ``cache`` when given."""
    if cache is None:
        return _read_all(conn, normalizer, kinds)
    return cache.records(conn, mappings, normalizer, kinds)
