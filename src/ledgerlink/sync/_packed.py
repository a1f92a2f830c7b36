"""Landed payloads kept between plans as JSON bytes, decoded when read.

A long-running process keeps every Stripe object and ledger outbox payload it plans from (see
:class:`~ledgerlink.sync._ledger_world.KeptLedgerWorld`). As Python dicts a Stripe invoice with
its lines takes about 7.6 KB, as JSON about 2.3 KB; a kept plan reads only the few objects that
changed, so decoding on read costs little, and the first plan decodes each object a few times
(orjson: microseconds each).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, KeysView, Mapping, MutableMapping
from typing import Any

import orjson

__all__ = ["PackedPayloads", "pack", "unpack"]

Payload = Mapping[str, Any]


def pack(payload: Payload) -> bytes:
    """``payload`` as compact JSON bytes (keys in their order)."""
    try:
        # orjson hands back its whole write buffer (4 KB at least, whatever the payload): a
        # copy the payload's size is what a kept payload should cost.
        return bytes(memoryview(orjson.dumps(payload)))
    except orjson.JSONEncodeError:
        # A lone surrogate (a vendor's broken UTF-16 text, kept by the store as an escape):
        # orjson refuses it, the standard library keeps it escaped.
        return json.dumps(payload, separators=(",", ":")).encode()


def unpack(packed: bytes) -> dict[str, Any]:
    """A fresh dict of a :func:`pack`-ed payload (the caller may change it freely)."""
    try:
        decoded: dict[str, Any] = orjson.loads(packed)
    except orjson.JSONDecodeError:
        decoded = json.loads(packed)
    return decoded


def _created(payload: Payload) -> int:
    """Stripe's creation time of ``payload``: 0 when it has none that reads as a number (an
    object of another shape is still kept, first in creation order)."""
    created = payload.get("created")
    if isinstance(created, int | float | str):
        try:
            return int(created)
        except (ValueError, OverflowError):
            return 0
    return 0


class PackedPayloads(MutableMapping[str, Payload]):
    """Id -> payload, each stored as JSON bytes; every read decodes a fresh dict.

    Keeps each payload's ``created`` (Stripe's creation time) beside it, so that the ids can be
    put in creation order without decoding every payload (:meth:`by_created`).
    """

    __slots__ = ("_created", "_packed")

    def __init__(self) -> None:
        self._packed: dict[str, bytes] = {}
        self._created: dict[str, int] = {}

    def __getitem__(self, key: str) -> dict[str, Any]:
        return unpack(self._packed[key])

    def __setitem__(self, key: str, value: Payload) -> None:
        self._packed[key] = pack(value)
        self._created[key] = _created(value)

    def __delitem__(self, key: str) -> None:
        del self._packed[key]
        del self._created[key]

    def ids_by_created(self, ids: Iterable[str] | None = None) -> list[str]:
        """``ids`` (default: all), oldest payload first, then by id."""
        created = self._created
        return sorted(self._packed if ids is None else ids, key=lambda k: (created[k], k))

    def by_created(self, ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """The payloads of ``ids`` (default: all), oldest first (then by id), each decoded
        when the iteration reaches it."""
        for key in self.ids_by_created(ids):
            yield unpack(self._packed[key])

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def keys(self) -> KeysView[str]:
        """The ids, as the underlying dict's view (set operations on it run in C)."""
        return self._packed.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedPayloads):
            return self._packed == other._packed
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"<PackedPayloads of {len(self._packed)}>"
