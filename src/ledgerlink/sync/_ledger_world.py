"""What the ledger planner reads from the store: landed Stripe and QuickBooks records, links
and the ledger's own outbox rows, loaded in one read transaction."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from ledgerlink.store.models import Outbox, SourceRecord
from ledgerlink.sync._landed import LOOKBACK, ChangedRecords, LinkRow, read_links
from ledgerlink.sync._packed import PackedPayloads, pack, unpack

__all__ = [
    "CUSTOMER_ENTITY",
    "CUSTOMER_FIELDS",
    "DOCUMENT_ENTITY",
    "ITEM_ENTITY",
    "PLAN_ENTITY",
    "STRIPE_OBJECTS",
    "FinalIds",
    "KeptLedgerWorld",
    "LedgerRow",
    "LedgerWorld",
    "MadeCustomer",
    "currency_customer",
    "load_world",
    "stripe_note",
]

DOCUMENT_ENTITY = "ledger"
"""``entity_kind`` of a posted document's outbox rows; ``entity_id`` is the Stripe object id."""
ITEM_ENTITY = "ledger_item"
"""``entity_kind`` of QuickBooks item creations; ``entity_id`` is the item's ``Name``."""
CUSTOMER_ENTITY = "ledger_customer"
"""``entity_kind`` of a QuickBooks customer the ledger creates for a customer's other currency;
``entity_id`` is ``<currency>:<golden customer id>`` (see :func:`currency_customer`)."""
PLAN_ENTITY = "customer"
"""``entity_kind`` of the customer planner's outbox rows (their ``entity_id`` is the customer
id); the ledger reads its QuickBooks customer creations (:attr:`LedgerWorld.made_customers`)."""
STRIPE_OBJECTS = (
    "invoices",
    "charges",
    "refunds",
    "credit_notes",
    "payouts",
    "balance_transactions",
)
PAYOUT_TIES = "payout_transactions"
"""Landed object (system ``stripe``) tying a payout to the balance transactions it paid out."""
_QB_DOCUMENTS = ("Invoice", "Payment", "RefundReceipt", "CreditMemo", "Deposit", "JournalEntry")
CUSTOMER_FIELDS = ("CompanyName", "PrimaryEmailAddr", "PrimaryPhone", "WebAddr", "BillAddr")
"""What a customer the ledger makes in another currency copies from the customer's own, so that
matching sees the same company (a name alone would not vouch for it)."""
_NOTE = re.compile(r"\bstripe:([A-Za-z0-9_]+)")
_VOIDED = "Voided"
"""What QuickBooks puts before the ``PrivateNote`` of a voided document."""
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]


def currency_customer(currency: str, customer_id: str) -> str:
    """The ``entity_id`` of the QuickBooks customer in ``currency`` of golden ``customer_id``."""
    return f"{currency.upper()}:{customer_id}"


def stripe_note(stripe_id: str) -> str:
    """The ``PrivateNote`` a posted document carries, so QuickBooks itself shows its source."""
    return f"ledgerlink stripe:{stripe_id}"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """The newest outbox row of one (entity, QuickBooks object), and the id it got."""

    id: int
    action: str
    status: str
    packed: bytes
    """The row's payload as JSON (:func:`~ledgerlink.sync._packed.pack`): a kept world holds
    one row per document, and a payload as a dict takes six times the room."""
    remote_id: str | None

    @property
    def payload(self) -> dict[str, Any]:
        """The payload the row sends (a fresh dict)."""
        return unpack(self.packed)


@dataclass(frozen=True, slots=True)
class MadeCustomer:
    """A QuickBooks customer the customer planner created, as it was sent (until it lands)."""

    currency: str | None
    """Its ``CurrencyRef``; None: sent without one, so in the company's home currency."""
    name: str
    fields: Mapping[str, Any]


class FinalIds:
    """The Stripe ids a plan found final (see :attr:`LedgerWorld.final`), a set that also
    keeps the ids it does not hold, so that a kept plan finds the objects left to look at
    without a pass over every object.

    ``open`` is every landed Stripe id not held here (and perhaps ids no longer landed):
    :meth:`landed` adds an object as it lands, :meth:`discard` gives an id back, :meth:`add`
    takes it. :meth:`clear` forgets it; :meth:`open_in` computes it again from every landed
    object the next time it is asked.
    """

    __slots__ = ("_final", "_open")

    def __init__(self) -> None:
        self._final: set[str] = set()
        self._open: set[str] | None = None

    def add(self, stripe_id: str) -> None:
        self._final.add(stripe_id)
        if self._open is not None:
            self._open.discard(stripe_id)

    def discard(self, stripe_id: str) -> None:
        self._final.discard(stripe_id)
        if self._open is not None:
            self._open.add(stripe_id)

    def clear(self) -> None:
        self._final.clear()
        self._open = None

    def landed(self, stripe_id: str) -> None:
        """Note a Stripe object that landed (new or changed)."""
        if self._open is not None and stripe_id not in self._final:
            self._open.add(stripe_id)

    def open_in(self, keys: KeysView[str], every: Iterable[KeysView[str]]) -> set[str]:
        """The ids of ``keys`` not held here; ``every``: the ids of every landed object (read
        only when the open ids are not known)."""
        if self._open is None:
            self._open = set().union(*(k - self._final for k in every))
        return keys & self._open

    def __contains__(self, stripe_id: object) -> bool:
        return stripe_id in self._final

    def __iter__(self) -> Iterator[str]:
        return iter(self._final)

    def __len__(self) -> int:
        return len(self._final)

    def __repr__(self) -> str:
        return f"<FinalIds: {len(self._final)} final>"


@dataclass
class LedgerWorld:
    """Everything one ledger plan reads.

    ``in_quickbooks`` maps (QuickBooks object, Stripe id) to the id of a landed document that
    carries ``stripe:<id>`` in its ``PrivateNote``; ``voided`` holds those QuickBooks shows as
    voided (the note starts with "Voided"); ``landed_credit_memos`` keeps the landed credit
    memos' bodies (by Stripe id), which a void empties. ``quickbooks_customers`` lists the
    QuickBooks customers linked to each golden customer; ``customer_currency`` and
    ``customer_name`` are a landed QuickBooks customer's ``CurrencyRef`` and ``DisplayName``,
    ``customer_fields`` its company name, e-mail, phone, website and billing address;
    ``made_customers`` the same of the customers the customer planner created, as sent.
    """

    stripe: dict[str, PackedPayloads] = field(default_factory=dict)
    changed_at: dict[str, datetime] = field(default_factory=dict)
    ties: dict[str, list[str]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    in_quickbooks: dict[tuple[str, str], str] = field(default_factory=dict)
    voided: set[tuple[str, str]] = field(default_factory=set)
    landed_credit_memos: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    customer_of: dict[tuple[str, str, str], str] = field(default_factory=dict)
    quickbooks_customer: dict[str, str] = field(default_factory=dict)
    quickbooks_customers: dict[str, list[str]] = field(default_factory=dict)
    customer_currency: dict[str, str] = field(default_factory=dict)
    customer_name: dict[str, str] = field(default_factory=dict)
    customer_fields: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    made_customers: dict[str, MadeCustomer] = field(default_factory=dict)
    """QuickBooks customer id -> what the customer planner sent to create it: its currency and
    name are known from the moment the create is done, a pass before it lands."""
    rows: dict[tuple[str, str, str], LedgerRow] = field(default_factory=dict)
    created: dict[tuple[str, str, str], str] = field(default_factory=dict)
    made_in: dict[str, str] = field(default_factory=dict)
    """QuickBooks customer id -> the currency the ledger created it in (its customers in
    another currency than their first, from :attr:`created`)."""
    references: int = 0
    """Moves when a QuickBooks account or item name that documents refer to resolves to
    another id (or to none); not when a name resolves for the first time (an account or
    item created or landed), which no posted document can use yet."""
    settled: dict[tuple[str, str], tuple[int, tuple[Any, ...]]] = field(default_factory=dict)
    """(QuickBooks object, Stripe id) of an amendable document found equal to its sent row ->
    (that row's id, the ``changed_at`` of the Stripe object and of those it is built from,
    and :attr:`references`): while these stay, the planner need not build it again to compare
    (see ``ledger._Planner.post``)."""
    held: dict[tuple[str, str], tuple[tuple[Any, ...], str]] = field(default_factory=dict)
    """(QuickBooks object, Stripe id) of a document held for a missing exchange rate ->
    (the ``changed_at`` of the Stripe objects it was built from and :attr:`references`, the
    reason): while those stay, building it again would fail the same way."""
    final: FinalIds = field(default_factory=FinalIds)
    """Stripe ids whose outcome a plan found final: posted (a document that is not amended,
    or an amendable one found equal to its row) or skipped for a reason of its own (a draft,
    a failed charge). Decided from the object, its outbox rows and its landed QuickBooks
    document alone, so it holds until one of those changes (:attr:`touched`)."""
    dependents: dict[str, set[str]] = field(default_factory=dict)
    """Stripe id -> the documents built from it that are final for now: held for a missing
    rate (:attr:`held`) or settled (:attr:`settled`, an invoice built from its charge and the
    charge's balance transaction). A change to it makes the planner look at them again."""
    waits: dict[str, str] = field(default_factory=dict)
    """Stripe ids in :attr:`final` whose document waits for something named in
    :attr:`dependents` (the Stripe customer's match, the invoice's QuickBooks document) ->
    the reason; counted as waiting by plans that do not look at them again."""
    final_references: int = -1
    """:attr:`references` when :attr:`final` was last emptied for it."""
    touched: set[str] = field(default_factory=set)
    """Stripe ids whose object, ledger outbox rows or landed QuickBooks document changed in
    the last refresh (a kept world's; a fresh world has no :attr:`final` to revise)."""
    settled_for: Any = None
    """What :attr:`settled` and :attr:`held` were computed with (the mappings and valuation
    options, whose rate table decides what is held)."""

    def remote_id(self, kind: str, entity_id: str, obj: str) -> str | None:
        """The QuickBooks id of a document or item, from the outbox or the landed record."""
        return self.created.get((kind, entity_id, obj)) or self.in_quickbooks.get((obj, entity_id))


def _document_facts(payload: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The Stripe id a landed QuickBooks document names, and whether it shows as voided."""
    note = str(payload.get("PrivateNote") or "")
    found = _NOTE.search(note)
    return (found.group(1) if found else None), note.startswith(_VOIDED)


_SOURCE_KINDS = (
    *(("stripe", obj) for obj in (*STRIPE_OBJECTS, PAYOUT_TIES)),
    *(("quickbooks", obj) for obj in ("Account", "Item", "Customer", *_QB_DOCUMENTS)),
)
_OUTBOX_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.entity_kind,
    _OUTBOX.c.entity_id,
    _OUTBOX.c.object,
    _OUTBOX.c.action,
    _OUTBOX.c.status,
    _OUTBOX.c.payload,
    _OUTBOX.c.remote_id,
)
_LEDGER_ROWS = (
    _OUTBOX.c.target == "quickbooks",
    or_(
        _OUTBOX.c.entity_kind.in_([DOCUMENT_ENTITY, ITEM_ENTITY, CUSTOMER_ENTITY]),
        and_(
            _OUTBOX.c.entity_kind == PLAN_ENTITY,
            _OUTBOX.c.object == "Customer",
            _OUTBOX.c.action == "create",
        ),
    ),
)
"""The ledger's own rows, and the customer planner's QuickBooks customer creations."""
_KIND = func.coalesce(_OUTBOX.c.entity_kind, "")
_LEDGER_ROWS_ABOVE = (
    _OUTBOX.c.target == "quickbooks",
    or_(
        _KIND.in_([DOCUMENT_ENTITY, ITEM_ENTITY, CUSTOMER_ENTITY]),
        and_(_KIND == PLAN_ENTITY, _OUTBOX.c.object == "Customer", _OUTBOX.c.action == "create"),
    ),
)
""":data:`_LEDGER_ROWS` for a read of the rows above an id: the same rows, with the kind not
in a form the index on (kind, entity) serves, so that SQLite reads the id range (a few rows)
instead of every ledger row of the index and then their ids."""
_CHUNK = 500
_DONE = "done"
_CANCELLED = "cancelled"
_NOT_DONE = ("pending", "in_flight", "failed", _CANCELLED)


class KeptLedgerWorld:
    """A :class:`LedgerWorld` kept between plans of one store, refreshed from what changed.

    The first :meth:`refresh` reads everything, as :func:`load_world` does. Later ones read the
    landed records whose ``changed_at`` moved since the newest change seen (less
    :data:`~ledgerlink.sync._landed.LANDING_LOOKBACK`, for the clock's adjustments; a
    tombstone moves ``changed_at`` too), the ledger's outbox rows inserted since (from an id seen
    :data:`LOOKBACK` ago, for inserts that committed late) and the state of the rows not done
    yet (a done row never changes; pending, in-flight, failed and cancelled ones may). Links
    are read whole (a few per customer); a Stripe customer whose QuickBooks customer may have
    changed with them is :attr:`~LedgerWorld.touched`. The result equals a fresh
    :func:`load_world`.

    Safe to share between threads: one refresh at a time.
    """

    def __init__(self) -> None:
        self.world = LedgerWorld()
        self._lock = threading.Lock()
        self._loaded = False
        self._changes = ChangedRecords()
        self._ids: list[tuple[float, int]] = []
        """(monotonic time, highest outbox id seen) of recent refreshes."""
        self._open: dict[int, tuple[tuple[str, str, str], str]] = {}
        """Rows not done yet: id -> (key, status)."""
        self._recent: set[int] = set()
        """Ids of the rows seen above the lookback's id (see :meth:`_refresh_rows`)."""
        self._moved: set[tuple[str, str, str]] = set()
        """Keys whose newest live row must be read again (one of theirs was cancelled or
        revived)."""
        self._accounts: dict[str, str] = {}
        self._items: dict[str, str] = {}
        self._documents: dict[tuple[str, str], tuple[str | None, bool]] = {}
        self._customers_landed: set[str] = set()
        """QuickBooks customers landed by this refresh (read by :meth:`_refresh_links`)."""
        self._links: Sequence[LinkRow] = ()
        """The linked records as the last refresh read them."""
        self._stripe_of: dict[str, list[str]] = {}
        """Golden customer -> its linked Stripe customers, as the last links read them."""
        self.reread = 0
        """Landed records and outbox rows read by the last refresh."""

    def refresh(
        self, conn: Connection, links: Sequence[LinkRow] | None = None, *, landed: bool = True
    ) -> LedgerWorld:
        """The world as the store holds it now (``links``: the linked records, when the
        caller read them already; not ``landed``: the landed records as the last refresh
        read them, the links and outbox rows read again)."""
        with self._lock:
            self.reread = 0
            self.world.touched = set()
            if landed or not self._loaded:
                self._refresh_landed(conn)
            self._refresh_links(conn, links)
            self._refresh_rows(conn)
            self._loaded = True
            return self.world

    # -- landed records --------------------------------------------------------------------

    def _refresh_landed(self, conn: Connection) -> None:
        references = documents = False
        self._changes.begin()
        for system, obj in _SOURCE_KINDS:
            for row in self._changes.rows(conn, system, obj):
                payload: Mapping[str, Any] | None = (
                    None if row.deleted_at is not None else (row.payload or {})
                )
                if system == "stripe":
                    self._land_stripe(obj, row.external_id, payload, row.changed_at)
                elif obj in ("Account", "Item"):
                    references |= self._land_reference(obj, row.external_id, payload)
                elif obj == "Customer":
                    self._land_customer(row.external_id, payload)
                else:
                    documents |= self._land_quickbooks(obj, row.external_id, payload)
        self._changes.end()
        self.reread += self._changes.read
        if references or not self._loaded:
            world = self.world
            accounts, items = _by_name(self._accounts), _by_name(self._items)
            if (
                not self._loaded
                or _moved(world.accounts, accounts)
                or _moved(self._items_resolved(world.items), self._items_resolved(items))
            ):
                world.references += 1
            world.accounts, world.items = accounts, items
        if documents:
            self._rebuild_documents()

    def _items_resolved(self, items: Mapping[str, str]) -> dict[str, str]:
        """Item name -> the id documents refer to for it, as the planner resolves it: the
        landed item of that name, else the one the ledger created."""
        created = {
            key[1].strip().lower(): remote
            for key, remote in self.world.created.items()
            if key[0] == ITEM_ENTITY
        }
        return {**created, **items}

    def _land_reference(self, obj: str, remote_id: str, payload: Mapping[str, Any] | None) -> bool:
        """Note a landed account or item; True when its name changed."""
        names = self._accounts if obj == "Account" else self._items
        name = None if payload is None else str(payload.get("Name", "")).strip().lower()
        if names.get(remote_id) == name:
            return False
        if name is None:
            names.pop(remote_id, None)
        else:
            names[remote_id] = name
        return True

    def _land_stripe(
        self, obj: str, stripe_id: str, payload: Mapping[str, Any] | None, changed: datetime
    ) -> None:
        world = self.world
        world.touched.add(stripe_id)
        if obj == PAYOUT_TIES:
            if payload is None:
                world.ties.pop(stripe_id, None)
            else:
                world.ties[stripe_id] = [str(t) for t in payload.get("balance_transactions", [])]
            return
        objects = world.stripe.setdefault(obj, PackedPayloads())
        if payload is None:
            objects.pop(stripe_id, None)
            world.changed_at.pop(stripe_id, None)
            world.waits.pop(stripe_id, None)
        else:
            objects[stripe_id] = payload
            world.changed_at[stripe_id] = changed
            world.final.landed(stripe_id)

    def _land_customer(self, remote_id: str, payload: Mapping[str, Any] | None) -> None:
        world = self.world
        self._customers_landed.add(remote_id)
        world.customer_currency.pop(remote_id, None)
        if payload is None:
            world.customer_name.pop(remote_id, None)
            world.customer_fields.pop(remote_id, None)
            return
        currency = (payload.get("CurrencyRef") or {}).get("value")
        if currency:
            world.customer_currency[remote_id] = str(currency).upper()
        world.customer_name[remote_id] = str(payload.get("DisplayName") or "")
        world.customer_fields[remote_id] = {
            k: payload[k] for k in CUSTOMER_FIELDS if payload.get(k)
        }

    def _land_quickbooks(self, obj: str, remote_id: str, payload: Mapping[str, Any] | None) -> bool:
        """Note a landed document; True when the world must be rebuilt from all documents
        (one changed what it names or was deleted: rare)."""
        key = (obj, remote_id)
        before = self._documents.get(key)
        if payload is None:
            if before is None:
                return False
            del self._documents[key]
            return before[0] is not None
        facts = _document_facts(payload)
        self._documents[key] = facts
        if facts[0] is not None:
            self.world.touched.add(facts[0])
        if facts[0] is not None and obj == "CreditMemo":
            self.world.landed_credit_memos[facts[0]] = payload
        if before is not None and before != facts and before[0] is not None:
            return True
        if facts[0] is not None:
            self.world.in_quickbooks.setdefault((obj, facts[0]), remote_id)
            if facts[1]:
                self.world.voided.add((obj, facts[0]))
        return False

    def _rebuild_documents(self) -> None:
        world = self.world
        world.final.clear()  # a document left QuickBooks or changed what it names: rare
        world.waits.clear()
        world.in_quickbooks, world.voided = {}, set()
        memos = world.landed_credit_memos
        world.landed_credit_memos = {}
        for (obj, remote_id), (stripe_id, voided) in self._documents.items():
            if stripe_id is None:
                continue
            world.in_quickbooks.setdefault((obj, stripe_id), remote_id)
            if voided:
                world.voided.add((obj, stripe_id))
            if obj == "CreditMemo" and stripe_id in memos:
                world.landed_credit_memos[stripe_id] = memos[stripe_id]

    # -- links -----------------------------------------------------------------------------

    def _refresh_links(self, conn: Connection, links: Sequence[LinkRow] | None) -> None:
        world = self.world
        rows = read_links(conn) if links is None else links
        if self._loaded and rows == self._links:
            # The links of the last refresh (a list compared in C): only the Stripe customers
            # of the QuickBooks customers that landed are touched.
            for remote in self._customers_landed:
                owner = world.customer_of.get(("quickbooks", "Customer", remote))
                if owner is not None:
                    world.touched.update(self._stripe_of.get(owner, ()))
            self._customers_landed = set()
            return
        self._links = rows
        before_of, before_qb = world.customer_of, world.quickbooks_customers
        before_stripe = self._stripe_of
        customer_of: dict[tuple[str, str, str], str] = {}
        quickbooks: dict[str, list[str]] = {}
        stripe: dict[str, list[str]] = {}
        for system, obj, external_id, customer in rows:
            customer_of[(system, obj, external_id)] = customer
            if system == "quickbooks" and obj == "Customer":
                quickbooks.setdefault(customer, []).append(external_id)
            elif system == "stripe" and obj == "customers":
                stripe.setdefault(customer, []).append(external_id)
        world.customer_of, world.quickbooks_customers = customer_of, quickbooks
        world.quickbooks_customer = {c: ids[0] for c, ids in quickbooks.items()}
        self._stripe_of = stripe
        if self._loaded:
            self._touch_matches(before_of, before_qb, before_stripe)
        self._customers_landed = set()

    def _touch_matches(
        self,
        before_of: Mapping[tuple[str, str, str], str],
        before_qb: Mapping[str, list[str]],
        before_stripe: Mapping[str, list[str]],
    ) -> None:
        """Touch the Stripe customers whose QuickBooks customer may have changed: their link
        moved, their customer's QuickBooks customers changed, or one of those landed (what a
        document waiting for its customer waits on)."""
        world = self.world
        after_qb = world.quickbooks_customers
        moved = {
            c for c in before_qb.keys() | after_qb.keys() if before_qb.get(c) != after_qb.get(c)
        }
        for remote in self._customers_landed:
            owner = world.customer_of.get(("quickbooks", "Customer", remote))
            if owner is not None:
                moved.add(owner)
        # Links made, moved or gone: a set operation on the items (in C, every link a pass).
        for (system, obj, external_id), _ in world.customer_of.items() ^ before_of.items():
            if system == "stripe" and obj == "customers":
                world.touched.add(external_id)
        for customer in moved:  # their Stripe customers, linked now or before
            world.touched.update(self._stripe_of.get(customer, ()))
            world.touched.update(before_stripe.get(customer, ()))

    # -- the ledger's outbox rows ----------------------------------------------------------

    def _refresh_rows(self, conn: Connection) -> None:
        clock = time.monotonic()
        after = self._outbox_after(clock)
        highest = self._ids[-1][1] if self._ids else 0
        # Cancelled rows are read too and kept track of (a retry revives them); the world
        # never holds them.
        query = select(*_OUTBOX_COLUMNS).where(*_LEDGER_ROWS).order_by(_OUTBOX.c.id)
        if after is not None:
            # Rows above the highest id seen, whole; within the lookback, only the ids, and
            # whole only those not seen yet (a transaction that committed after a higher id).
            query = (
                select(*_OUTBOX_COLUMNS)
                .where(*_LEDGER_ROWS_ABOVE, _OUTBOX.c.id > highest)
                .order_by(_OUTBOX.c.id)
            )
            span = (*_LEDGER_ROWS_ABOVE, _OUTBOX.c.id > after, _OUTBOX.c.id <= highest)
            # Rows are never deleted and the filter reads columns that never change, so when
            # the store holds as many rows in the window as were read there, none is unseen:
            # a count instead of every id (all of a large push's rows, for a minute after it).
            read = sum(1 for row_id in self._recent if after < row_id <= highest)
            held = conn.execute(select(func.count()).select_from(_OUTBOX).where(*span))
            late = (
                []
                if held.scalar_one() == read
                else [
                    row_id
                    for row_id in conn.execute(select(_OUTBOX.c.id).where(*span)).scalars()
                    if row_id not in self._recent
                ]
            )
            for start in range(0, len(late), _CHUNK):
                chunk = late[start : start + _CHUNK]
                for out in conn.execute(
                    select(*_OUTBOX_COLUMNS).where(_OUTBOX.c.id.in_(chunk)).order_by(_OUTBOX.c.id)
                ):
                    self.reread += 1
                    self._recent.add(out.id)
                    self._apply(out)
            self._recent = {i for i in self._recent if i > after}
        for out in conn.execute(query):
            self.reread += 1
            highest = max(highest, out.id)
            self._recent.add(out.id)
            self._apply(out)
        if after is not None:
            self._refresh_open(conn)
        moved, self._moved = self._moved, set()
        for key in moved:
            self._reload_key(conn, key)
        window = LOOKBACK.total_seconds()
        older = [entry for entry in self._ids if clock - entry[0] >= window]
        self._ids = [*older[-1:], *(e for e in self._ids if clock - e[0] < window)]
        self._ids.append((clock, highest))

    def _outbox_after(self, clock: float) -> int | None:
        """Read the rows above this id: the highest seen by the newest refresh made at least
        :data:`LOOKBACK` ago (so a row that committed after a higher one is still read), else
        by the first refresh; None before the first."""
        if not self._loaded or not self._ids:
            return None
        older = [seen for at, seen in self._ids if clock - at >= LOOKBACK.total_seconds()]
        return older[-1] if older else self._ids[0][1]

    def _apply(self, out: Any) -> None:
        """Take one outbox row (read in id order) into the world."""
        key = (out.entity_kind, out.entity_id, out.object)
        if out.status != _DONE:
            self._open[out.id] = (key, out.status)
        else:
            self._open.pop(out.id, None)
        world = self.world
        if out.entity_kind == PLAN_ENTITY:
            if out.status == _DONE and out.remote_id:
                world.made_customers[out.remote_id] = _made_customer(out.payload or {})
            return
        current = world.rows.get(key)
        if out.status == _CANCELLED:
            if current is not None and current.id == out.id:
                self._moved.add(key)  # it was the newest live row: another one is now
                world.touched.add(out.entity_id)
            return
        if current is None or current.id <= out.id:
            row = LedgerRow(out.id, out.action, out.status, pack(out.payload or {}), out.remote_id)
            if row != current:  # a row read again in the lookback, unchanged, touches nothing
                world.rows[key] = row
                world.touched.add(out.entity_id)
        if out.status == _DONE and out.remote_id and key not in world.created:
            world.created[key] = out.remote_id
            if key[0] == CUSTOMER_ENTITY:
                world.made_in[out.remote_id] = key[1].split(":", 1)[0]
            world.touched.add(out.entity_id)
            # An item the ledger created (ITEM_ENTITY) now resolves its name: no document
            # used it yet (one that needs it waits, and is looked at again each plan), so
            # nothing is compared again for it (see _moved).

    def _refresh_open(self, conn: Connection) -> None:
        """Bring the rows not done at the last refresh up to date."""
        if not self._open:
            return
        now_open = {
            row.id: row.status
            for row in conn.execute(
                select(_OUTBOX.c.id, _OUTBOX.c.status).where(
                    *_LEDGER_ROWS, _OUTBOX.c.status.in_(_NOT_DONE)
                )
            )
        }
        finished: list[int] = []
        for row_id, (key, status) in list(self._open.items()):
            now = now_open.get(row_id, _DONE)
            if now == status:
                continue
            self.world.touched.add(key[1])
            if _CANCELLED in (now, status):
                self._moved.add(key)  # the newest live row of the key may be another one now
            if now == _DONE:
                finished.append(row_id)
                del self._open[row_id]
            else:
                self._open[row_id] = (key, now)
                row = self.world.rows.get(key)
                if row is not None and row.id == row_id:
                    self.world.rows[key] = replace(row, status=now)
        for start in range(0, len(finished), _CHUNK):
            chunk = finished[start : start + _CHUNK]
            for out in conn.execute(
                select(*_OUTBOX_COLUMNS).where(_OUTBOX.c.id.in_(chunk)).order_by(_OUTBOX.c.id)
            ):
                self.reread += 1
                self._apply(out)

    def _reload_key(self, conn: Connection, key: tuple[str, str, str]) -> None:
        kind, entity_id, obj = key
        self.world.rows.pop(key, None)
        made = self.world.created.pop(key, None)
        if made is not None and kind == CUSTOMER_ENTITY:
            self.world.made_in.pop(made, None)
        for out in conn.execute(
            select(*_OUTBOX_COLUMNS)
            .where(
                *_LEDGER_ROWS,
                _OUTBOX.c.entity_kind == kind,
                _OUTBOX.c.entity_id == entity_id,
                _OUTBOX.c.object == obj,
            )
            .order_by(_OUTBOX.c.id)
        ):
            self.reread += 1
            self._apply(out)


def _made_customer(payload: Mapping[str, Any]) -> MadeCustomer:
    currency = payload.get("CurrencyRef")
    return MadeCustomer(
        currency=str(currency["value"]).upper()
        if isinstance(currency, Mapping) and currency.get("value")
        else None,
        name=str(payload.get("DisplayName") or ""),
        fields={k: payload[k] for k in CUSTOMER_FIELDS if payload.get(k)},
    )


def _moved(before: Mapping[str, str], after: Mapping[str, str]) -> bool:
    """Whether a name that resolved to an id now resolves to another or to none: the
    documents posted with it must be compared again. A name resolving for the first time
    moves nothing, as no document could use it before."""
    return any(after.get(name) != remote for name, remote in before.items())


def _by_name(names: Mapping[str, str]) -> dict[str, str]:
    """Name -> id, the first id of each name (ids in order of their number, then text)."""
    found: dict[str, str] = {}
    for remote_id in sorted(names, key=lambda i: (len(i), i)):
        found.setdefault(names[remote_id], remote_id)
    return found


def load_world(conn: Connection, links: Sequence[LinkRow] | None = None) -> LedgerWorld:
    """Read the landed records, links and ledger outbox rows the planner needs."""
    return KeptLedgerWorld().refresh(conn, links)
