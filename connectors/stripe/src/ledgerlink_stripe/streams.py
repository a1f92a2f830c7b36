"""Stripe streams and how each is read: a full list first, then the Events API.

Read modes, kept in ``Cursor.state`` so a crash resumes where the last stored page ended:

``list``    first load, or a cursor older than event retention: ``GET /v1/<objects>`` with
            ``limit=100`` and ``starting_after``; the time the list began is kept so that the
            following ``events`` mode replays every change made while listing.
``events``  ``GET /v1/events`` with ``created[gte]`` (closed start), the stream's event types,
            oldest event first; event ids already landed at the boundary second are dropped,
            and an object with several events in the read lands once, as its newest.
            Stripe's lists are eventually consistent (an event can show up in its second a
            little after a read listed that second), so a read starts at the first second
            that no read begun ``_SETTLED`` seconds after it has listed yet, and skips the
            events of the window it landed already (by id): an event that joins its second
            late is read by the next read that settles the window, however late that comes,
            and a burst of events in one second is listed again once, by that read.
``created`` balance transactions have no events: ``created[gte]`` on their own list instead.

A charge that succeeded but has no ``balance_transaction`` yet is not landed: its id waits in
``state["pending_charges"]`` and is fetched again on the next cycle, so a payment never
reaches the ledger without its fee.

``payout_transactions`` follows the payouts (list, then ``payout.*`` events) and lands, for each
automatic payout once it is ``in_transit`` or ``paid``, which balance transactions it paid out:
``GET /v1/balance_transactions?payout=po_...`` read to its end, as
``{"payout": id, "balance_transactions": [ids]}`` (the payout's own transaction left out). The
ledger's payout reconciliation ties each payout with it. A payout is asked about once: one
tied while ``in_transit`` waits in ``state["tied_in_transit"]`` so that its later ``paid``
event costs nothing; pending payouts are asked about when their event says they moved, manual
ones never (Stripe answers that filter for automatic payouts only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledgerlink.connector.protocol import Cursor, Page, Record, Stream
from ledgerlink.log import get_logger
from ledgerlink_stripe.client import StripeApi

__all__ = ["STREAMS", "StreamSpec", "StripeStreamReader", "iso"]

JSON = dict[str, Any]
_LOOKBACK = 5  # seconds re-read after a full list, for objects committed while it ran
_RETENTION_MARGIN = 3600  # re-list an hour before Stripe would actually drop the events
_SETTLED = 30
"""Seconds after which Stripe lists every object and event of a second. The cursor's
``since`` is the first second no read begun this long after it has listed (every earlier
second is complete), its ``seen`` the ids (with their second) of what was landed from
``since`` on: a read lists from ``since`` and skips those, and its last page moves ``since``
to this long before the read began."""
_TIED_STATUSES = frozenset({"in_transit", "paid"})
"""Payout statuses whose balance transactions are settled: what Stripe paid out is final."""


_INVOICE_EVENTS = (
    "invoice.created",
    "invoice.deleted",
    "invoice.finalization_failed",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.overdue",
    "invoice.overpaid",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.sent",
    "invoice.updated",
    "invoice.voided",
    "invoice.will_be_due",
)
"""Every invoice event but two: ``invoice.payment_succeeded`` ("an invoice payment attempt
succeeds") always comes with ``invoice.paid`` ("a payment attempt succeeds or the invoice is
marked as paid out of band"), which carries the same invoice; ``invoice.upcoming`` is about an
invoice that does not exist yet (no id to land). Read with ``invoice.*``, a paid invoice costs
four events (created, finalized, paid, payment succeeded); three this way. Stripe takes up to
20 types in ``types[]``."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """How one stream maps onto the Stripe API."""

    stream: Stream
    path: str
    object: str
    event_types: tuple[str, ...] = ()
    list_params: tuple[tuple[str, str], ...] = ()


def _stream(name: str, entity: str, *, writable: bool = False, deletes: bool = False) -> Stream:
    return Stream(
        name=name,
        entity=entity,
        cursor_field="created",
        writable=writable,
        supports_deletes=deletes,
        lookback=timedelta(seconds=_LOOKBACK),
    )


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        _stream("customers", "party", writable=True, deletes=True),
        "/v1/customers",
        "customer",
        ("customer.created", "customer.updated", "customer.deleted"),
    ),
    StreamSpec(
        _stream("products", "product", deletes=True),
        "/v1/products",
        "product",
        ("product.created", "product.updated", "product.deleted"),
    ),
    StreamSpec(
        _stream("prices", "product", deletes=True),
        "/v1/prices",
        "price",
        ("price.created", "price.updated", "price.deleted"),
    ),
    StreamSpec(
        _stream("subscriptions", "subscription", writable=True),
        "/v1/subscriptions",
        "subscription",
        (
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.trial_will_end",
        ),
        (("status", "all"),),
    ),
    StreamSpec(
        _stream("invoices", "invoice", writable=True, deletes=True),
        "/v1/invoices",
        "invoice",
        _INVOICE_EVENTS,
    ),
    StreamSpec(
        _stream("payment_intents", "payment"),
        "/v1/payment_intents",
        "payment_intent",
        ("payment_intent.*",),
    ),
    StreamSpec(
        _stream("charges", "payment"),
        "/v1/charges",
        "charge",
        (
            "charge.succeeded",
            "charge.failed",
            "charge.captured",
            "charge.refunded",
            "charge.updated",
            "charge.expired",
            "charge.pending",
        ),
    ),
    StreamSpec(
        _stream("refunds", "refund"),
        "/v1/refunds",
        "refund",
        ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"),
    ),
    StreamSpec(
        _stream("credit_notes", "credit_note"),
        "/v1/credit_notes",
        "credit_note",
        ("credit_note.*",),
    ),
    StreamSpec(_stream("disputes", "dispute"), "/v1/disputes", "dispute", ("charge.dispute.*",)),
    StreamSpec(_stream("payouts", "payout"), "/v1/payouts", "payout", ("payout.*",)),
    StreamSpec(
        _stream("payout_transactions", "payout_tie"), "/v1/payouts", "payout", ("payout.*",)
    ),
    StreamSpec(
        _stream("balance_transactions", "balance_transaction", deletes=False),
        "/v1/balance_transactions",
        "balance_transaction",
    ),
)
_BY_NAME = {spec.stream.name: spec for spec in STREAMS}


def iso(timestamp: int) -> str:
    """Fixed-width ISO-8601 UTC text of unix ``timestamp`` (sorts in time order)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_filter(types: Sequence[str]) -> dict[str, Any]:
    if len(types) == 1 and types[0].endswith("*"):
        return {"type": types[0]}
    return {"types": list(types)}


class StripeStreamReader:
    """Reads one stream at a time; holds no state between calls.

    Args:
        api: the Stripe API access.
        page_size: records per list call and per yielded page.
        retention_days: Stripe's event retention.
        clock: unix time source (tests move it).
    """

    def __init__(
        self,
        api: StripeApi,
        *,
        page_size: int = 100,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.page_size = page_size
        self.retention = retention_days * 86_400
        self.clock = clock
        self._log = get_logger(connector="stripe")

    @staticmethod
    def spec(stream: str) -> StreamSpec:
        """Return the spec of ``stream``.

        Raises:
            KeyError: unknown stream.
        """
        return _BY_NAME[stream]

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield pages of ``stream`` from ``cursor`` (see the module docstring for modes)."""
        spec = self.spec(stream)
        mode = cursor.state.get("mode")
        if mode in ("events", "created"):
            since = int(cursor.state.get("since", 0))
            if self.clock() - since > self.retention - _RETENTION_MARGIN and mode == "events":
                self._log.warning(
                    "stripe.cursor_expired_relisting",
                    stream=stream,
                    cursor=cursor.value,
                    retention_days=self.retention // 86_400,
                )
                yield from self._list(spec, self._fresh_list_cursor(spec, cursor))
                return
            if mode == "events":
                yield from self._events(spec, cursor)
            else:
                yield from self._created(spec, cursor)
            return
        if mode != "list":
            cursor = self._fresh_list_cursor(spec, cursor)
        yield from self._list(spec, cursor)

    def _fresh_list_cursor(self, spec: StreamSpec, cursor: Cursor) -> Cursor:
        key = _held_key(spec)
        pending = cursor.state.get(key)
        return Cursor(
            value=cursor.value,
            state={
                "mode": "list",
                "list_started": int(self.clock()),
                **({key: pending} if pending else {}),
            },
        )

    # -- full list ---------------------------------------------------------------------------
    def _list(self, spec: StreamSpec, cursor: Cursor) -> Iterator[Page]:
        started = int(cursor.state["list_started"])
        after = cursor.state.get("starting_after")
        while True:
            params: dict[str, Any] = {"limit": self.page_size, **dict(spec.list_params)}
            if after:
                params["starting_after"] = after
            body = self.api.get(spec.path, params)
            data: list[JSON] = body["data"]
            key = _held_key(spec)
            pending = set(cursor.state.get(key) or ())
            records = self._records(
                spec, [(obj, int(obj["created"]), False) for obj in data], pending
            )
            if data:
                after = data[-1]["id"]
            if body["has_more"] and data:
                cursor = cursor.with_state(starting_after=after, **{key: sorted(pending) or None})
                yield Page(spec.stream.name, records, cursor)
                continue
            since = started - _LOOKBACK
            final_state: dict[str, Any] = {
                "mode": "created" if not spec.event_types else "events",
                "since": since,
                "seen": [],
            }
            if pending:
                final_state[key] = sorted(pending)
            yield Page(spec.stream.name, records, Cursor(value=iso(since), state=final_state))
            return

    # -- incremental ---------------------------------------------------------------------------
    def _collect(self, path: str, params: dict[str, Any]) -> list[JSON]:
        """Every item of a ``created[gte]`` list, oldest first (the list answers newest first)."""
        items: list[JSON] = []
        after: str | None = None
        while True:
            query = dict(params, limit=self.page_size)
            if after:
                query["starting_after"] = after
            body = self.api.get(path, query)
            items.extend(body["data"])
            if not body["has_more"] or not body["data"]:
                break
            after = body["data"][-1]["id"]
        items.reverse()
        return items

    def _start(self, cursor: Cursor, started: int) -> tuple[list[JSON], bool]:
        """The ``created`` ranges an incremental read begun at ``started`` lists (oldest
        first), and whether it settles the cursor's window.

        Once the window's first second (``since``) is more than twice ``_SETTLED`` old, the
        read lists the window again (skipping what was landed, by id) and then moves
        ``since`` on to ``_SETTLED`` seconds before it began: what joined those seconds late
        is read then. Before that, a read lists only what is newer than every second landed
        whole (``newest``): the reads that follow a burst within a minute do not list it again
        each, and a late event waits at most a minute and a read. A settling read does not
        list the seconds it cannot settle either (from ``_SETTLED`` seconds before it began to
        ``newest``, landed whole): they stay in the window for the read that settles them, so
        a burst is listed again once, not also by a read that came a few seconds after it. A
        cursor written before ``newest`` was kept settles, listing everything from ``since``.
        """
        state = cursor.state
        since = int(state["since"])
        if "newest" not in state:
            return [{"gte": since}], True
        newer = max(int(state["newest"]) + 1, since)
        if started - since <= 2 * _SETTLED:
            return [{"gte": newer}], False
        settled = started - _SETTLED
        if newer <= settled:
            return [{"gte": since}], True
        return [{"gte": since, "lt": settled}, {"gte": newer}], True

    def _listed(self, path: str, ranges: list[JSON], params: JSON) -> list[JSON]:
        """Every item of ``path`` created within ``ranges`` (see :meth:`_start`), oldest
        first."""
        return [
            item for bounds in ranges for item in self._collect(path, {"created": bounds, **params})
        ]

    def _events(self, spec: StreamSpec, cursor: Cursor) -> Iterator[Page]:
        started = int(self.clock())
        ranges, settling = self._start(cursor, started)
        events = self._listed("/v1/events", ranges, _event_filter(spec.event_types))
        entries = [
            (event["data"]["object"], int(event["created"]), _is_tombstone(event), event["id"])
            for event in events
        ]
        yield from self._emit(spec, cursor, entries, started, settling=settling)

    def _created(self, spec: StreamSpec, cursor: Cursor) -> Iterator[Page]:
        started = int(self.clock())
        ranges, settling = self._start(cursor, started)
        objects = self._listed(spec.path, ranges, dict(spec.list_params))
        entries = [(obj, int(obj["created"]), False, obj["id"]) for obj in objects]
        yield from self._emit(spec, cursor, entries, started, settling=settling)

    def _emit(
        self,
        spec: StreamSpec,
        cursor: Cursor,
        entries: list[tuple[JSON, int, bool, str]],
        started: int,
        *,
        settling: bool,
    ) -> Iterator[Page]:
        """Land a read's ``entries`` (oldest first) in pages.

        Entries landed before (``seen``) are skipped. Each page's cursor adds its entries to
        ``seen`` and moves ``newest`` to the last second it landed whole, never the second the
        read began in (``started``: more may happen in it). A read that settles the window
        moves ``since`` on its last page to ``_SETTLED`` seconds before it began, every second
        before that being complete now, and keeps of ``seen`` only what is from there on; a
        page before the last moves ``since`` no further than its own last second.
        """
        since = int(cursor.state["since"])
        seen = _seen(cursor.state.get("seen"), since)
        key = _held_key(spec)
        pending = set(cursor.state.get(key) or ())
        fresh = [entry for entry in entries if entry[3] not in seen]
        rechecked = self._recheck_pending(spec, pending)
        settled = max(since, started - _SETTLED) if settling else since
        newest = int(cursor.state.get("newest", since))
        chunks = list(self._chunks(fresh)) or [([], [])]
        for index, (chunk, snapshots) in enumerate(chunks):
            records = self._records(spec, snapshots, pending) if snapshots else []
            fresher = {record.id for record in records}
            records = [r for r in rechecked if r.id not in fresher] + records
            rechecked = []
            seen.update({entry_id: created for _, created, _, entry_id in chunk})
            last = index == len(chunks) - 1
            if chunk:
                # The page's last second may go on in the next page: whole only on the last.
                whole = chunk[-1][1] if last else chunk[-1][1] - 1
                newest = max(newest, min(whole, started - 1))
            # A crash after this page resumes from here: the seconds before this page's last
            # are landed, and those before ``settled`` complete, so a long read's pages keep
            # only the ids of its newest seconds (not every id it landed so far).
            start = settled if last else max(since, min(chunk[-1][1] if chunk else since, settled))
            state: dict[str, Any] = {
                "mode": cursor.state["mode"],
                "since": start,
                "seen": sorted([c, i] for i, c in seen.items() if c >= start),
                "newest": newest,
            }
            if pending:
                state[key] = sorted(pending)
            yield Page(spec.stream.name, records, Cursor(value=iso(newest), state=state))

    def _chunks(
        self, entries: list[tuple[JSON, int, bool, str]]
    ) -> Iterator[tuple[list[tuple[JSON, int, bool, str]], list[tuple[JSON, int, bool]]]]:
        """Cut a read's entries (oldest first) into pages of at most ``page_size`` objects,
        each object only at its newest entry of the read.

        An invoice paid since the last read comes as three events (created, finalized,
        paid), each with the whole invoice: landing only the last snapshot writes it once
        instead of three times, in a third of the pages. Each page's cursor still covers every
        entry before it: after a crash, the read goes on from there and meets the newer entry
        of an object whose older one it passed over.

        Yields:
            (the entries a page covers, the newest snapshots among them as
            ``(object, created, deleted)``).
        """
        newest: dict[tuple[str, str], int] = {}
        for index, (obj, _created, _deleted, _key) in enumerate(entries):
            newest[str(obj.get("object")), str(obj.get("id"))] = index
        start = 0
        kept: list[tuple[JSON, int, bool]] = []
        for index, (obj, created, deleted, _key) in enumerate(entries):
            if newest[str(obj.get("object")), str(obj.get("id"))] == index:
                kept.append((obj, created, deleted))
            if len(kept) == self.page_size or index == len(entries) - 1:
                yield entries[start : index + 1], kept
                start, kept = index + 1, []

    def _recheck_pending(self, spec: StreamSpec, pending: set[str]) -> list[Record]:
        """Fetch charges still waiting for their balance transaction; land the settled ones."""
        if spec.object != "charge" or not pending:
            return []
        landed: list[Record] = []
        for charge_id in sorted(pending):
            charge = self.api.get(f"/v1/charges/{charge_id}")
            if charge.get("balance_transaction"):
                pending.discard(charge_id)
                landed.append(
                    Record("charges", charge_id, charge, cursor_value=iso(int(charge["created"])))
                )
        return landed

    def _records(
        self, spec: StreamSpec, entries: list[tuple[JSON, int, bool]], pending: set[str]
    ) -> list[Record]:
        """Turn snapshots into records, newest snapshot per object within the batch."""
        if spec.stream.name == "payout_transactions":
            return self._payout_ties(spec, entries, pending)
        latest: dict[str, Record] = {}
        for obj, created, deleted in entries:
            if obj.get("object") != spec.object:
                continue
            object_id = str(obj["id"])
            if spec.object == "charge" and not deleted:
                if obj.get("status") == "succeeded" and not obj.get("balance_transaction"):
                    pending.add(object_id)
                    latest.pop(object_id, None)
                    continue
                pending.discard(object_id)
            payload = self._full_lines(obj) if spec.object == "invoice" and not deleted else obj
            latest.pop(object_id, None)  # keep batch order = time order
            latest[object_id] = Record(
                spec.stream.name, object_id, payload, deleted=deleted, cursor_value=iso(created)
            )
        return list(latest.values())

    def _payout_ties(
        self, spec: StreamSpec, entries: list[tuple[JSON, int, bool]], tied_in_transit: set[str]
    ) -> list[Record]:
        """For the newest snapshot of each automatic payout that left Stripe, what it paid out.

        ``tied_in_transit`` holds payouts tied while in transit: their ``paid`` event needs no
        second answer. A payout that failed or was canceled leaves it.
        """
        latest: dict[str, tuple[JSON, int]] = {}
        for obj, created, deleted in entries:
            if obj.get("object") == "payout" and not deleted:
                latest.pop(str(obj["id"]), None)
                latest[str(obj["id"])] = (obj, created)
        records: list[Record] = []
        for payout_id, (payout, created) in latest.items():
            status = payout.get("status")
            if status not in _TIED_STATUSES or not payout.get("automatic"):
                tied_in_transit.discard(payout_id)
                continue
            if payout_id in tied_in_transit:
                if status == "paid":
                    tied_in_transit.discard(payout_id)
                continue
            ids = [
                str(txn["id"])
                for txn in self._every("/v1/balance_transactions", {"payout": payout_id})
                if txn.get("source") != payout_id
            ]
            if status == "in_transit":
                tied_in_transit.add(payout_id)
            payload = {"payout": payout_id, "balance_transactions": sorted(ids)}
            records.append(Record(spec.stream.name, payout_id, payload, cursor_value=iso(created)))
        return records

    def _every(self, path: str, params: dict[str, Any]) -> Iterator[JSON]:
        """Every item of a list, page by page (``limit`` and ``starting_after``)."""
        after: str | None = None
        while True:
            query = dict(params, limit=self.page_size)
            if after:
                query["starting_after"] = after
            body = self.api.get(path, query)
            yield from body["data"]
            if not body["has_more"] or not body["data"]:
                return
            after = body["data"][-1]["id"]

    def _full_lines(self, invoice: JSON) -> JSON:
        """Complete an invoice's embedded lines when Stripe truncated them."""
        lines = invoice.get("lines") or {}
        if not lines.get("has_more") or not invoice.get("id"):
            return invoice
        data = list(lines.get("data") or [])
        after = data[-1]["id"] if data else None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            body = self.api.get(f"/v1/invoices/{invoice['id']}/lines", params)
            data.extend(body["data"])
            if not body["has_more"] or not body["data"]:
                break
            after = body["data"][-1]["id"]
        return {**invoice, "lines": {**lines, "data": data, "has_more": False}}


def _seen(state: Any, since: int) -> dict[str, int]:
    """A cursor's ``seen`` as id -> second: ``[second, id]`` pairs, or (a cursor written
    before the window was kept) the ids of its ``since`` second."""
    seen: dict[str, int] = {}
    for item in state or ():
        if isinstance(item, str):
            seen[item] = since
        else:
            seen[str(item[1])] = int(item[0])
    return seen


def _held_key(spec: StreamSpec) -> str:
    """The cursor-state key of the ids a stream holds between reads."""
    return "tied_in_transit" if spec.stream.name == "payout_transactions" else "pending_charges"


def _is_tombstone(event: JSON) -> bool:
    obj = event["data"]["object"]
    return bool(obj.get("deleted")) or event["type"] in (
        "customer.deleted",
        "product.deleted",
        "price.deleted",
        "invoice.deleted",
    )
