"""Reading a vendor CSV export as a stream of source records, with every problem located.

This module owns the file side of an import:

* the encoding: UTF-8 with or without a byte-order mark, or Windows-1252; anything else
  (UTF-16, a file mixing UTF-8 with other bytes, bytes Windows-1252 does not define, NUL bytes)
  is refused with the line where decoding failed. The check is a streaming pre-scan of the
  bytes, so a refusal happens before anything is landed;
* the rows, read one at a time (a file of any size is never held in memory): each row becomes a
  :class:`~ledgerlink.connector.protocol.Record` shaped like the connector's (same object name,
  same id, payload keys and nesting of the vendor API);
* problems that reject a row (wrong number of columns, a duplicate id, an empty id, a cell that
  is not a valid value) are collected with their line; the other rows are still read.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ledgerlink.connector.protocol import Record
from ledgerlink.csvimport.headers import SYSTEMS, CellError, Column, object_spec, resolve_columns

__all__ = ["CsvSource", "FileRefusedError", "Problem", "detect_encoding"]

_CHUNK = 1 << 20
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class FileRefusedError(Exception):
    """The whole file is refused (encoding, empty, no id column); nothing of it is landed.

    Attributes:
        line: the line the refusal points at, when there is one.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Problem:
    """A rejected row: its line in the file (1 is the header) and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _scan(stream: BinaryIO, encoding: str) -> tuple[int, int, bool] | None:
    """Decode the whole stream; return None, or (line, column-ish, mixed) of the first failure."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    newlines = 0
    non_ascii = False
    while True:
        chunk = stream.read(_CHUNK)
        final = not chunk
        try:
            decoded = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            pending = decoder.getstate()[0] if encoding == "utf-8" else b""
            data = pending + chunk
            start = min(max(exc.start, 0), len(data))
            line = newlines + data[:start].count(b"\n") + 1
            return line, start, non_ascii or not data[:start].isascii()
        nul = decoded.find("\x00")
        if nul >= 0:
            return newlines + decoded[:nul].count("\n") + 1, nul, True
        if not non_ascii and not decoded.isascii():
            non_ascii = True
        newlines += chunk.count(b"\n")
        if final:
            return None


def detect_encoding(path: Path) -> str:
    """Return the Python codec to read ``path`` with: ``utf-8-sig`` or ``cp1252``.

    Args:
        path: the CSV file.

    Returns:
        ``utf-8-sig`` (UTF-8, with or without a byte-order mark) or ``cp1252``.

    Raises:
        FileRefusedError: the file is empty, UTF-16, or neither valid UTF-8 nor Windows-1252;
            the message names the line where decoding failed.
        OSError: the file cannot be read.
    """
    with path.open("rb") as stream:
        head = stream.read(4)
        if not head.strip(b" \t\r\n") or (head == _UTF8_BOM and not stream.read(1)):
            raise FileRefusedError("the file is empty")
        if head.startswith(_UTF16_BOMS):
            raise FileRefusedError(
                "the file is UTF-16; save it as UTF-8 (or Windows-1252) CSV", line=1
            )
        stream.seek(0)
        failure = _scan(stream, "utf-8")
        if failure is None:
            return "utf-8-sig"
        line, _, mixed = failure
        if mixed or head.startswith(_UTF8_BOM):
            raise FileRefusedError(
                "the bytes are not valid UTF-8 (and the file is not Windows-1252 either): "
                "save it as UTF-8",
                line=line,
            )
        stream.seek(0)
        failure = _scan(stream, "cp1252")
        if failure is not None:
            raise FileRefusedError(
                "the bytes are neither UTF-8 nor Windows-1252: save the file as UTF-8",
                line=failure[0],
            )
    return "cp1252"


def _put(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = payload
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _null_if_all_null(payload: dict[str, Any], key: str) -> None:
    """Stripe returns ``address: null`` rather than an object of nulls (nested too)."""
    value = payload.get(key)
    if not isinstance(value, dict):
        return
    for inner in [k for k, v in value.items() if isinstance(v, dict)]:
        _null_if_all_null(value, inner)
    if all(v is None for v in value.values()):
        payload[key] = None


@dataclass
class CsvSource:
    """One CSV file of one object, read as records.

    Args:
        path: the file.
        system: ``salesforce``, ``stripe`` or ``quickbooks``.
        object_name: the object (``customers``/``customer``, ``Account``, ``Customer``).
        overrides: ``{header: api_field}`` from ``--map``.

    Raises:
        UnknownSystemError, UnknownObjectError: on construction.

    After :meth:`open`, ``columns`` and ``encoding`` are known; while :meth:`records` runs,
    ``rows`` counts data rows read, ``problems`` the rejected ones, ``bytes_read`` the
    progress through the file.
    """

    path: Path
    system: str
    object_name: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    encoding: str = ""
    columns: list[Column] = field(default_factory=list)
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    bytes_read: int = 0
    _objects: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.spec = object_spec(self.system, self.object_name)
        self.system = self.system.strip().lower()
        self.system_spec = SYSTEMS[self.system]
        self.size = self.path.stat().st_size

    def records(self) -> Iterator[Record]:
        """Yield the file's valid rows as records, in file order, first occurrence of an id only.

        Raises:
            FileRefusedError: bad encoding, an empty file, no id column, a header that fills
                one field twice, or a malformed CSV structure (with its line).
            OSError: the file cannot be read.
        """
        self.encoding = detect_encoding(self.path)
        with self.path.open("r", encoding=self.encoding, newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next((row for row in reader if row), None)
                if header is None:
                    raise FileRefusedError("the file is empty")
                self.columns = self._columns(header, reader.line_num)
                self._objects = sorted(
                    {c.path[0] for c in self.columns if len(c.path) > 1} - {"metadata"}
                )
                yield from self._rows(reader, handle.buffer, len(header))
            except csv.Error as exc:
                raise FileRefusedError(f"not a readable CSV file ({exc})", reader.line_num) from exc

    def _columns(self, header: list[str], line: int) -> list[Column]:
        columns = resolve_columns(self.system, self.spec.name, header, self.overrides)
        seen: dict[tuple[str, ...], str] = {}
        for column in columns:
            if column.path in seen:
                raise FileRefusedError(
                    f"columns {seen[column.path]!r} and {column.header!r} both fill "
                    f"{'.'.join(column.path)}; drop one or use --map",
                    line,
                )
            seen[column.path] = column.header
        if (self.spec.id_field,) not in seen:
            raise FileRefusedError(
                f"no id column: none of the columns ({', '.join(header)}) holds "
                f"{self.spec.name}.{self.spec.id_field}; name it with --map COLUMN="
                f"{self.spec.id_field}",
                line,
            )
        return columns

    def _rows(self, reader: Any, raw: Any, width: int) -> Iterator[Record]:
        id_index = next(c.index for c in self.columns if c.path == (self.spec.id_field,))
        first_line: dict[str, int] = {}
        last_line = reader.line_num
        for row in reader:
            line = last_line + 1
            last_line = reader.line_num
            if not row:
                continue  # a blank line
            self.rows += 1
            if self.rows % 1024 == 0:
                self.bytes_read = raw.tell()
            if len(row) != width:
                self.problems.append(
                    Problem(line, f"expected {width} columns, found {len(row)}; row skipped")
                )
                continue
            record_id = row[id_index].strip()
            if not record_id:
                self.problems.append(Problem(line, "the id is empty; row skipped"))
                continue
            if record_id in first_line:
                self.problems.append(
                    Problem(
                        line,
                        f"duplicate id {record_id} (first on line {first_line[record_id]}); "
                        "row skipped",
                    )
                )
                continue
            first_line[record_id] = line
            try:
                record = self._record(record_id, row)
            except CellError as exc:
                self.problems.append(Problem(line, f"{exc}; row skipped"))
                continue
            yield record
        self.bytes_read = self.size

    def _record(self, record_id: str, row: list[str]) -> Record:
        nulls = self.system_spec.empty_as_null
        payload: dict[str, Any] = {}
        for column in self.columns:
            cell = row[column.index]
            if column.path == (self.spec.id_field,):
                value: Any = record_id
            elif cell == "" or cell.isspace():
                if not nulls or column.path[0] == "metadata":
                    continue
                value = None
            else:
                try:
                    value = column.convert(cell)
                except CellError as exc:
                    raise CellError(f"column {column.header!r}: {exc}") from None
            if len(column.path) == 1:
                payload[column.path[0]] = value
            else:
                _put(payload, column.path, value)
        return Record(
            object=self.spec.name,
            id=record_id,
            payload=self._finish(payload),
            cursor_value=self._cursor_value(payload),
        )

    def _finish(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.system == "stripe":
            for key in self._objects:
                _null_if_all_null(payload, key)
            api_object = self.system_spec.api_objects.get(self.spec.name, self.spec.name)
            payload.setdefault("object", api_object)
            if api_object != "balance_transaction":
                payload.setdefault("metadata", {})
        elif self.system == "salesforce":
            payload.setdefault("attributes", {"type": self.spec.name})
        return payload

    def _cursor_value(self, payload: Mapping[str, Any]) -> str | None:
        value: Any = payload
        for key in self.spec.cursor_field or ():
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return None
        if self.system == "stripe" and isinstance(value, int):
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.system == "salesforce" and isinstance(value, str) and len(value) == 28:
            return value[:23] + "Z"
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return None
            if moment.tzinfo is not None:
                return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return None
