"""The planner: golden customers -> the writes each target system needs, queued in the outbox.

:func:`plan` reads the golden customers, their linked records (as last landed) and their
quote-to-cash records, and computes for every party object that has ``writes`` in the mappings
(Salesforce ``Account``, Stripe ``customers``, QuickBooks ``Customer``) the value each written
field should hold:

* a canonical field (``name``, ``addresses[0].city``) takes the value of the customer's record
  in that field's **source of truth** (``shared.yaml``), the record the golden customer took
  it from when there are several. A field is never written into its own source of truth, and
  a customer without a record there gets no update of that field: nobody is authoritative;
* a ``hub.*`` value is computed (:mod:`ledgerlink.sync._hub`): linked ids, billing status,
  last invoice and payment days, open balance, MRR and ARR.

It compares that with the target record as it last landed (canonically, through the target's
own mapping, so ``USA`` and ``US`` are the same country) and only real differences become
writes. A null in the source of truth never erases a value. Fields under one nested object
(``address.*``, ``BillAddr.*``) are written together, because vendors replace such objects
whole. Metadata keys are written one by one.

**No ping-pong.** Values flow one way, from the source of truth, and the next pull shows the
target holding what was written, so a settled customer plans nothing.

**Conflicts.** Every plan remembers, per target record and field, the value both sides agreed
on (an ``audit_log`` row ``plan.baseline`` per customer, written when it changes). When the
source of truth *and* the target both moved away from it since the last plan and disagree,
the field's ``on_conflict`` rule decides: ``source_wins`` writes the source's value,
``review`` writes nothing and puts the target record in the quarantine at stage ``plan``
(``ledgerlink quarantine list --stage plan``) with both values, until the two systems agree
again (someone fixes one of them), which resolves the row.

**Missing records.** A customer with Stripe invoices but no QuickBooks customer gets one
created (:data:`CREATE_RULES`). QuickBooks wants ``DisplayName`` unique among customers,
vendors and employees (error 6240): a name another landed customer holds (mapped or not), or
one refused with 6240 before, gets a numbered suffix (``Acme GmbH (2)``); an update never
renames a customer onto a name another one holds. The push worker links the new record to the
customer (:func:`record_results`), so the next plan updates it rather than creating another,
and its id is written back to Salesforce.

**Outbox.** Writes go into the outbox in the plan's transaction with a key from (target,
object, action, customer, content, version): the version is the change time of the target
record as landed, so planning the same change again queues nothing, while a value that comes
back to an earlier one gets a new key. A pending update that a newer plan no longer wants is
cancelled ("superseded").

The daemon calls :func:`plan` on its schedule; ``ledgerlink sync run`` calls it in a cycle.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.domain.entities import Invoice, Party, Payment, Subscription
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.mapping.apply import Normalizer
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.mapping.normalize import quarantine_record
from ledgerlink.mapping.schema import ObjectMapping, TruthRule, top_field
from ledgerlink.mapping.transforms import ROOT_PREFIX
from ledgerlink.store.db import driver_rows, for_writing
from ledgerlink.store.models import (
    AuditLog,
    Customer,
    CustomerLink,
    LinkMethod,
    LinkStatus,
    Outbox,
    OutboxStatus,
    Quarantine,
    QuarantineStage,
    SourceRecord,
)
from ledgerlink.store.repository import Store
from ledgerlink.store.types import utcnow
from ledgerlink.sync._hub import (
    BILLING_SYSTEMS,
    Billing,
    HubValues,
    KeptMrr,
    group_billing,
    hub_values,
)
from ledgerlink.sync._landed import (
    LANDING_LOOKBACK,
    InvoiceFacts,
    LinkRow,
    MappedRecord,
    MappedRecords,
    PaymentFacts,
    read_links,
    read_mapped,
)
from ledgerlink.sync._ledger_world import CUSTOMER_ENTITY, PLAN_ENTITY
from ledgerlink.sync._packed import pack, unpack
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key
from ledgerlink.sync.push import PushedWrite

__all__ = [
    "BASELINE_ACTION",
    "CREATE_RULES",
    "PLAN_ENTITY",
    "RUN_ACTION",
    "FieldChange",
    "MappedRecords",
    "PlanConflict",
    "PlanReport",
    "PlannedOp",
    "plan",
    "record_results",
]

BASELINE_ACTION = "plan.baseline"
RUN_ACTION = "plan.run"
CREATE_RULES: Mapping[str, tuple[str, ...]] = {"quickbooks": BILLING_SYSTEMS}
"""Target system -> systems whose invoices make the hub create the customer there."""
UNIQUE_NAMES: Mapping[tuple[str, str], str] = {("quickbooks", "Customer"): "DisplayName"}
"""Objects whose name field the vendor keeps unique, and that field."""
UNIQUE_IDS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("salesforce", "Account"): ("Stripe_Customer_Id__c",)
}
"""Objects whose hub-id fields the vendor keeps unique (the Salesforce org's external id field,
``DUPLICATE_VALUE`` on a second Account): an id is never sent to a record while another landed
record holds it."""
_ID_KEY = "\x00id:"
"""Marks, in a plan's ``blocked`` names, an id (``<marker><field>=<id>``) rather than a name."""
DUPLICATE_NAME_CODE = "6240"

_PARTY = "party"
_BILLING_ENTITIES = {"invoice", "payment", "subscription"}
# Canonical party field -> the golden field whose lineage names the preferred record.
_LINEAGE_KEY = {
    "name": "name",
    "emails": "email",
    "phones": "phone",
    "website": "website",
    "addresses": "street",
    "tax_ids": "tax_id",
}
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")
_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]
_CHUNK = 500
"""Ids per ``IN`` list of a read by id."""
_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_MISSING = object()
_log = get_logger(component="plan")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field a write changes: the target's field, its value as last landed, the new one.

    Attributes:
        field: the target system's field (``Open_Balance__c``, ``address.city``).
        old: the value the target holds (as landed), None when empty or unknown.
        new: the value written.
        source: where the new value comes from (``salesforce``, ``hub.mrr``).
    """

    field: str
    old: Any
    new: Any
    source: str


@dataclass(frozen=True, slots=True)
class PlannedOp:
    """A write the plan wants: target, object, action, the record and the changes.

    Attributes:
        target: the connector that makes the write.
        object: the target object (``Account``, ``customers``, ``Customer``).
        action: ``update`` of a linked record, or ``create`` of a missing one.
        customer_id: the golden customer.
        remote_id: the target record (None for a create).
        payload: what is sent, in the target's field names.
        changes: the fields that change, with old and new values.
        idempotency_key: the outbox key.
    """

    target: str
    object: str
    action: WriteAction
    customer_id: str
    remote_id: str | None
    payload: Mapping[str, Any]
    changes: tuple[FieldChange, ...]
    idempotency_key: str

    def planned_write(self) -> PlannedWrite:
        """Return the outbox row of this write."""
        op = WriteOp(
            idempotency_key=self.idempotency_key,
            object=self.object,
            action=self.action,
            payload=dict(self.payload),
            remote_id=self.remote_id,
        )
        return PlannedWrite(self.target, op, entity_kind=PLAN_ENTITY, entity_id=self.customer_id)


@dataclass(frozen=True, slots=True)
class PlanConflict:
    """A field that the source of truth and a target both changed since the last plan.

    Attributes:
        customer_id: the golden customer.
        target: the target system.
        object: the target object.
        record_id: the target record.
        field: the canonical field (``addresses``) whose rule says ``review``.
        path: the target's field.
        source_system: the field's source of truth.
        source_value: the value there now.
        target_value: the value in the target now.
        agreed: the value both held at the last plan.
    """

    customer_id: str
    target: str
    object: str
    record_id: str
    field: str
    path: str
    source_system: str
    source_value: Any
    target_value: Any
    agreed: Any

    def describe(self) -> str:
        """One sentence for the quarantine reason."""
        return (
            f"{self.field} ({self.path}) changed in {self.source_system} "
            f"({self.agreed!r} -> {self.source_value!r}) and in {self.target} "
            f"({self.agreed!r} -> {self.target_value!r}) since the last plan"
        )


@dataclass
class PlanReport:
    """What one :func:`plan` did (or, with ``dry_run``, would do).

    Attributes:
        customers: golden customers planned.
        unchanged: golden customers not planned again: nothing they are planned from changed
            since their last stored plan, that day (kept records only, see :func:`plan`).
        rebilled: of ``unchanged``, customers whose billing records changed but not the values
            the hub computes from them (open balance, MRR, dates...): nothing else to write.
        hubs_only: of ``customers``, those whose billing records alone changed, and the hub
            values with them, planned for those values only: their last plan held nothing
            else back and what else it wrote has landed (kept records only, see :func:`plan`).
        echoes: linked records that landed back holding what the hub wrote to them and
            nothing else new (kept records only): their customers were not planned for them.
        ops: the writes wanted (each with its field changes).
        conflicts: fields held for review.
        queued: outbox rows inserted (a key already queued is not counted).
        superseded: pending updates cancelled because a newer plan wants something else.
        resolved: review rows of the quarantine resolved because the systems agree again.
        notes: things people should know (a value not written, and why).
        dry_run: nothing was stored.
        seconds: wall time.
    """

    customers: int = 0
    unchanged: int = 0
    rebilled: int = 0
    hubs_only: int = 0
    echoes: int = 0
    ops: list[PlannedOp] = field(default_factory=list)
    conflicts: list[PlanConflict] = field(default_factory=list)
    queued: int = 0
    superseded: int = 0
    resolved: int = 0
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    def by_target(self) -> dict[str, int]:
        """Writes wanted per target system."""
        return dict(Counter(op.target for op in self.ops))

    def as_dict(self) -> dict[str, Any]:
        """The counts, for logs and the audit row."""
        return {
            "customers": self.customers,
            "unchanged": self.unchanged,
            "rebilled": self.rebilled,
            "hubs_only": self.hubs_only,
            "echoes": self.echoes,
            "writes": len(self.ops),
            "by_target": self.by_target(),
            "conflicts": len(self.conflicts),
            "queued": self.queued,
            "superseded": self.superseded,
            "resolved": self.resolved,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }


# -- what landed ---------------------------------------------------------------------------


_EMPTY = pack({})


@dataclass(frozen=True)
class _Record:
    """A linked party record as last landed, mapped (payload and dump decoded when a plan of
    its customer first reads them: customers that did not change are not planned)."""

    system: str
    object: str
    id: str
    packed: bytes
    party: Party
    packed_dump: bytes
    changed_at: datetime

    @classmethod
    def of(cls, record: MappedRecord, party: Party) -> _Record:
        """The planner's view of a mapped party record (``party`` is its entity)."""
        return cls(
            record.system,
            record.object,
            record.id,
            record.packed or _EMPTY,
            party,
            record.packed_dump(),
            record.changed_at,
        )

    @cached_property
    def payload(self) -> Mapping[str, Any]:
        """The raw payload as landed."""
        return unpack(self.packed)

    @cached_property
    def dump(self) -> Mapping[str, Any]:
        """The party as JSON-ready values."""
        return unpack(self.packed_dump)

    @property
    def ref(self) -> str:
        return f"{self.system}:{self.object}:{self.id}"


@dataclass
class _World:
    """Everything one plan reads, loaded in one transaction."""

    customers: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[_Record]] = field(default_factory=lambda: defaultdict(list))
    billing: dict[str, Billing] = field(default_factory=dict)
    names: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    ids: dict[tuple[str, str, str], dict[str, set[str]]] = field(default_factory=dict)
    """(system, object, field) of :data:`UNIQUE_IDS` -> id -> the live landed records holding
    it there."""
    created: dict[tuple[str, str, str], str] = field(default_factory=dict)
    open_creates: set[tuple[str, str, str]] = field(default_factory=set)
    refused_names: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    refused: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    """Record ref (``system:object:id``) -> the payloads of its failed updates: values the
    vendor refused (a Stripe id another Account holds) are not held by the record."""
    copies: set[tuple[str, str, str]] = field(default_factory=set)
    """(system, object, id) of the customers the ledger created in another currency than the
    customer's own (``Acme (JPY)``): never a customer's primary record while it has another.
    Each is linked to its customer in the push that created it, so a kept plan looks at that
    customer again."""
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    freed: set[str] = field(default_factory=set)
    """Customers whose last plan kept a record's name because another record held it, and
    that record no longer does (kept plans: planned again whatever else moved)."""
    echoes: int = 0
    """Linked records that landed back as the hub wrote them (kept plans, :class:`_Echoes`)."""


def _objects(mappings: MappingSet, entities: set[str]) -> list[tuple[str, str, str]]:
    return [
        (system, name, mapping.entity)
        for system, file in sorted(mappings.systems.items())
        for name, mapping in sorted(file.objects.items())
        if mapping.entity in entities
    ]


def _load(
    conn: Connection,
    mappings: MappingSet,
    normalizer: Normalizer,
    links: Sequence[LinkRow] | None = None,
) -> _World:
    world = _World()
    for row in conn.execute(select(_CUSTOMER.c.id, _CUSTOMER.c.lineage, _CUSTOMER.c.version)):
        world.customers[row.id] = row
    customer_of = _load_links(conn, links)
    wanted = _objects(mappings, {_PARTY, *_BILLING_ENTITIES})
    kinds = {(system, obj): entity for system, obj, entity in wanted}
    billing: list[Invoice | InvoiceFacts | Payment | PaymentFacts | Subscription] = []
    for record in read_mapped(conn, mappings, normalizer, kinds):
        entity = record.entity
        if isinstance(entity, Party):
            key = (record.system, record.object)
            world.names.setdefault(key, {})[entity.name.strip().lower()] = record.id
            customer = customer_of.get((record.system, record.object, record.id))
            if customer is not None:
                world.records[customer].append(_Record.of(record, entity))
        else:
            billing.append(entity)
    world.billing = group_billing(billing, customer_of)
    _load_unique_names(conn, world)
    _load_outbox(conn, world)
    world.baselines = _load_baselines(conn)
    return world


def _load_links(
    conn: Connection, links: Sequence[LinkRow] | None = None
) -> dict[tuple[str, str, str], str]:
    """(system, object, external id) of every linked record -> its customer (from ``links``
    when the caller read them already)."""
    rows = read_links(conn) if links is None else links
    return {(system, obj, external_id): customer for system, obj, external_id, customer in rows}


def _index_links(
    conn: Connection, rows: Sequence[LinkRow], before: _Seen | None
) -> tuple[dict[tuple[str, str, str], str], dict[str, list[tuple[str, str, str]]]]:
    """``rows`` (the linked records) as record -> customer and customer -> records; those of
    the last stored plan (``before``) when the links did not change since."""
    if before is not None and before.links == rows:
        return before.customer_of, before.keys_of
    customer_of = _load_links(conn, rows)
    keys_of: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for key, customer in customer_of.items():
        keys_of[customer].append(key)
    return customer_of, keys_of


@dataclass
class _Seen:
    """What a stored plan read besides the mapped records, per customer, to tell which
    customers the next plan must look at (kept in :attr:`MappedRecords.seen`)."""

    day: date
    customers: dict[str, tuple[int, Any]]
    """Customer id -> (version, ``updated_at``): every change of a golden record moves both."""
    customer_of: dict[tuple[str, str, str], str]
    keys_of: dict[str, list[tuple[str, str, str]]]
    """Customer id -> its linked records (``customer_of`` the other way)."""
    links: Sequence[LinkRow]
    """The linked records ``customer_of`` was made from, as read."""
    creates: dict[str, frozenset[Any]]
    refused: dict[str, str]
    baselines: dict[str, dict[str, Any]]
    audit_id: int | None
    """The highest baseline row read (the next plan reads only the rows above it)."""


def _load_kept(
    conn: Connection,
    mappings: MappingSet,
    normalizer: Normalizer,
    mapped: MappedRecords,
    now: datetime,
    *,
    links: Sequence[LinkRow] | None = None,
    landed: bool = True,
) -> tuple[_World, set[str], _Seen, set[tuple[str, str, str]]]:
    """The world of a plan through kept records, built for the customers it must look at.

    Those are the customers whose golden record, links, linked records, billing records,
    hub creates, refused updates or agreed values changed since the last stored plan (every
    customer on the first plan and on a new day), and those not planned yet. The others'
    inputs are what the last stored plan was made from, so their records and billing are not
    gathered: a quiet plan costs the reads of customers, links and outbox, not a walk over
    every mapped record. Returns the world, those customers, the snapshot to keep once the
    plan is stored and the parties it covered. Not ``landed``: no landed record is read
    (see :func:`plan`).
    """
    world = _World()
    # Every customer's version, as the driver gives it (text or a datetime for ``updated_at``,
    # compared only with itself); the whole golden row only of the customers planned.
    versions: dict[str, tuple[int, Any]] = {
        cid: (version, updated)
        for cid, version, updated in driver_rows(
            conn, select(_CUSTOMER.c.id, _CUSTOMER.c.version, _CUSTOMER.c.updated_at)
        )
    }
    world.customers = dict.fromkeys(versions)
    rows = read_links(conn) if links is None else links
    kinds = [(system, obj) for system, obj, _ in _objects(mappings, {_PARTY, *_BILLING_ENTITIES})]
    if landed:
        mapped.refresh(conn, mappings, normalizer, kinds)
    if not isinstance(mapped.echoes, _Echoes) or mapped.echoes.mappings is not mappings:
        mapped.echoes = _Echoes(mappings)
    world.echoes = mapped.settle(mapped.echoes)
    covered = set(mapped.unplanned)
    _load_outbox(conn, world)
    before: _Seen | None = mapped.seen
    customer_of, keys_of = _index_links(conn, rows, before)
    fresh = before is None or mapped.everything or before.day != now.date()
    if fresh or before is None:
        # Whole on the first plan and on each new day: a row another process's plan wrote
        # with a lower id, committed after an earlier read, is not missed for longer.
        world.baselines, audit_id = _read_baselines(conn, None)
    else:
        newer, audit_id = _read_baselines(conn, before.audit_id)
        world.baselines = {**before.baselines, **newer}
    creates: dict[str, set[Any]] = defaultdict(set)
    for key, remote in world.created.items():
        creates[key[0]].add((key, remote))
    for key in world.open_creates:
        creates[key[0]].add((key, "open"))
    for key, count in world.refused_names.items():
        creates[key[0]].add((key, count))
    seen = _Seen(
        day=now.date(),
        customers=versions,
        customer_of=customer_of,
        keys_of=keys_of,
        links=rows,
        creates={cid: frozenset(entries) for cid, entries in creates.items()},
        refused={ref: repr(payloads) for ref, payloads in world.refused.items()},
        baselines=world.baselines,
        audit_id=audit_id,
    )
    if fresh or before is None:
        looked_at = set(world.customers)
    else:
        looked_at = _changed_customers(before, seen, covered)
        looked_at.update(c for c in world.customers if c not in mapped.planned)
        looked_at.intersection_update(world.customers)
    _gather(world, mapped, keys_of, looked_at)
    world.names = {key: dict(names) for key, names in mapped.names().items()}
    if not isinstance(mapped.taken, _TakenNames):
        mapped.taken = _TakenNames()
    _load_unique_names(conn, world, mapped.taken, refresh=landed)
    world.freed = _freed(world, mapped.blocked)
    extra = world.freed - looked_at
    if extra:
        _gather(world, mapped, keys_of, extra)
        looked_at |= extra
    _load_golden(conn, world, looked_at)
    return world, looked_at, seen, covered


class _Echoes:
    """What the party records a plan looked at should hold when they land again.

    Planned again once its write lands, a customer plans nothing new: the written fields
    hold what the plan wanted and the rest is as the plan read it. So a record that lands
    back holding, in every field a plan reads of it, exactly what it held when planned with
    the written values over it is an echo (:meth:`MappedRecords.settle`): its customer is
    not planned again for it. The same holds for a record the plan read and did not write
    that lands again changed only in fields no plan reads (a QuickBooks customer's
    ``Balance`` after the ledger posted to it). Values are compared as the planner compares
    them, numbers by their decimal value, a missing field apart from a null one. Of several
    records of one system, the latest changed is preferred as a source, and landing again
    makes a record the latest: only the record that already comes first of its kind there
    (:meth:`_Planner._stays_first`) is expected so, and the order is part of what a plan is
    made from (:class:`_Inputs`). A record that lands any other way (a person's edit, a
    value the vendor reformatted) is planned as before.
    """

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings
        self.expected: dict[tuple[str, str, str], int] = {}
        """Record key -> the fingerprint (:meth:`fingerprint`) its echo will have."""
        self._fields: dict[tuple[str, str], tuple[str, ...]] = {}
        read = {"name", "currency"}  # names index, the currency amounts are chosen in
        for system, name, _entity in _objects(mappings, {_PARTY}):
            for expression in mappings.systems[system].objects[name].writes.values():
                if not expression.startswith("hub."):
                    read.add(top_field(expression))
        self._read = frozenset(read)

    def fields(self, system: str, obj: str) -> tuple[str, ...]:
        """The top-level fields of a record of ``system``/``obj`` a plan reads: those it
        writes (read as landed) and those its mapping makes the canonical fields plans read
        from (names, sources of truth, the currency)."""
        fields = self._fields.get((system, obj))
        if fields is None:
            mapping = self.mappings.systems[system].objects[obj]
            found = {path.split(".", 1)[0] for path in mapping.writes}
            for canonical, spec in mapping.fields.items():
                if top_field(canonical) not in self._read:
                    continue
                sources = [spec.from_] if isinstance(spec.from_, str) else list(spec.from_ or ())
                if spec.each is not None:
                    sources.append(spec.each)
                for source in sources:
                    found.add(re.split(r"[.\[]", source.removeprefix(ROOT_PREFIX), maxsplit=1)[0])
            fields = self._fields[system, obj] = tuple(sorted(found))
        return fields

    def fingerprint(self, system: str, obj: str, payload: Mapping[str, Any]) -> int:
        """A hash of what a plan reads of a record with this raw payload."""
        return hash(tuple(_comparable(payload.get(f, _MISSING)) for f in self.fields(system, obj)))

    def after(self, record: _Record, writes: Iterable[tuple[str, Any]]) -> int:
        """The fingerprint of ``record`` once ``writes`` (path, value) land on it."""
        payload = dict(record.payload)
        for path, value in writes:
            node = payload
            *parents, last = path.split(".")
            for step in parents:
                child = node.get(step)
                node[step] = child = dict(child) if isinstance(child, Mapping) else {}
                node = child
            node[last] = value
        return self.fingerprint(record.system, record.object, payload)

    def __call__(self, key: tuple[str, str, str], record: MappedRecord | None) -> bool:
        """Whether ``record``, landed again, holds what the last plan of it read or wrote in
        every field a plan reads (the expectation stays for its next landing; any other
        landing uses it up)."""
        if record is not None and record.payload is not None and self.holds(key, record.payload):
            return True
        self.expected.pop(key, None)
        return False

    def holds(self, key: tuple[str, str, str], payload: Mapping[str, Any]) -> bool:
        """Whether the record ``key`` with this raw payload holds what its last plan read or
        wrote, in every field a plan reads (the expectation is left as it is)."""
        expected = self.expected.get(key)
        return expected is not None and self.fingerprint(key[0], key[1], payload) == expected


def _comparable(value: Any) -> Any:
    """``value`` as a hashable whose equality is the planner's (:func:`_same`, without the
    blanks): numbers by decimal value, mappings whatever their key order."""
    if isinstance(value, bool) or value is None or value is _MISSING:
        return value
    if isinstance(value, int | float | Decimal):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return repr(value)
    if isinstance(value, Mapping):
        return (
            "{",
            tuple(sorted(((str(k), _comparable(v)) for k, v in value.items()), key=_first)),
        )
    if isinstance(value, list | tuple):
        return ("[", tuple(_comparable(v) for v in value))
    return value if isinstance(value, str) else repr(value)


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _source_rank(record: _Record, copies: set[tuple[str, str, str]]) -> tuple[bool, float, str]:
    """Where ``record`` comes among its customer's records of one system as a source of their
    values (after the one the golden record took them from): the customers the ledger made for
    other currencies (copies of the customer's own) last, then the latest changed first."""
    return (
        (record.system, record.object, record.id) in copies,
        -record.changed_at.timestamp(),
        record.id,
    )


def _load_golden(conn: Connection, world: _World, customers: set[str]) -> None:
    """Put the golden rows of ``customers`` into ``world.customers`` (one read of all when
    they are many); a customer gone meanwhile leaves it."""
    columns = (_CUSTOMER.c.id, _CUSTOMER.c.lineage, _CUSTOMER.c.version, _CUSTOMER.c.updated_at)
    if len(customers) * 4 > len(world.customers):
        rows: Iterable[Any] = conn.execute(select(*columns))
    else:
        wanted = sorted(customers)
        rows = (
            row
            for start in range(0, len(wanted), _CHUNK)
            for row in conn.execute(
                select(*columns).where(_CUSTOMER.c.id.in_(wanted[start : start + _CHUNK]))
            )
        )
    found = set()
    for row in rows:
        if row.id in customers:
            world.customers[row.id] = row
            found.add(row.id)
    for gone in customers - found:
        world.customers.pop(gone, None)
        customers.discard(gone)


def _keep_blocked(
    kept: dict[str, Any],
    blocked: Mapping[str, Mapping[tuple[tuple[str, str], str], str]],
    planned: Iterable[str],
) -> None:
    """Keep, for the customers just planned, the names their plans were kept from."""
    for customer_id in planned:
        names = blocked.get(customer_id)
        if names:
            kept[customer_id] = names
        else:
            kept.pop(customer_id, None)


def _freed(
    world: _World, blocked: Mapping[str, Mapping[tuple[tuple[str, str], str], str]]
) -> set[str]:
    """The customers whose last plan kept a name another record held, which that record no
    longer holds (or another does): planned again, the name may be theirs now."""
    return {
        customer_id
        for customer_id, names in blocked.items()
        if customer_id in world.customers
        and any(_holder(world, kind, key) != holder for (kind, key), holder in names.items())
    }


def _holder(world: _World, kind: tuple[str, str], key: str) -> str | None:
    """The landed record holding name ``key`` of ``kind`` (or an id, :data:`_ID_KEY`)."""
    if not key.startswith(_ID_KEY):
        return world.names.get(kind, {}).get(key)
    path, _, value = key.removeprefix(_ID_KEY).partition("=")
    holders = world.ids.get((*kind, path), {}).get(value)
    return min(holders) if holders else None


def _gather(
    world: _World,
    mapped: MappedRecords,
    keys_of: Mapping[str, list[tuple[str, str, str]]],
    looked_at: set[str],
) -> None:
    """Put the linked records and billing of the ``looked_at`` customers (``keys_of``: each
    customer's linked records) into ``world``, in the order a full read gives them."""
    for customer in sorted(looked_at):
        keys = keys_of.get(customer)
        if not keys:
            continue
        for key in mapped.in_order(keys):
            record = mapped.party(key)
            if record is not None and isinstance(record.entity, Party):
                world.records[customer].append(_Record.of(record, record.entity))
        billing = mapped.billing(keys)
        if billing:
            world.billing.update(
                group_billing((r.entity for r in billing), dict.fromkeys(keys, customer))  # type: ignore[misc]
            )


def _changed_customers(before: _Seen, now: _Seen, parties: set[tuple[str, str, str]]) -> set[str]:
    """The customers whose inputs besides the mapped records' content moved from ``before``
    to ``now``, and those linked (before or now) to ``parties``."""
    # Set operations on the items (hashable values) run in C: these maps hold every customer.
    changed = {cid for cid, _ in now.customers.items() - before.customers.items()}
    moved = (
        set()
        if now.customer_of is before.customer_of
        else {key for key, _ in now.customer_of.items() ^ before.customer_of.items()}
    )
    refused = now.refused.keys() ^ before.refused.keys()
    refused.update(r for r, v in now.refused.items() if before.refused.get(r) != v)
    records = moved | parties
    records.update(tuple(ref.split(":", 2)) for ref in refused)  # type: ignore[misc]
    for key in records:
        for links in (now.customer_of, before.customer_of):
            owner = links.get(key)
            if owner is not None:
                changed.add(owner)
    creates, baselines = now.creates, now.baselines
    changed.update(c for c, _ in creates.items() ^ before.creates.items())
    changed.update(
        c
        for c, v in baselines.items()
        if before.baselines.get(c) is not v and before.baselines.get(c) != v
    )
    changed.update(c for c in before.baselines if c not in baselines)
    return changed


def _load_unique_names(
    conn: Connection, world: _World, kept: _TakenNames | None = None, *, refresh: bool = True
) -> None:
    """Add the names that landed records hold but no mapped record shows.

    The vendor refuses a create onto any name one of its records holds (QuickBooks 6240),
    including a record the mapping stage quarantined (an unknown country, a bad currency) or
    one marked deleted (an inactive QuickBooks customer keeps its name): the raw payloads
    count, as the vendor compares them (trimmed, any case). ``kept``: the names read by the
    last plan of a long-running process, revised from the records landed since (unless not
    ``refresh``).
    """
    taken_names = kept if kept is not None else _TakenNames()
    if refresh or kept is None or taken_names.newest is None:
        taken_names.refresh(conn)
    for kind, holders in taken_names.holders.items():
        taken = world.names.setdefault(kind, {})
        for key, records in holders.items():
            if key not in taken:
                taken[key] = min(records)
    world.ids = taken_names.ids


@dataclass
class _TakenNames:
    """Per vendor object with unique names: each name key -> the landed records holding it,
    read whole the first time, then from the records landed since (less
    :data:`~ledgerlink.sync._landed.LANDING_LOOKBACK`, for the clock's adjustments)."""

    holders: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    keys_of: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)
    ids: dict[tuple[str, str, str], dict[str, set[str]]] = field(default_factory=dict)
    """The same for the unique id fields (:data:`UNIQUE_IDS`), of live records only: id ->
    the records holding it."""
    id_of: dict[tuple[str, str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)
    newest: datetime | None = None

    def refresh(self, conn: Connection) -> None:
        """Read the names of the records landed since the last refresh (all the first time)."""
        since = None if self.newest is None else self.newest - LANDING_LOOKBACK
        for kind, name_field in UNIQUE_NAMES.items():
            holders = self.holders.setdefault(kind, {})
            keys_of = self.keys_of.setdefault(kind, {})
            for record_id, name, _deleted_at, changed_at in _field_since(
                conn, kind, name_field, since
            ):
                if self.newest is None or changed_at > self.newest:
                    self.newest = changed_at
                keys = (
                    tuple({name.strip().lower(), " ".join(name.split()).lower()})
                    if name is not None and name.strip()
                    else ()
                )
                _reindex(holders, keys_of, record_id, keys)
        for (system, obj), fields in UNIQUE_IDS.items():
            for id_field in fields:
                self._refresh_ids(conn, (system, obj, id_field), since)

    def _refresh_ids(
        self, conn: Connection, kind: tuple[str, str, str], since: datetime | None
    ) -> None:
        holders = self.ids.setdefault(kind, {})
        id_of = self.id_of.setdefault(kind, {})
        for record_id, value, deleted_at, changed_at in _field_since(
            conn, kind[:2], kind[2], since
        ):
            if self.newest is None or changed_at > self.newest:
                self.newest = changed_at
            held = (
                () if deleted_at is not None or not value or not value.strip() else (value.strip(),)
            )
            _reindex(holders, id_of, record_id, held)


def _reindex(
    holders: dict[str, set[str]],
    keys_of: dict[str, tuple[str, ...]],
    record_id: str,
    keys: tuple[str, ...],
) -> None:
    """Record that ``record_id`` now holds ``keys`` (none: it holds nothing) in ``holders``
    (key -> the records holding it) and ``keys_of`` (record -> its keys)."""
    before = keys_of.get(record_id, ())
    if keys == before:
        return
    for key in before:
        holding = holders[key]
        holding.discard(record_id)
        if not holding:
            del holders[key]
    for key in keys:
        holders.setdefault(key, set()).add(record_id)
    if keys:
        keys_of[record_id] = keys
    else:
        keys_of.pop(record_id, None)


def _field_since(
    conn: Connection, kind: tuple[str, ...], path: str, since: datetime | None
) -> Iterable[Any]:
    """(external id, top-level field ``path`` as text, deleted at, changed at) of the landed
    records of ``kind`` (system, object) changed since ``since`` (all when None)."""
    where = [_SOURCE.c.system == kind[0], _SOURCE.c.object == kind[1]]
    if since is not None:
        where.append(_SOURCE.c.changed_at >= since)
    return conn.execute(
        select(
            _SOURCE.c.external_id,
            _SOURCE.c.payload[path].as_string(),
            _SOURCE.c.deleted_at,
            _SOURCE.c.changed_at,
        ).where(*where)
    )


_CREATES = select(
    _OUTBOX.c.entity_kind,
    _OUTBOX.c.target,
    _OUTBOX.c.object,
    _OUTBOX.c.entity_id,
    _OUTBOX.c.status,
    _OUTBOX.c.remote_id,
    _OUTBOX.c.last_error,
).where(
    _OUTBOX.c.entity_kind.in_((PLAN_ENTITY, CUSTOMER_ENTITY)),
    _OUTBOX.c.action == WriteAction.CREATE.value,
)
"""Every create of the customer planner and of the ledger's customers, each plan (the
``ix_outbox_kind_action`` index holds them apart from the updates, which grow each cycle)."""

_REFUSED = select(_OUTBOX.c.target, _OUTBOX.c.object, _OUTBOX.c.remote_id, _OUTBOX.c.payload).where(
    _OUTBOX.c.entity_kind == PLAN_ENTITY,
    _OUTBOX.c.action == WriteAction.UPDATE.value,
    _OUTBOX.c.status == OutboxStatus.FAILED.value,
)
"""The customer updates a target refused."""


def _load_outbox(conn: Connection, world: _World) -> None:
    done = OutboxStatus.DONE.value
    open_ = (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value)
    failed = OutboxStatus.FAILED.value
    # As the driver gives the rows (text only): thousands a plan.
    for kind, target, obj, entity_id, status, remote_id, last_error in driver_rows(conn, _CREATES):
        if kind == CUSTOMER_ENTITY:
            # The ledger's customer in another currency (``JPY:<customer id>``).
            if status == done and remote_id:
                world.copies.add((target, obj, remote_id))
            continue
        key = (entity_id, target, obj)
        if status == done and remote_id:
            world.created[key] = remote_id
        elif status in open_:
            world.open_creates.add(key)
        elif status == failed and DUPLICATE_NAME_CODE in (last_error or ""):
            world.refused_names[key] += 1
    for row in conn.execute(_REFUSED):
        ref = f"{row.target}:{row.object}:{row.remote_id}"
        world.refused.setdefault(ref, []).append(row.payload or {})


def _load_baselines(conn: Connection) -> dict[str, dict[str, Any]]:
    return _read_baselines(conn, None)[0]


def _read_baselines(
    conn: Connection, after: int | None
) -> tuple[dict[str, dict[str, Any]], int | None]:
    """The latest agreed values per customer among the baseline rows above audit id
    ``after`` (all when None), and the highest such id."""
    where = [_AUDIT.c.action == BASELINE_ACTION]
    if after is not None:
        where.append(_AUDIT.c.id > after)
    latest = select(func.max(_AUDIT.c.id)).where(*where).group_by(_AUDIT.c.subject)
    rows = conn.execute(
        select(_AUDIT.c.id, _AUDIT.c.subject, _AUDIT.c.details).where(
            _AUDIT.c.id.in_(latest.scalar_subquery())
        )
    )
    baselines: dict[str, dict[str, Any]] = {}
    highest = after
    for row in rows:
        baselines[row.subject] = dict((row.details or {}).get("agreed") or {})
        highest = row.id if highest is None else max(highest, row.id)
    return baselines, highest


# -- values --------------------------------------------------------------------------------


def _read(tree: Any, path: str) -> Any:
    """Value at a dotted path of a raw payload; :data:`_MISSING` when a step is absent."""
    node = tree
    for step in path.split("."):
        if not isinstance(node, Mapping) or step not in node:
            return _MISSING
        node = node[step]
    return node


def _index_kinds(mapping: ObjectMapping, name: str) -> dict[int, str]:
    """``addresses[0].kind: {const: billing}`` in a mapping -> ``{0: "billing"}``."""
    kinds: dict[int, str] = {}
    for path, spec in mapping.fields.items():
        match = re.fullmatch(rf"{name}\[(\d+)\]\.kind", path)
        if match and isinstance(spec.const, str):
            kinds[int(match.group(1))] = spec.const
    return kinds


def _canonical(dump: Mapping[str, Any], path: str, kinds: Mapping[int, str]) -> Any:
    """Value of a canonical path (``addresses[0].city``) in a dumped entity, or None.

    ``addresses[N]`` means the address of the kind the mapping gives index N (billing,
    shipping), since an empty address is dropped and would shift the others.
    """
    node: Any = dump
    steps = _steps(path)
    if steps is None:
        return None
    for name, position in steps:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
        if position is None:
            continue
        if not isinstance(node, list):
            return None
        if name == "addresses" and position in kinds:
            node = next((a for a in node if a.get("kind") == kinds[position]), None)
        else:
            node = node[position] if position < len(node) else None
    return node


@lru_cache(maxsize=1024)
def _steps(path: str) -> tuple[tuple[str, int | None], ...] | None:
    """A canonical path's segments as (name, index or None); None when one is malformed."""
    steps = []
    for segment in path.split("."):
        match = _SEGMENT.match(segment)
        if match is None:
            return None
        index = match.group(2)
        steps.append((match.group(1), None if index is None else int(index)))
    return tuple(steps)


def _blank(value: Any) -> bool:
    return value is None or value is _MISSING or (isinstance(value, str) and not value.strip())


def _same(a: Any, b: Any) -> bool:
    """Equal as values: blank is blank, numbers by their decimal value, the rest exactly."""
    if _blank(a) or _blank(b):
        return _blank(a) and _blank(b)
    if _is_number(a) and (_is_number(b) or isinstance(b, str)):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except InvalidOperation:
            return False
    if _is_number(b) and isinstance(a, str):
        return _same(b, a)
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _nest(fields: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for path, value in fields:
        node = payload
        *parents, last = path.split(".")
        for step in parents:
            node = node.setdefault(step, {})
        node[last] = value
    return payload


def _group(path: str) -> str:
    """Fields written together: a nested object's members, except metadata keys."""
    head = path.split(".", 1)[0]
    return path if head == "metadata" or "." not in path else head


@dataclass(frozen=True)
class _Wanted:
    """The value a target field should hold, and where it comes from."""

    path: str
    value: Any
    source: str
    canonical: str | None = None
    rule: TruthRule | None = None


class _Planner:
    """Plans one customer at a time against the loaded world."""

    def __init__(self, mappings: MappingSet, world: _World, now: datetime) -> None:
        self.mappings = mappings
        self.world = world
        self.now = now
        self.order = mappings.truth_order(_PARTY)
        self.targets = [
            (system, name, mapping)
            for system, name, _entity in _objects(mappings, {_PARTY})
            if (mapping := mappings.systems[system].objects[name]).writes
        ]
        self.report = PlanReport()
        self.agreed: dict[str, dict[str, Any]] = {}
        self.considered: set[tuple[str, str, str]] = set()
        self.in_conflict: set[tuple[str, str, str]] = set()
        # Per plan, not per customer: both are lookups that scanned a whole mapping or every
        # created record for each customer (quadratic in the customers).
        self._kinds: dict[int, dict[int, str]] = {}
        self._created_by: dict[tuple[str, str], str] = {}
        for (cid, sys, _o), rid in world.created.items():
            self._created_by.setdefault((cid, sys), rid)
        # (system, object) -> its fields that take a hub id, with the system each id is of.
        self._id_fields: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
            (system, name): tuple(
                (path, _ID_SYSTEMS[expression[4:]])
                for path, expression in mapping.writes.items()
                if expression.startswith("hub.") and expression[4:] in _ID_SYSTEMS
            )
            for system, name, mapping in self.targets
        }
        # The current customer's primary record per system (:meth:`_linked_id`).
        self._primaries: dict[tuple[str, str], str | None] = {}
        self.reserved: set[tuple[tuple[str, str], str]] = set()
        """Names this plan gave records (a rename or a create), held before they land."""
        self.blocked: dict[str, dict[tuple[tuple[str, str], str], str]] = defaultdict(dict)
        """Customer -> (vendor object, name key) -> the landed record holding it, for each
        name the plan did not give one of the customer's records because that one held it."""
        self.hubs: dict[str | None, dict[str, Any]] = {}
        """The hub values the current customer's plan used, by the currency asked (None: the
        customer's own)."""
        self._computed_for: tuple[str | None, dict[str | None, HubValues]] = (None, {})
        self.settled = True
        """Whether the current customer's plan held none of the fields but the hub values'
        (and those written with them) for review, nor kept one from a record because another
        record holds its value: each is as its source has it, written, or kept for what the
        customer's own records are (see :meth:`customer`)."""
        self.awaiting: list[tuple[str, str, str]] = []
        """The current customer's records this plan wrote such fields to."""
        self._hub_groups: dict[int, frozenset[str]] = {}
        self.echoes: _Echoes | None = None
        self.mrr: KeptMrr | None = None
        """The MRR measured by earlier plans (a long-running planner's)."""
        self.expected: dict[tuple[str, str, str], int] = {}
        """Record key -> its echo's fingerprint, for the updates this plan wants (with
        :attr:`echoes`)."""

    def _address_kinds(self, mapping: ObjectMapping) -> dict[int, str]:
        """:func:`_index_kinds` of ``addresses``, once per mapping and plan."""
        kinds = self._kinds.get(id(mapping))
        if kinds is None:
            kinds = self._kinds[id(mapping)] = _index_kinds(mapping, "addresses")
        return kinds

    # -- per customer ------------------------------------------------------------------

    def customer(self, customer_id: str, *, hubs_only: bool = False) -> None:
        """Plan one customer's writes; ``hubs_only``: of its records' fields, only those
        that take hub values and the ones written with them (:func:`_group`).

        A plan for the hub values alone is what a whole plan gives when the customer's
        golden record, linked records, creates and agreed values are what its last plan
        read, that plan was :attr:`settled` and the records it wrote other fields to hold
        them now (:meth:`echoed`): every other field is then as its source has it, so the
        whole plan would write, hold or agree on nothing more (a new invoice moves a
        customer's hub values and nothing else).
        """
        self.hubs = {}
        self.settled, self.awaiting = True, []
        records = self.world.records.get(customer_id, [])
        if not records:
            return
        self.report.customers += 1
        self.report.hubs_only += hubs_only
        self._primaries.clear()
        hub = self._hub(customer_id, records)
        agreed = dict(self.world.baselines.get(customer_id, {}))
        for system, obj, mapping in self.targets:
            mine = sorted((r for r in records if (r.system, r.object) == (system, obj)), key=_by_id)
            created = self.world.created.get((customer_id, system, obj))
            if mine:
                primary = self._linked_id(customer_id, system, records)
                for record in mine:
                    self._update(
                        customer_id,
                        record,
                        mapping=mapping,
                        records=records,
                        hub=hub
                        if record.id == primary
                        else self._shared(customer_id, hub, record, records),
                        agreed=agreed,
                        hubs_only=hubs_only,
                    )
            elif created is None:
                self._create(
                    customer_id, system=system, obj=obj, mapping=mapping, records=records, hub=hub
                )
        if agreed != self.world.baselines.get(customer_id, {}):
            self.agreed[customer_id] = agreed

    def same_hubs(self, customer_id: str, hubs: Mapping[str | None, Mapping[str, Any]]) -> bool:
        """Whether the customer's hub values are still ``hubs`` (what its last plan used)."""
        records = self.world.records.get(customer_id, [])
        self._primaries.clear()
        return all(
            dict(self._computed(customer_id, records, currency).values) == values
            for currency, values in hubs.items()
        )

    def _hub(
        self, customer_id: str, records: Sequence[_Record], currency: str | None = None
    ) -> dict[str, Any]:
        computed = self._computed(customer_id, records, currency)
        if currency is None:
            self.report.notes.extend(f"{customer_id}: {note}" for note in computed.notes)
        values = dict(computed.values)
        self.hubs[currency] = values
        return values

    def _computed(
        self, customer_id: str, records: Sequence[_Record], currency: str | None
    ) -> HubValues:
        """The customer's hub values in ``currency`` (None: its own), computed once per
        customer and plan (the check of :meth:`same_hubs` and the plan after it share them)."""
        owner, known = self._computed_for
        if owner != customer_id:
            known = {}
            self._computed_for = (customer_id, known)
        found = known.get(currency)
        if found is None:
            found = known[currency] = self._compute(customer_id, records, currency)
        return found

    def _compute(
        self, customer_id: str, records: Sequence[_Record], currency: str | None
    ) -> HubValues:
        ids: dict[str, str | None] = {}
        for system, key in (
            ("salesforce", "salesforce_account_id"),
            ("stripe", "stripe_customer_id"),
            ("quickbooks", "quickbooks_customer_id"),
        ):
            ids[key] = self._linked_id(customer_id, system, records)
        return hub_values(
            customer_id,
            ids,
            self.world.billing.get(customer_id, Billing()),
            has_billing_record=any(r.system in BILLING_SYSTEMS for r in records),
            currency=currency or self._amount_currency(customer_id, records),
            now=self.now,
            kept_mrr=self.mrr,
        )

    def _shared(
        self,
        customer_id: str,
        hub: Mapping[str, Any],
        record: _Record,
        records: Sequence[_Record],
    ) -> dict[str, Any]:
        """The hub values a customer's other record of a system shows: all but the linked ids.

        An id such as ``Stripe_Customer_Id__c`` is unique in its system, so only the customer's
        primary record takes it; the amounts and states (open balance, MRR, billing status,
        last invoice and payment) are the customer's, so a duplicate record shows them too, in
        its own currency when it has one the amounts are in.
        """
        mine = record.party.currency
        if mine is not None and mine != self._amount_currency(customer_id, records):
            hub = self._hub(customer_id, records, currency=mine)
        return {key: value for key, value in hub.items() if key not in _HUB_IDS}

    def _amount_currency(self, customer_id: str, records: Sequence[_Record]) -> str | None:
        """The currency the hub's amounts are chosen in: the primary CRM account's (it shows
        them), else the first CRM record's that has one."""
        primary = self._linked_id(customer_id, "salesforce", records)
        crm = sorted(
            (r for r in records if r.system == "salesforce" and r.party.currency),
            key=lambda r: r.id != primary,
        )
        return crm[0].party.currency if crm else None

    def _linked_id(self, customer_id: str, system: str, records: Sequence[_Record]) -> str | None:
        """The customer's primary record in ``system``, the one that takes the hub's ids.

        Among the customer's records there other than the customers the ledger made for its
        other currencies (:attr:`_World.copies`: last, whatever they hold), the first of: the
        record that already holds, in its id fields, the primaries of the systems chosen before
        (:data:`_PRIMARY_ORDER`);
        one that holds an id of any of the customer's records; the record the hub created
        there (the one chosen before it landed, so a customer created in QuickBooks keeps it
        over the customers the ledger makes for its other currencies); the record the golden
        customer took its name or e-mail from; the first id in text order (a stable tie-break,
        not a numeric one: QuickBooks' "100" comes before "99"). So the primary stays when the
        lineage moves (an Account renamed): an id is never sent to a second record while the first
        still holds it, which Salesforce refuses for ``Stripe_Customer_Id__c``
        (``DUPLICATE_VALUE``). Without a record there, the one the hub created (or None).
        """
        key = (customer_id, system)
        if key in self._primaries:
            return self._primaries[key]
        mine = [r for r in records if r.system == system]
        if not mine:
            primary = self._created_by.get(key)
        else:
            lineage = self.world.customers[customer_id].lineage or {}
            preferred = {str(lineage.get(k)) for k in ("name", "email")}
            rank = _primary_rank(system)
            agreed = self.world.baselines.get(customer_id, {})
            created = self._created_by.get(key)

            copies = self.world.copies

            def order(record: _Record) -> tuple[bool, tuple[bool, ...], bool, bool, bool, str]:
                held = [
                    (_held_id(record, path, agreed, self.world.refused), other)
                    for path, other in self._id_fields.get((record.system, record.object), ())
                ]
                chosen = tuple(
                    value is None or value != self._linked_id(customer_id, other, records)
                    for value, other in held
                    if _primary_rank(other) < rank
                )
                known = any(
                    value is not None and value in self._ids(customer_id, other, records)
                    for value, other in held
                )
                return (
                    (record.system, record.object, record.id) in copies,
                    chosen,
                    not known,
                    record.id != created,
                    record.ref not in preferred,
                    record.id,
                )

            primary = min(mine, key=order).id
        self._primaries[key] = primary
        return primary

    def _ids(self, customer_id: str, system: str, records: Sequence[_Record]) -> set[str]:
        """Ids of the customer's records in ``system``, with the one the hub created there."""
        ids = {r.id for r in records if r.system == system}
        created = self._created_by.get((customer_id, system))
        if created is not None:
            ids.add(created)
        return ids

    def _expect(
        self,
        key: tuple[str, str, str],
        record: _Record,
        records: Sequence[_Record],
        writes: Sequence[tuple[_Wanted, Any]],
    ) -> None:
        """Keep what ``record`` holds, in the fields plans read, once ``writes`` land on it
        (:class:`_Echoes`), when landing again cannot reorder its customer's sources."""
        if self.echoes is not None and self._stays_first(record, records):
            self.expected[key] = self.echoes.after(record, ((w.path, w.value) for w, _c in writes))

    def echoed(self, customer_id: str, keys: Iterable[tuple[str, str, str]]) -> bool:
        """Whether each of the customer's records ``keys`` holds now, in the fields plans
        read, what its last plan wrote over what it read (:class:`_Echoes`)."""
        echoes = self.echoes
        wanted = set(keys)
        if not wanted:
            return True
        if echoes is None:
            return False
        found = 0
        for record in self.world.records.get(customer_id, ()):
            key = (record.system, record.object, record.id)
            if key not in wanted:
                continue
            if not echoes.holds(key, record.payload):
                return False
            found += 1
        return found == len(wanted)

    def _stays_first(self, record: _Record, records: Sequence[_Record]) -> bool:
        """Whether ``record`` comes first of its kind (the ledger's copies or the others) among
        the customer's records of its system as a source (:func:`_source_rank`): landing again
        keeps it there, so only what it holds can change a plan of its customer. Any other
        record landing again reorders the sources: not an echo (:class:`_Echoes`)."""
        copies = self.world.copies
        rank = _source_rank(record, copies)
        return all(
            rank <= _source_rank(other, copies)
            for other in records
            if other.system == record.system
            and other is not record
            and ((other.system, other.object, other.id) in copies) == rank[0]
        )

    def _sources(
        self, customer_id: str, canonical: str, systems: Sequence[str], records: Sequence[_Record]
    ) -> Iterator[_Record]:
        lineage = self.world.customers[customer_id].lineage or {}
        preferred = str(lineage.get(_LINEAGE_KEY.get(top_field(canonical), ""), ""))
        copies = self.world.copies
        for system in systems:
            mine = [r for r in records if r.system == system]
            mine.sort(key=lambda r: (r.ref != preferred, *_source_rank(r, copies)))
            yield from mine

    def _wanted(
        self,
        customer_id: str,
        mapping: ObjectMapping,
        records: Sequence[_Record],
        hub: Mapping[str, Any],
        *,
        creating: bool,
        hubs_only: bool = False,
    ) -> list[_Wanted]:
        kinds = self._address_kinds(mapping)
        groups = self._hub_groups_of(mapping) if hubs_only else None
        wanted: list[_Wanted] = []
        for path, expression in mapping.writes.items():
            if groups is not None and _group(path) not in groups:
                continue
            if expression.startswith("hub."):
                # Only the customer's primary record of a system takes the hub's ids (the
                # others get :func:`_shared` values): ids such as Stripe_Customer_Id__c are
                # unique in their system.
                wanted.append(_Wanted(path, hub.get(expression[4:]), expression))
                continue
            top = top_field(expression)
            rule = self.mappings.source_of_truth(_PARTY, top)
            if rule is None:
                continue
            systems = self.order.get(top, (rule.system,)) if creating else (rule.system,)
            value, source = None, rule.system
            for record in self._sources(customer_id, expression, systems, records):
                source_kinds = self._address_kinds(
                    self.mappings.systems[record.system].objects[record.object]
                )
                found = _canonical(record.dump, expression, source_kinds or kinds)
                if not _blank(found):
                    value, source = found, record.system
                    break
            wanted.append(_Wanted(path, value, source, expression, rule))
        return wanted

    def _hub_groups_of(self, mapping: ObjectMapping) -> frozenset[str]:
        """The write groups (:func:`_group`) of ``mapping`` that hold a hub value."""
        groups = self._hub_groups.get(id(mapping))
        if groups is None:
            groups = self._hub_groups[id(mapping)] = frozenset(
                _group(path)
                for path, expression in mapping.writes.items()
                if expression.startswith("hub.")
            )
        return groups

    def _note_settled(
        self,
        key: tuple[str, str, str],
        mapping: ObjectMapping,
        held: set[str],
        written: set[str],
    ) -> None:
        """Tell :attr:`settled` and :attr:`awaiting` what one record's update held for
        review (``held``) and wrote (``written``), by write group."""
        hub_groups = self._hub_groups_of(mapping)
        if not held <= hub_groups:
            self.settled = False
        if not written <= hub_groups:
            self.awaiting.append(key)

    def _update(
        self,
        customer_id: str,
        record: _Record,
        *,
        mapping: ObjectMapping,
        records: Sequence[_Record],
        hub: Mapping[str, Any],
        agreed: dict[str, Any],
        hubs_only: bool = False,
    ) -> None:
        key = (record.system, record.object, record.id)
        self.considered.add(key)
        target_kinds = self._address_kinds(mapping)
        wanted = self._wanted(
            customer_id, mapping, records, hub, creating=False, hubs_only=hubs_only
        )
        groups: dict[str, list[tuple[_Wanted, Any]]] = defaultdict(list)
        changed: set[str] = set()
        held: set[str] = set()
        conflicts: list[PlanConflict] = []
        for want in wanted:
            base_key = f"{record.ref}|{want.path}"
            raw = _read(record.payload, want.path)
            if want.canonical is not None and want.canonical in mapping.fields:
                current = _canonical(record.dump, want.canonical, target_kinds)
            else:
                current = agreed.get(base_key) if raw is _MISSING else raw
            groups[_group(want.path)].append((want, current))
            if _blank(want.value):
                continue  # the source has nothing: never erase the target's value
            if self._name_taken(customer_id, record, want) or self._id_held(
                customer_id, record, want
            ):
                continue
            if _same(want.value, current):
                agreed[base_key] = want.value
                continue
            agreed_value = agreed.get(base_key, _MISSING)
            conflict = self._conflict(customer_id, record, want, current, agreed_value)
            if conflict is not None and want.rule is not None:
                if want.rule.on_conflict == "review":
                    conflicts.append(conflict)
                    held.add(_group(want.path))
                    continue
                self.report.notes.append(
                    f"{customer_id}: {conflict.describe()}; {want.rule.system} wins (source_wins)"
                )
            changed.add(_group(want.path))
        self._record_conflicts(key, conflicts)
        self._note_settled(key, mapping, held, changed - held)
        writes: list[tuple[_Wanted, Any]] = [
            pair for group in sorted(changed - held) for pair in groups[group]
        ]
        writes = [(w, c) for w, c in writes if not _blank(w.value)]
        self._expect(key, record, records, writes)
        if not writes:
            return
        name_field = UNIQUE_NAMES.get((record.system, record.object))
        for want, _current in writes:
            agreed[f"{record.ref}|{want.path}"] = want.value
            if want.path == name_field:
                # The record takes this name once the write lands: no other record of this
                # plan may be renamed or created onto it (the vendor would refuse the second).
                kind, name = (record.system, record.object), str(want.value).strip().lower()
                self.world.names.setdefault(kind, {})[name] = record.id
                self.reserved.add((kind, name))
        payload = _nest((w.path, w.value) for w, _c in writes)
        changes = tuple(
            FieldChange(w.path, None if _blank(c) else c, w.value, w.source)
            for w, c in writes
            if not _same(w.value, c)
        )
        # Keyed by the record written, not its customer: a customer's two Accounts pulled in
        # one batch share a change time and may need the same values, and each needs its write.
        version = record.changed_at.isoformat()
        op_key = idempotency_key(
            record.system, record.object, WriteAction.UPDATE, record.ref, payload, version=version
        )
        self.report.ops.append(
            PlannedOp(
                record.system,
                record.object,
                WriteAction.UPDATE,
                customer_id,
                record.id,
                payload,
                changes,
                op_key,
            )
        )

    def _id_held(self, customer_id: str, record: _Record, want: _Wanted) -> bool:
        """An update must not send a unique id (:data:`UNIQUE_IDS`) another landed record
        holds: the vendor would refuse the whole write. Such a holder may be a record matching
        has just put under review, for a pass, or one of another customer; the customer's other
        values go out without the id, which waits until that record lets it go (a kept plan plans
        the customer again then, as for a name, :func:`_freed`)."""
        if want.path not in UNIQUE_IDS.get((record.system, record.object), ()):
            return False
        value = str(want.value).strip()
        holders = self.world.ids.get((record.system, record.object, want.path), {}).get(value)
        others = sorted(holders - {record.id}) if holders else []
        if not others:
            return False
        kind = (record.system, record.object)
        self.blocked[customer_id][kind, f"{_ID_KEY}{want.path}={value}"] = min(holders or ())
        self.settled = False  # up to another record
        self.report.notes.append(
            f"{customer_id}: {record.ref} is not sent {want.path} {value!r}: "
            f"{record.system} record {others[0]} holds it"
        )
        return True

    def _name_taken(self, customer_id: str, record: _Record, want: _Wanted) -> bool:
        """An update must not rename a record onto a name another record of its system holds.

        Nor onto the customer's name when the record is not the customer's primary one there
        (a duplicate, or the QuickBooks customer the ledger made for another currency): the
        primary record takes that name, and the system holds it once.
        """
        if UNIQUE_NAMES.get((record.system, record.object)) != want.path:
            return False
        primary = self._linked_id(
            customer_id, record.system, self.world.records.get(customer_id, [])
        )
        if primary not in (None, record.id):
            self.report.notes.append(
                f"{customer_id}: {record.ref} keeps its {want.path}: {record.system} record "
                f"{primary} is the customer's primary one"
            )
            return True
        kind, key = (record.system, record.object), str(want.value).strip().lower()
        holder = self.world.names.get(kind, {}).get(key)
        if holder is None or holder == record.id:
            return False
        self.settled = False  # up to another record, unlike the customer's own primary
        if holder and (kind, key) not in self.reserved:  # a landed holder, not this plan's
            self.blocked[customer_id][kind, key] = holder
        self.report.notes.append(
            f"{customer_id}: {record.ref} keeps its {want.path}: {want.value!r} belongs to "
            f"{record.system} record {holder}"
        )
        return True

    def _conflict(
        self, customer_id: str, record: _Record, want: _Wanted, current: Any, agreed: Any
    ) -> PlanConflict | None:
        """Both sides moved away from the agreed value: a conflict (None otherwise)."""
        if want.canonical is None or want.rule is None or agreed is _MISSING:
            return None
        if _same(want.value, agreed) or _same(current, agreed):
            return None
        return PlanConflict(
            customer_id=customer_id,
            target=record.system,
            object=record.object,
            record_id=record.id,
            field=top_field(want.canonical),
            path=want.path,
            source_system=want.rule.system,
            source_value=want.value,
            target_value=current,
            agreed=agreed,
        )

    def _record_conflicts(self, key: tuple[str, str, str], conflicts: list[PlanConflict]) -> None:
        if conflicts:
            self.in_conflict.add(key)
            self.report.conflicts.extend(conflicts)

    def _create(
        self,
        customer_id: str,
        *,
        system: str,
        obj: str,
        mapping: ObjectMapping,
        records: Sequence[_Record],
        hub: Mapping[str, Any],
    ) -> None:
        billed_in = CREATE_RULES.get(system)
        invoices = self.world.billing.get(customer_id, Billing()).invoices
        if not billed_in or not any(i.source.system in billed_in for i in invoices):
            return
        if (customer_id, system, obj) in self.world.open_creates:
            return  # the earlier create is still on its way
        wanted = [
            w
            for w in self._wanted(customer_id, mapping, records, hub, creating=True)
            if not _blank(w.value)
        ]
        name_field = UNIQUE_NAMES.get((system, obj))
        if name_field is not None:
            named = self._unique_name(customer_id, system, obj, name_field, wanted)
            if named is None:
                return
            wanted = named
        payload = _nest((w.path, w.value) for w in wanted)
        content = {"customer": customer_id, "name": payload.get(name_field or "", None)}
        op_key = idempotency_key(system, obj, WriteAction.CREATE, customer_id, content)
        changes = tuple(FieldChange(w.path, None, w.value, w.source) for w in wanted)
        self.report.ops.append(
            PlannedOp(system, obj, WriteAction.CREATE, customer_id, None, payload, changes, op_key)
        )

    def _unique_name(
        self, customer_id: str, system: str, obj: str, name_field: str, wanted: list[_Wanted]
    ) -> list[_Wanted] | None:
        name = next((w for w in wanted if w.path == name_field), None)
        if name is None:
            self.report.notes.append(f"{customer_id}: no name to create a {system} {obj} with")
            return None
        taken = self.world.names.setdefault((system, obj), {})
        base = str(name.value).strip()
        # Names the vendor refused before are held by a vendor or employee the hub cannot see.
        number = 1 + self.world.refused_names[(customer_id, system, obj)]
        candidate = base if number == 1 else f"{base} ({number})"
        while candidate.lower() in taken:
            number += 1
            candidate = f"{base} ({number})"
        taken[candidate.lower()] = ""  # the next create of this plan must not take it too
        self.reserved.add(((system, obj), candidate.lower()))
        renamed = _Wanted(name.path, candidate, name.source, name.canonical, name.rule)
        return [renamed if w is name else w for w in wanted]


_ID_SYSTEMS: Mapping[str, str] = {
    "salesforce_account_id": "salesforce",
    "stripe_customer_id": "stripe",
    "quickbooks_customer_id": "quickbooks",
}
"""A ``hub.*`` id -> the system whose record id it is."""
_HUB_IDS = frozenset(_ID_SYSTEMS)
_PRIMARY_ORDER = ("quickbooks", "stripe", "salesforce")
"""The order in which a customer's primary record per system is chosen: a system's primary is
the record that already holds the primaries of the systems before it. Salesforce keeps
``Stripe_Customer_Id__c`` unique, so its primary follows Stripe's (never the reverse)."""


def _primary_rank(system: str) -> int:
    return _PRIMARY_ORDER.index(system) if system in _PRIMARY_ORDER else len(_PRIMARY_ORDER)


def _held_id(
    record: _Record,
    path: str,
    agreed: Mapping[str, Any],
    refused: Mapping[str, Sequence[Mapping[str, Any]]],
) -> str | None:
    """The id a record holds in one of its id fields, None when blank: as landed, else as the
    hub last wrote it (a write sent but not pulled back yet holds the id all the same), unless
    the vendor refused that write (Salesforce's ``DUPLICATE_VALUE``: another Account holds the
    id): a refused value is not held, or the record would stay primary and be sent it again."""
    value = _read(record.payload, path)
    if _blank(value):
        value = agreed.get(f"{record.ref}|{path}")
        if not _blank(value) and any(
            _read(payload, path) == value for payload in refused.get(record.ref, ())
        ):
            value = None
    return None if _blank(value) else str(value).strip()


def _by_id(record: _Record) -> str:
    return record.id


# -- storing -------------------------------------------------------------------------------


def _store(conn: Connection, planner: _Planner, now: datetime) -> None:
    report = planner.report
    report.queued = enqueue(conn, (op.planned_write() for op in report.ops), now=now)
    crash_point("plan.enqueue")
    report.superseded = _supersede(conn, planner, now)
    for key, conflicts in _by_record(report.conflicts).items():
        system, obj, record_id = key
        quarantine_record(
            conn,
            system=system,
            object_name=obj,
            external_id=record_id,
            stage=QuarantineStage.PLAN.value,
            reason="conflict: "
            + "; ".join(c.describe() for c in conflicts)
            + ". Make the two systems agree and the next plan goes on.",
            payload={
                "customer_id": conflicts[0].customer_id,
                "conflicts": [
                    {
                        "field": c.field,
                        "path": c.path,
                        "source_system": c.source_system,
                        "source_value": c.source_value,
                        "target_value": c.target_value,
                        "agreed": c.agreed,
                    }
                    for c in conflicts
                ],
            },
            now=now,
        )
    report.resolved = _resolve(conn, planner.considered - planner.in_conflict, now)
    for customer_id, agreed in planner.agreed.items():
        conn.execute(
            insert(_AUDIT).values(
                at=now,
                actor="ledgerlink",
                action=BASELINE_ACTION,
                subject=customer_id,
                details={"agreed": agreed},
            )
        )
    if report.queued or report.conflicts or report.superseded:
        conn.execute(
            insert(_AUDIT).values(
                at=now,
                actor="ledgerlink",
                action=RUN_ACTION,
                subject="plan",
                details=report.as_dict(),
            )
        )


def _by_record(conflicts: Iterable[PlanConflict]) -> dict[tuple[str, str, str], list[PlanConflict]]:
    grouped: dict[tuple[str, str, str], list[PlanConflict]] = defaultdict(list)
    for conflict in conflicts:
        grouped[(conflict.target, conflict.object, conflict.record_id)].append(conflict)
    return dict(grouped)


def _supersede(conn: Connection, planner: _Planner, now: datetime) -> int:
    """Cancel pending updates of planned records that this plan no longer wants."""
    wanted = {op.idempotency_key for op in planner.report.ops}
    rows = conn.execute(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.target,
            _OUTBOX.c.object,
            _OUTBOX.c.remote_id,
            _OUTBOX.c.idempotency_key,
        ).where(
            _OUTBOX.c.entity_kind == PLAN_ENTITY,
            _OUTBOX.c.action == WriteAction.UPDATE.value,
            _OUTBOX.c.status == OutboxStatus.PENDING.value,
            _OUTBOX.c.claimed_by.is_(None),
        )
    )
    stale = [
        row.id
        for row in rows
        if (row.target, row.object, row.remote_id) in planner.considered
        and row.idempotency_key not in wanted
    ]
    if stale:
        conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(stale), _OUTBOX.c.status == OutboxStatus.PENDING.value)
            .values(
                status=OutboxStatus.CANCELLED.value,
                last_error="superseded by a newer plan",
                updated_at=now,
            )
        )
    return len(stale)


def _resolve(conn: Connection, settled: set[tuple[str, str, str]], now: datetime) -> int:
    """Resolve the plan-stage quarantine rows of records that are no longer in conflict."""
    rows = conn.execute(
        select(
            _QUARANTINE.c.id, _QUARANTINE.c.system, _QUARANTINE.c.object, _QUARANTINE.c.external_id
        ).where(
            _QUARANTINE.c.stage == QuarantineStage.PLAN.value,
            _QUARANTINE.c.resolved_at.is_(None),
        )
    )
    ids = [row.id for row in rows if (row.system, row.object, row.external_id) in settled]
    if ids:
        conn.execute(
            update(_QUARANTINE)
            .where(_QUARANTINE.c.id.in_(ids))
            .values(resolved_at=now, updated_at=now)
        )
    return len(ids)


# -- entry points --------------------------------------------------------------------------


def plan(
    store: Store | Engine,
    mappings: MappingSet,
    *,
    now: datetime,
    dry_run: bool = False,
    mapped: MappedRecords | None = None,
    links: Sequence[LinkRow] | None = None,
    landed: bool = True,
) -> PlanReport:
    """Plan the writes that bring every target system in line with the golden customers.

    Reads customers, links, landed records and the outbox; in one transaction queues the
    writes (:func:`ledgerlink.sync.outbox.enqueue`), cancels superseded pending updates,
    quarantines conflicts for review and remembers the agreed values. Safe to call again at
    any time: a change already queued is not queued twice.

    Args:
        store: the store (or its engine).
        mappings: the loaded mappings (``writes`` and ``source_of_truth``).
        now: the time of the plan (timezone-aware UTC).
        dry_run: compute and report only; nothing is stored or queued.
        mapped: the mapped landed records a long-running caller keeps between plans, so that
            only the records changed since the last plan are read and mapped again, and only
            the customers whose records, billing, creates or agreed values changed since
            their last stored plan (or all, on a new day) are planned again; None reads,
            maps and plans everything.
        links: the linked records (:func:`~ledgerlink.sync._landed.read_links`), when the
            caller read them for several planners; None reads them.
        landed: with ``mapped``, False plans from the landed records as the last plan read
            them (a cycle's follow-up right after its push, which lands nothing: what landed
            meanwhile waits for the next plan, which reads it).

    Returns:
        The writes (with their field changes), conflicts and counts.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be timezone-aware"
        raise ValueError(msg)
    started = time.perf_counter()
    engine = store.engine if isinstance(store, Store) else store
    normalizer = Normalizer(mappings)
    looked_at: set[str] | None = None
    with engine.connect() as conn:
        if mapped is None:
            world = _load(conn, mappings, normalizer, links)
        else:
            world, looked_at, seen, covered = _load_kept(
                conn, mappings, normalizer, mapped, now, links=links, landed=landed
            )
    planner = _Planner(mappings, world, now)
    if mapped is None:
        for customer_id in sorted(world.customers):
            planner.customer(customer_id)
    else:
        planned, replanned = _plan_changed(planner, mapped, looked_at)
    report = planner.report
    report.dry_run = dry_run
    if not dry_run:
        with for_writing(engine).begin() as conn:
            _store(conn, planner, now)
        crash_point("plan.committed")
        if mapped is not None:
            _keep(mapped, planner, planned, replanned)
            seen.baselines.update(planner.agreed)  # what the next plan reads back
            mapped.seen = seen
            mapped.unplanned.difference_update(covered)
            mapped.rebilled.difference_update(covered)
            mapped.everything = False
    report.seconds = time.perf_counter() - started
    _log.info("plan.done", **report.as_dict())
    return report


def _plan_changed(
    planner: _Planner, mapped: MappedRecords, looked_at: set[str] | None
) -> tuple[dict[str, _Made], list[str]]:
    """Plan the customers whose inputs moved since their last stored plan (kept records).

    Returns what each customer looked at was planned from (those whose billing records moved
    but not their hub values included, not planned again) and the customers planned.
    """
    world = planner.world
    inputs = _Inputs(world, mapped, planner.now)
    planner.echoes = mapped.echoes
    if not isinstance(mapped.mrr, KeptMrr):
        mapped.mrr = KeptMrr()
    planner.mrr = mapped.mrr
    planner.report.echoes = world.echoes
    planned: dict[str, _Made] = {}
    replanned: list[str] = []
    for customer_id in sorted(world.customers):
        if looked_at is not None and customer_id not in looked_at:
            planner.report.unchanged += 1
            continue
        made_from = inputs.of(customer_id)
        before = mapped.planned.get(customer_id)
        hubs_only = False
        if customer_id not in world.freed and before is not None:
            if before.values == made_from.values and before.billing == made_from.billing:
                planner.report.unchanged += 1
                continue
            if before.values == made_from.values and planner.same_hubs(customer_id, before.hubs):
                # Only billing records moved, not what the hub makes of them.
                made_from.hubs = before.hubs
                made_from.settled, made_from.awaiting = before.settled, before.awaiting
                planned[customer_id] = made_from
                planner.report.unchanged += 1
                planner.report.rebilled += 1
                continue
            # Only billing records moved, and the hub values with them.
            hubs_only = (
                before.values == made_from.values
                and before.settled
                and planner.echoed(customer_id, before.awaiting)
            )
        planned[customer_id] = made_from
        replanned.append(customer_id)
        planner.customer(customer_id, hubs_only=hubs_only)
        made_from.hubs = planner.hubs
        made_from.settled, made_from.awaiting = planner.settled, tuple(planner.awaiting)
    return planned, replanned


def _keep(
    mapped: MappedRecords, planner: _Planner, planned: dict[str, _Made], replanned: list[str]
) -> None:
    """Keep, once a plan is stored, what the next plan compares with."""
    for customer_id, agreed in planner.agreed.items():
        if customer_id in planned:  # the values it agreed on are stored with it
            made = planned[customer_id]
            made.values = (*made.values[:-1], agreed)
    mapped.planned.update(planned)
    if isinstance(mapped.echoes, _Echoes):
        expected = mapped.echoes.expected
        for key in planner.considered:
            expected.pop(key, None)
        expected.update(planner.expected)
    _keep_blocked(mapped.blocked, planner.blocked, replanned)


@dataclass
class _Made:
    """What one customer's stored plan was made from (:class:`_Inputs`)."""

    values: tuple[Any, ...]
    billing: tuple[int, ...]
    """The identities of its billing entities (kept in :attr:`entities`)."""
    entities: tuple[object, ...]
    hubs: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    """The hub values the plan used (:attr:`_Planner.hubs`)."""
    settled: bool = False
    """Whether that plan held none of the fields but the hub values' for review, nor kept
    one from a record because another record holds its value (:attr:`_Planner.settled`)."""
    awaiting: tuple[tuple[str, str, str], ...] = ()
    """The records that plan wrote such fields to (:attr:`_Planner.awaiting`): once they
    hold what it wrote, the next plan of the same inputs but billing may plan the hub
    values alone."""


class _Inputs:
    """What a customer's plan is made from, to tell whether it changed since the last plan.

    A plan of one customer reads its golden record (version, lineage), its linked records (and
    the updates of them the vendor refused; a record is compared by its version, which moves
    whenever it lands other than as the echo of the hub's own write,
    :meth:`MappedRecords.settle`), its billing records (mapped entities: :class:`MappedRecords`
    keeps the same object while a record is unchanged, so identity is compared; when only
    they moved, the customer is planned again only if the hub values made of them moved), the
    hub's creates for it (done, open, refused), its agreed values and the day (hub values such
    as MRR follow the date). One thing it reads is not here: the names other customers'
    records hold (a create or a name write avoids them); they are seen again by the day's
    first plan.
    """

    def __init__(self, world: _World, mapped: MappedRecords, now: datetime) -> None:
        self.world = world
        self.mapped = mapped
        self.day = now.date()
        self.creates: dict[str, list[Any]] = defaultdict(list)
        for key, remote in world.created.items():
            self.creates[key[0]].append((key, remote))
        for key in world.open_creates:
            self.creates[key[0]].append((key, "open"))
        for key, count in world.refused_names.items():
            self.creates[key[0]].append((key, count))

    def _order(self, records: Sequence[_Record]) -> tuple[str, ...] | None:
        """The order the plan takes values from the customer's records of one system in
        (:meth:`_Planner._sources`), when a system has several: a record landing again moves
        it, whatever it holds."""
        systems = [r.system for r in records]
        if len(set(systems)) == len(systems):
            return None
        copies = self.world.copies
        ranked = sorted(records, key=lambda r: (r.system, *_source_rank(r, copies)))
        return tuple(r.ref for r in ranked)

    def of(self, customer_id: str) -> _Made:
        row = self.world.customers[customer_id]
        billing = self.world.billing.get(customer_id) or Billing()
        records = self.world.records.get(customer_id, ())
        entities: tuple[object, ...] = (
            *billing.invoices,
            *billing.payments,
            *billing.subscriptions,
        )
        version = self.mapped.version
        values = (
            self.day,
            row.version,
            repr(row.lineage),
            tuple((r.ref, version((r.system, r.object, r.id))) for r in records),
            self._order(records),
            sorted(self.creates.get(customer_id, ()), key=repr),
            [
                repr(self.world.refused[r.ref])
                for r in self.world.records.get(customer_id, ())
                if r.ref in self.world.refused
            ],
            self.world.baselines.get(customer_id),  # last: a stored plan puts its own here
        )
        return _Made(values, tuple(map(id, entities)), entities)


def record_results(conn: Connection, writes: Sequence[PushedWrite]) -> None:
    """Push callback: link each record the hub created to its customer, in the push's transaction.

    A created record is linked with method ``created``: matching keeps it with its customer
    once it lands, and the next plan updates it instead of creating another. A QuickBooks
    customer the ledger made for a customer's other currency is linked the same way.
    """
    for write in writes:
        if (
            write.entity_kind not in (PLAN_ENTITY, CUSTOMER_ENTITY)
            or write.action != WriteAction.CREATE.value
            or not write.remote_id
            or not write.entity_id
        ):
            continue
        # The ledger's QuickBooks customer in another currency (``EUR:<customer id>``).
        customer_id = (
            write.entity_id.partition(":")[2]
            if write.entity_kind == CUSTOMER_ENTITY
            else write.entity_id
        )
        exists = conn.execute(
            select(_LINK.c.id).where(
                _LINK.c.system == write.target,
                _LINK.c.object == write.object,
                _LINK.c.external_id == write.remote_id,
            )
        ).first()
        customer = conn.execute(select(_CUSTOMER.c.id).where(_CUSTOMER.c.id == customer_id)).first()
        if exists is not None or customer is None:
            continue
        now = utcnow()
        conn.execute(
            insert(_LINK).values(
                system=write.target,
                object=write.object,
                external_id=write.remote_id,
                customer_id=customer_id,
                score=1.0,
                method=LinkMethod.CREATED.value,
                status=LinkStatus.LINKED.value,
                reasons=[{"kind": "created", "idempotency_key": write.idempotency_key}],
                created_at=now,
                updated_at=now,
            )
        )
