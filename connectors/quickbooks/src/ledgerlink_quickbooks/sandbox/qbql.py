"""The sandbox's parser for the subset of the QuickBooks query language the hub uses.

Supported: ``SELECT * | COUNT(*) FROM Entity [WHERE cond AND cond ...] [ORDERBY field
[ASC|DESC]] [STARTPOSITION n] [MAXRESULTS m]`` where a condition is ``field op value`` with
``op`` one of ``= < > <= >= != LIKE IN`` and a value a quoted string (backslash escapes
``\\'`` and ``\\\\``), a number, ``true``/``false`` or a parenthesised ``IN`` list. Keywords
are case-insensitive, as in QuickBooks Online.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Condition", "ParsedQuery", "QuerySyntaxError", "parse_query"]

MAX_RESULTS_LIMIT = 1000


class QuerySyntaxError(ValueError):
    """The query text is not in the supported subset (QBO answers code 4000)."""


@dataclass(frozen=True)
class Condition:
    """One ``field op value`` comparison."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class ParsedQuery:
    """A parsed ``SELECT``."""

    entity: str
    count: bool = False
    conditions: tuple[Condition, ...] = ()
    order_by: str | None = None
    descending: bool = False
    start_position: int = 1
    max_results: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:\\.|[^'\\])*')
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<punct>[(),*])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*|-?\d+(?:\.\d+)?)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            msg = f"Error parsing query near position {pos}"
            raise QuerySyntaxError(msg)
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _value(kind: str, text: str) -> Any:
    if kind == "string":
        return _unquote(text)
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        msg = f"Error parsing query: unexpected value {text}"
        raise QuerySyntaxError(msg) from None


def parse_query(text: str) -> ParsedQuery:  # noqa: PLR0912, PLR0915 - one linear grammar
    """Parse ``text`` into a :class:`ParsedQuery`.

    Raises:
        QuerySyntaxError: the text is outside the supported subset or MAXRESULTS > 1000.
    """
    toks = _tokens(text)
    i = 0

    def peek_word() -> str:
        return toks[i][1].upper() if i < len(toks) and toks[i][0] == "word" else ""

    def expect_word(word: str) -> None:
        nonlocal i
        if peek_word() != word:
            msg = f"Error parsing query: expected {word}"
            raise QuerySyntaxError(msg)
        i += 1

    expect_word("SELECT")
    count = False
    if peek_word() == "COUNT":
        count = True
        i += 1
        if [t[1] for t in toks[i : i + 3]] != ["(", "*", ")"]:
            raise QuerySyntaxError("Error parsing query: COUNT(*) expected")
        i += 3
    elif i < len(toks) and toks[i][1] == "*":
        i += 1
    else:
        raise QuerySyntaxError("Error parsing query: only SELECT * and COUNT(*) are supported")
    expect_word("FROM")
    if i >= len(toks) or toks[i][0] != "word":
        raise QuerySyntaxError("Error parsing query: entity expected")
    entity = toks[i][1]
    i += 1
    conditions: list[Condition] = []
    if peek_word() == "WHERE":
        i += 1
        while True:
            if i + 2 > len(toks) or toks[i][0] != "word":
                raise QuerySyntaxError("Error parsing query: condition expected")
            name = toks[i][1]
            i += 1
            kind, op = toks[i]
            if kind == "op":
                i += 1
                vkind, vtext = toks[i]
                conditions.append(Condition(name, op, _value(vkind, vtext)))
                i += 1
            elif op.upper() == "LIKE":
                i += 1
                conditions.append(Condition(name, "LIKE", _value(*toks[i])))
                i += 1
            elif op.upper() == "IN":
                i += 1
                if toks[i][1] != "(":
                    raise QuerySyntaxError("Error parsing query: ( expected after IN")
                i += 1
                values: list[Any] = []
                while toks[i][1] != ")":
                    if toks[i][1] != ",":
                        values.append(_value(*toks[i]))
                    i += 1
                i += 1
                conditions.append(Condition(name, "IN", tuple(values)))
            else:
                raise QuerySyntaxError(f"Error parsing query: unsupported operator {op}")
            if peek_word() == "AND":
                i += 1
                continue
            break
    order_by: str | None = None
    descending = False
    if peek_word() == "ORDERBY":
        i += 1
        order_by = toks[i][1]
        i += 1
        if peek_word() in {"ASC", "DESC"}:
            descending = peek_word() == "DESC"
            i += 1
    start, maximum = 1, 100
    if peek_word() == "STARTPOSITION":
        i += 1
        start = int(toks[i][1])
        i += 1
    if peek_word() == "MAXRESULTS":
        i += 1
        maximum = int(toks[i][1])
        i += 1
    if i != len(toks):
        raise QuerySyntaxError(f"Error parsing query near {toks[i][1]!r}")
    if maximum > MAX_RESULTS_LIMIT or maximum < 1 or start < 1:
        raise QuerySyntaxError("MAXRESULTS must be between 1 and 1000, STARTPOSITION >= 1")
    return ParsedQuery(
        entity=entity,
        count=count,
        conditions=tuple(conditions),
        order_by=order_by,
        descending=descending,
        start_position=start,
        max_results=maximum,
    )
