"""Applying a mapping: one landed source record becomes one canonical entity, or a reason.

:class:`Normalizer` compiles each object mapping of a :class:`~ledgerlink.mapping.loader.MappingSet`
once (paths parsed, transforms built) and maps records with it::

    normalizer = Normalizer(load_mappings(config.mappings_dir))
    party = normalizer.map_record("stripe", "customers", "cus_123", payload)

How a record is built: each field mapping reads its source value, runs its transforms and puts
the result at its canonical path (``addresses[0].city``, ``emails[1]``, ``metadata.key``).
Null results are left out, list elements whose every value is null (or only a ``const``) are
dropped and the list closes up, so a customer without a shipping address gets no empty one.
The entity class then validates the whole (currencies agree, instants are UTC, ...).

A record that cannot be mapped raises :class:`RecordMappingError` whose reason names the
canonical field, the source path it came from and what was wrong; the caller quarantines it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ledgerlink.domain.entities import ENTITY_TYPES, Entity
from ledgerlink.mapping.loader import MappingSet
from ledgerlink.mapping.schema import FieldSpec, ObjectMapping, top_field
from ledgerlink.mapping.transforms import (
    ROOT_PREFIX,
    TransformContext,
    TransformError,
    TransformFn,
    build_transform,
    parse_path,
    read_path,
)

__all__ = ["Normalizer", "RecordMapper", "RecordMappingError", "UnmappedObjectError"]

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")
_MAX_REASON = 2000


class RecordMappingError(ValueError):
    """A record cannot become its canonical entity; ``reason`` says which field and why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason[:_MAX_REASON]
        super().__init__(self.reason)


class UnmappedObjectError(LookupError):
    """No mapping file maps this object of this system."""


class _Empty:
    """A list slot that no field filled."""


_EMPTY = _Empty()


@dataclass(frozen=True, slots=True)
class _Const:
    """A value from ``const``: kept, but it alone does not make a list element worth keeping."""

    value: Any


Segment = tuple[str, int | None]


def _segments(path: str) -> tuple[Segment, ...]:
    parts: list[Segment] = []
    for piece in path.split("."):
        match = _SEGMENT.fullmatch(piece)
        parts.append((match.group(1), int(match.group(2))) if match else (piece, None))
    return tuple(parts)


def _assign(tree: dict[str, Any], segments: Sequence[Segment], value: Any) -> None:
    node: Any = tree
    for position, (name, index) in enumerate(segments):
        last = position == len(segments) - 1
        if index is None:
            if last:
                existing = node.get(name)
                if isinstance(existing, dict) and isinstance(value, Mapping):
                    existing.update(value)  # metadata: whole dict, then single keys
                else:
                    node[name] = value
                return
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
            continue
        items = node.get(name)
        if not isinstance(items, list):
            items = node[name] = []
        items.extend([_EMPTY] * (index + 1 - len(items)))
        if last:
            items[index] = value
            return
        if not isinstance(items[index], dict):
            items[index] = {}
        node = items[index]


def _finish(node: Any) -> tuple[Any, bool]:
    """Unwrap constants and drop empty values; returns (value, holds a real source value)."""
    kind = type(node)
    if kind is _Const:
        return node.value, False
    if kind is not dict and kind is not list:
        return node, node is not None
    if kind is dict:
        result: dict[str, Any] = {}
        real = False
        for key, child in node.items():
            value, child_real = _finish(child)
            if value is None or value is _EMPTY:
                continue
            result[key] = value
            real = real or child_real
        return result, real
    items: list[Any] = []
    real = False
    for child in node:
        value, child_real = _finish(child)
        if value is None or value is _EMPTY or (type(value) is dict and not child_real):
            continue
        items.append(value)
        real = real or child_real
    return items, real


def _matches(element: Any, where: Sequence[tuple[tuple[str | int, ...], Any]]) -> bool:
    for parts, wanted in where:
        value = read_path(element, parts)
        if value != wanted and not (isinstance(wanted, list) and value in wanted):
            return False
    return True


Reader = tuple[bool, tuple[str | int, ...]]
"""A compiled source path: (read from the whole record, path parts)."""


def _reader(path: str) -> Reader:
    if path.startswith(ROOT_PREFIX):
        return True, parse_path(path[len(ROOT_PREFIX) :])
    return False, parse_path(path)


def _read(reader: Reader, context: TransformContext) -> Any:
    from_root, parts = reader
    base = context.record if from_root or context.element is None else context.element
    return read_path(base, parts)


@dataclass(frozen=True, slots=True)
class _Field:
    target: str
    segments: tuple[Segment, ...]
    spec: FieldSpec
    steps: tuple[tuple[str, TransformFn], ...]
    children: tuple[_Field, ...]
    readers: tuple[Reader, ...]
    where: tuple[tuple[tuple[str | int, ...], Any], ...]

    @property
    def source(self) -> str:
        spec = self.spec
        if spec.each is not None:
            return spec.each
        if isinstance(spec.from_, list):
            return ", ".join(spec.from_)
        return spec.from_ if spec.from_ is not None else "const"


def _compile(fields: Mapping[str, FieldSpec]) -> tuple[_Field, ...]:
    return tuple(
        _Field(
            target=target,
            segments=_segments(target),
            spec=spec,
            steps=tuple(
                (step.name, build_transform(step.name, step.params)) for step in spec.transforms
            ),
            children=_compile(spec.fields or {}),
            readers=tuple(
                _reader(path)
                for path in (
                    spec.from_ if isinstance(spec.from_, list) else [spec.from_ or spec.each or ""]
                )
                if path
            ),
            where=tuple((parse_path(path), wanted) for path, wanted in (spec.where or {}).items()),
        )
        for target, spec in fields.items()
    )


class RecordMapper:
    """The compiled mapping of one object of one system.

    Args:
        system: the system (``stripe``).
        object_name: the source object (``customers``, ``Account``).
        mapping: the object's validated mapping.
        tables: the system file's named lookup tables.
    """

    def __init__(
        self,
        system: str,
        object_name: str,
        mapping: ObjectMapping,
        tables: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.system = system
        self.object = object_name
        self.entity = mapping.entity
        self.entity_class: type[Entity] = ENTITY_TYPES[mapping.entity]
        self._tables = tables
        self._fields = _compile(mapping.fields)

    def __repr__(self) -> str:
        return f"RecordMapper({self.system}/{self.object} -> {self.entity})"

    def map(self, external_id: str, payload: Mapping[str, Any]) -> Entity:
        """Map one record's payload to its entity.

        Args:
            external_id: the record's id in its system (becomes ``source.id``).
            payload: the record as landed.

        Returns:
            The canonical entity.

        Raises:
            RecordMappingError: a field cannot be read or transformed, or the entity refuses
                the result; the reason names the field and its source.
        """
        if not isinstance(payload, Mapping):
            raise RecordMappingError(f"payload is a {type(payload).__name__}, not an object")
        context = TransformContext(self.system, payload, None, self._tables)
        tree = self._build(self._fields, context)
        data, _ = _finish(tree)
        data["source"] = {"system": self.system, "object": self.object, "id": external_id}
        try:
            return self.entity_class.model_validate(data)
        except ValidationError as exc:
            raise RecordMappingError(self._explain(exc)) from None
        except (TypeError, ValueError) as exc:
            raise RecordMappingError(f"{self.entity}: {exc}") from None

    def _build(self, fields: Sequence[_Field], context: TransformContext) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for compiled in fields:
            value = self._value(compiled, context)
            if value is not None:
                _assign(tree, compiled.segments, value)
        return tree

    def _value(self, compiled: _Field, context: TransformContext) -> Any:
        spec = compiled.spec
        if spec.const is not None:
            return _Const(spec.const)
        if spec.each is not None:
            return self._each(compiled, context)
        try:
            if isinstance(spec.from_, list):
                value: Any = [_read(reader, context) for reader in compiled.readers]
            else:
                value = _read(compiled.readers[0], context)
            for name, step in compiled.steps:
                try:
                    value = step(value, context)
                except TransformError:
                    raise
                except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
                    raise TransformError(f"{name}: {exc}") from None
        except TransformError as exc:
            raise RecordMappingError(f"{compiled.target} (from {compiled.source}): {exc}") from None
        if value is None and spec.required:
            raise RecordMappingError(
                f"{compiled.target} (from {compiled.source}) is required but the source is empty"
            )
        return value

    def _each(self, compiled: _Field, context: TransformContext) -> Any:
        items = _read(compiled.readers[0], context)
        if items is None:
            return None
        if not isinstance(items, list):
            raise RecordMappingError(
                f"{compiled.target} (each {compiled.source}): expected a list, "
                f"got {type(items).__name__}"
            )
        where = compiled.where
        built: list[Any] = []
        for index, element in enumerate(items):
            if where and not _matches(element, where):
                continue
            inner = TransformContext(context.system, context.record, element, context.tables)
            try:
                tree = self._build(compiled.children, inner)
            except RecordMappingError as exc:
                raise RecordMappingError(f"{compiled.target}[{index}].{exc.reason}") from None
            value, real = _finish(tree)
            if real:
                built.append(value)
        return built

    def _explain(self, exc: ValidationError) -> str:
        sources = {compiled.target: compiled.source for compiled in self._fields}
        by_top: dict[str, str] = {}
        for target, source in sources.items():
            by_top.setdefault(top_field(target), source)
        reasons = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
            where = ".".join(loc) or self.entity
            origin = by_top.get(loc[0]) if loc else None
            hint = f" (from {origin})" if origin else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            reasons.append(f"{where}{hint}: {message}")
        return f"{self.entity}: " + "; ".join(reasons)


class Normalizer:
    """Maps landed records of any system with a :class:`MappingSet`, compiling lazily.

    Args:
        mappings: the loaded mappings.
    """

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings
        self._mappers: dict[tuple[str, str], RecordMapper | None] = {}

    def mapper(self, system: str, object_name: str) -> RecordMapper | None:
        """Return the compiled mapper of ``system``/``object_name``, or None when unmapped."""
        key = (system, object_name)
        if key not in self._mappers:
            mapping = self.mappings.object_mapping(system, object_name)
            self._mappers[key] = (
                None
                if mapping is None
                else RecordMapper(
                    system, object_name, mapping, self.mappings.systems[system].tables
                )
            )
        return self._mappers[key]

    def map_record(
        self, system: str, object_name: str, external_id: str, payload: Mapping[str, Any]
    ) -> Entity:
        """Map one landed record to its canonical entity.

        Args:
            system: the system it was read from.
            object_name: its object type as the connector lands it (``Account``, ``customers``).
            external_id: its id in that system.
            payload: its content.

        Returns:
            The entity.

        Raises:
            UnmappedObjectError: no mapping covers this object.
            RecordMappingError: the record does not map; the reason says why.
        """
        mapper = self.mapper(system, object_name)
        if mapper is None:
            raise UnmappedObjectError(f"no mapping for {system}/{object_name}")
        return mapper.map(external_id, payload)
