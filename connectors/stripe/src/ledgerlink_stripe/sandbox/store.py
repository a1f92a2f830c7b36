"""The sandbox's state: seeded objects plus everything clients created or changed.

:class:`ObjectStore` lists a kind newest first, as Stripe does, over the lazily generated seed
and the objects added since; :class:`SandboxState` adds the event log (kept about 30 days),
saved idempotent responses, the clock and the webhook endpoints.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import secrets
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledgerlink.connector.sandbox import pack_record, unpack_record
from ledgerlink_stripe.sandbox.data import SeedCatalog, SeedKind

__all__ = [
    "EVENT_RETENTION_SECONDS",
    "EventLog",
    "ObjectStore",
    "SandboxState",
    "SavedResponse",
    "WebhookEndpoint",
    "new_id",
]

JSON = dict[str, Any]
EVENT_RETENTION_SECONDS = 30 * 86_400
_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """Return a fresh id with Stripe's shape (``cus_`` + 14 characters, never a seeded one)."""
    return prefix + "2" + "".join(secrets.choice(_ID_CHARS) for _ in range(13))


pack = pack_record
"""Kept records' form (see :func:`ledgerlink.connector.sandbox.pack_record`)."""
unpack = unpack_record


class EventLog:
    """The event log, oldest first: each event kept packed, its id, type and time beside it.

    An event holds a whole snapshot of its object, and ``/v1/events`` lists read only the few
    they return, so the log keeps the small fields a list filters on and decodes an event (a
    fresh copy) only when it is read. Reads by position count from the oldest kept event.
    While events come in ``created`` order (the sandbox's clock does not go back), a
    ``created`` bound is a binary search, so a list of the last minute's events does not walk
    the whole log, as Stripe's own index would not; and each type keeps the numbers of its
    events, so a list of a few types (a reader's stream whose objects rarely change) looks at
    their events only, not at every event since its start.
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._created: list[int] = []
        self._types: list[str] = []
        self._bodies: list[bytes | JSON] = []
        self._number: dict[str, int] = {}  # id -> number of the event since the log began
        self._by_type: dict[str, array[int]] = {}  # type -> its events' numbers, ascending
        self._dropped = 0  # events pruned from the front
        self._ordered = True  # every event created at or after the one before

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, position: int) -> JSON:
        return unpack(self._bodies[position])

    def __iter__(self) -> Iterator[JSON]:
        for body in list(self._bodies):
            yield unpack(body)

    def append(self, event: JSON) -> None:
        """Keep ``event`` (a snapshot: later changes to the dict are not seen)."""
        created = int(event["created"])
        if self._created and created < self._created[-1]:
            self._ordered = False
        number = self._dropped + len(self._ids)
        self._number[event["id"]] = number
        self._by_type.setdefault(event["type"], array("q")).append(number)
        self._ids.append(event["id"])
        self._created.append(created)
        self._types.append(event["type"])
        self._bodies.append(pack(event))

    def position(self, event_id: str) -> int | None:
        """Position of event ``event_id``, or None when it is not kept."""
        number = self._number.get(event_id)
        return None if number is None else number - self._dropped

    def created(self, position: int) -> int:
        """``created`` of the event at ``position``."""
        return self._created[position]

    def type(self, position: int) -> str:
        """``type`` of the event at ``position``."""
        return self._types[position]

    def of_types(
        self, types: list[str], start: int, stop: int, *, newest_first: bool
    ) -> Iterator[int]:
        """Positions in ``[start, stop)`` of the events of ``types`` (exact, or a prefix
        ending in ``*``), in log order or newest first."""
        low, high = start + self._dropped, stop + self._dropped
        runs: list[Iterator[int]] = []
        for kind, numbers in self._by_type.items():
            if not any(t == kind or (t.endswith("*") and kind.startswith(t[:-1])) for t in types):
                continue
            run = numbers[bisect.bisect_left(numbers, low) : bisect.bisect_left(numbers, high)]
            runs.append(reversed(run) if newest_first else iter(run))
        for number in heapq.merge(*runs, reverse=newest_first):
            yield number - self._dropped

    def first_created_at(self, lower: int | None) -> int:
        """The first position that can hold an event created at or after ``lower``: a binary
        search while the log is in ``created`` order, else 0 (every position)."""
        if lower is None or not self._ordered:
            return 0
        return bisect.bisect_left(self._created, lower)

    def end_before(self, upper: int | None) -> int:
        """The position after the last that can hold an event created before ``upper``: a
        binary search while the log is in ``created`` order, else the log's end."""
        if upper is None or not self._ordered:
            return len(self._created)
        return bisect.bisect_left(self._created, upper)

    def prune(self, horizon: int) -> None:
        """Forget the oldest events while they were created before ``horizon``."""
        drop = 0
        while drop < len(self._created) and self._created[drop] < horizon:
            drop += 1
        if not drop:
            return
        for event_id in self._ids[:drop]:
            del self._number[event_id]
        del self._ids[:drop], self._created[:drop], self._types[:drop], self._bodies[:drop]
        self._dropped += drop
        for numbers in self._by_type.values():
            del numbers[: bisect.bisect_left(numbers, self._dropped)]


class ObjectStore:
    """All objects of one kind: the lazy seed, changed seeded objects, and added objects."""

    def __init__(self, kind: SeedKind | None, object_name: str) -> None:
        self.object = object_name
        self.kind = kind
        self.changed: dict[str, JSON | None] = {}  # seeded id -> current object, None = deleted
        self.added: dict[str, JSON | None] = {}  # insertion order = creation order
        # Seeded (created, index), sorted, built on the first list with a ``created`` lower
        # bound: such a list (balance transactions, read by ``created[gte]`` every cycle)
        # would otherwise generate every seeded object to find the few recent ones.
        self._by_created: tuple[SeedKind, list[tuple[int, int]]] | None = None

    @property
    def seeded_count(self) -> int:
        """Number of seeded objects of this kind."""
        return self.kind.count if self.kind else 0

    def get(self, object_id: str) -> JSON | None:
        """Return the current object ``object_id`` or None (missing or deleted)."""
        if object_id in self.added:
            return self.added[object_id]
        if object_id in self.changed:
            return self.changed[object_id]
        if self.kind is None:
            return None
        index = self.kind.index_of(object_id)
        return None if index is None else self.kind.make(index)

    def put(self, obj: JSON) -> None:
        """Store a new or changed object."""
        object_id = obj["id"]
        if object_id in self.added or (self.kind and self.kind.index_of(object_id) is not None):
            target = self.added if object_id in self.added else self.changed
            target[object_id] = obj
        else:
            self.added[object_id] = obj

    def delete(self, object_id: str) -> None:
        """Mark ``object_id`` deleted."""
        if object_id in self.added:
            self.added[object_id] = None
        else:
            self.changed[object_id] = None

    def _seeded_at(self, index: int) -> JSON | None:
        assert self.kind is not None  # only called when seeded objects exist
        object_id = self.kind.id_for(index)
        if object_id in self.changed:
            return self.changed[object_id]
        return self.kind.make(index)

    def _position(self, object_id: str) -> tuple[int, int] | None:
        """(segment, index) of an id: segment 0 = added (newest first), 1 = seeded."""
        if object_id in self.added:
            return 0, list(self.added).index(object_id)
        if self.kind is not None:
            index = self.kind.index_of(object_id)
            if index is not None:
                return 1, index
        return None

    def iter_desc(self, after: str | None = None) -> Iterator[JSON]:
        """Yield objects newest first, starting just after ``after`` when given."""
        added_ids = list(self.added)
        start_added, start_seeded = len(added_ids) - 1, self.seeded_count - 1
        if after is not None:
            pos = self._position(after)
            if pos is None:
                return
            if pos[0] == 0:
                start_added = pos[1] - 1
            else:
                start_added, start_seeded = -1, pos[1] - 1
        for i in range(start_added, -1, -1):
            obj = self.added[added_ids[i]]
            if obj is not None:
                yield obj
        for index in range(start_seeded, -1, -1):
            obj = self._seeded_at(index)
            if obj is not None:
                yield obj

    def _seeded_since(self, lower: int) -> list[int]:
        """Seeded indices whose object was created at or after ``lower`` (or was changed)."""
        assert self.kind is not None  # only called when seeded objects exist
        if self._by_created is None or self._by_created[0] is not self.kind:
            made = ((self.kind.make(i), i) for i in range(self.kind.count))
            index = sorted((int(obj["created"]), i) for obj, i in made if obj is not None)
            self._by_created = (self.kind, index)
        index = self._by_created[1]
        found = {i for _, i in index[bisect.bisect_left(index, (lower, -1)) :]}
        for object_id in self.changed:
            position = self.kind.index_of(object_id)
            if position is not None:
                found.add(position)
        return sorted(found, reverse=True)

    def iter_desc_since(self, lower: int, after: str | None = None) -> Iterator[JSON]:
        """:meth:`iter_desc`, skipping seeded objects created before ``lower``.

        Yields the same objects as ``iter_desc`` filtered on ``created >= lower``, in the same
        order, but generates only the seeded objects that can match.
        """
        if self.kind is None:
            yield from self.iter_desc(after)
            return
        added_ids = list(self.added)
        start_added, start_seeded = len(added_ids) - 1, self.seeded_count - 1
        if after is not None:
            pos = self._position(after)
            if pos is None:
                return
            if pos[0] == 0:
                start_added = pos[1] - 1
            else:
                start_added, start_seeded = -1, pos[1] - 1
        for i in range(start_added, -1, -1):
            obj = self.added[added_ids[i]]
            if obj is not None:
                yield obj
        for index in self._seeded_since(lower):
            if index <= start_seeded:
                obj = self._seeded_at(index)
                if obj is not None:
                    yield obj

    def iter_asc_after(self, before: str) -> Iterator[JSON]:
        """Yield objects newer than ``before``, oldest first (for ``ending_before``)."""
        pos = self._position(before)
        if pos is None:
            return
        added_ids = list(self.added)
        if pos[0] == 1:
            for index in range(pos[1] + 1, self.seeded_count):
                obj = self._seeded_at(index)
                if obj is not None:
                    yield obj
            first_added = 0
        else:
            first_added = pos[1] + 1
        for object_id in added_ids[first_added:]:
            obj = self.added[object_id]
            if obj is not None:
                yield obj

    def page(
        self,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        match: Callable[[JSON], bool],
        created_since: int | None = None,
    ) -> tuple[list[JSON], bool]:
        """Return one list page newest first and whether more objects follow it.

        ``created_since``: a lower bound on ``created`` that ``match`` applies too; seeded
        objects created before it are then not generated at all.
        """
        out: list[JSON] = []
        if ending_before is not None:
            for obj in self.iter_asc_after(ending_before):
                if match(obj):
                    if len(out) == limit:
                        return list(reversed(out)), True
                    out.append(obj)
            return list(reversed(out)), False
        objects = (
            self.iter_desc(starting_after)
            if created_since is None
            else self.iter_desc_since(created_since, starting_after)
        )
        for obj in objects:
            if match(obj):
                if len(out) == limit:
                    return out, True
                out.append(obj)
        return out, False


@dataclass
class SavedResponse:
    """A response saved under an idempotency key, with the request it answered."""

    fingerprint: str
    status: int
    body: bytes
    created: int


@dataclass
class WebhookEndpoint:
    """A registered webhook endpoint (``/v1/webhook_endpoints``)."""

    id: str
    url: str
    secret: str
    enabled_events: list[str]
    created: int

    def wants(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` is delivered to this endpoint."""
        return any(
            pattern in ("*", event_type)
            or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.enabled_events
        )


@dataclass
class SandboxState:
    """Everything the sandbox knows; one lock guards it."""

    seed: int
    size: int
    clock: Callable[[], float] = time.time
    offset: int = 0
    stores: dict[str, ObjectStore] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)
    idempotency: dict[tuple[str, str], SavedResponse] = field(default_factory=dict)
    endpoints: dict[str, WebhookEndpoint] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    catalog: SeedCatalog = field(init=False)
    listeners: list[Callable[[JSON], None]] = field(default_factory=list)
    current_request: dict[str, str | None] = field(
        default_factory=lambda: {"id": None, "idempotency_key": None}
    )
    _last_event_time: int = 0

    def __post_init__(self) -> None:
        # Seeded history ends at the start of today (UTC), so one seed gives one data set.
        today = int(self.clock()) // 86_400 * 86_400
        self.catalog = SeedCatalog(self.seed, self.size, today)
        for name, kind in self.catalog.kinds.items():
            self.stores[name] = ObjectStore(kind, name)
        for name in (
            "invoiceitem",
            "test_helpers.test_clock",
            "subscription_item",
            "billing.meter",
            "billing.meter_event",
        ):
            self.stores[name] = ObjectStore(None, name)

    def now(self) -> int:
        """Current sandbox time in unix seconds."""
        return int(self.clock()) + self.offset

    def store(self, object_name: str) -> ObjectStore:
        """Return the store of ``object_name``."""
        return self.stores[object_name]

    def emit(self, event_type: str, obj: JSON, previous: JSON | None = None) -> JSON:
        """Record an event holding a snapshot of ``obj`` and notify the listeners."""
        with self.lock:
            created = max(self.now(), self._last_event_time)
            self._last_event_time = created
            event: JSON = {
                "id": new_id("evt_"),
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": created,
                "livemode": False,
                "pending_webhooks": 0,
                "request": dict(self.current_request),
                "type": event_type,
                "data": {"object": copy.deepcopy(obj)},
            }
            if previous is not None:
                event["data"]["previous_attributes"] = previous
            event["pending_webhooks"] = sum(
                1 for ep in self.endpoints.values() if ep.wants(event_type)
            )
            self.events.append(event)
            self.prune_events()
        for listener in list(self.listeners):
            listener(event)
        return event

    def prune_events(self) -> None:
        """Forget events older than the retention window."""
        self.events.prune(self.now() - EVENT_RETENTION_SECONDS)
