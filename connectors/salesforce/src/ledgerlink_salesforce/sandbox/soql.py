"""The sandbox's SOQL subset: tokenizer, parser and record predicate.

Supported: ``SELECT f1, f2 | COUNT() FROM Object [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`` where ``cond`` combines comparisons
(``= != <> < <= > >=``), ``IN (...)``, ``NOT IN (...)``, ``LIKE``, ``= null`` with ``AND``,
``OR``, ``NOT`` and parentheses. Literals: quoted strings with Salesforce's escape sequences,
numbers, ``true``/``false``, ``null``, date-times (``2025-01-31T08:00:00Z``, ``...+01:00``,
optional milliseconds) and dates. Errors raise :class:`SoqlError` with Salesforce's code
(``MALFORMED_QUERY``, ``INVALID_FIELD``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["Comparison", "Query", "SoqlError", "parse_query", "to_datetime"]

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_UNESCAPE = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}
_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "NULL",
    "TRUE",
    "FALSE",
}


class SoqlError(Exception):
    """A query the sandbox refuses, with Salesforce's error code."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Token:
    """One lexical token: its kind and text (strings already unescaped)."""

    kind: str
    text: str
    value: Any = None


@dataclass(frozen=True)
class Comparison:
    """A top-level ``field op literal`` conjunct, exposed so the store can use an index."""

    field: str
    op: str
    value: Any


@dataclass
class Query:
    """A parsed SELECT statement."""

    fields: list[str]
    object: str
    count_only: bool = False
    where: Predicate | None = None
    conjuncts: list[Comparison] = field(default_factory=list)
    opaque_conditions: int = 0
    order_by: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


def to_datetime(value: Any) -> datetime | None:
    """Turn a record's date-time text or a literal into an aware datetime (None stays None)."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt.lower() not in _UNESCAPE and nxt not in _UNESCAPE:
                msg = f"Invalid string literal: invalid escape sequence \\{nxt}"
                raise SoqlError(msg)
            out.append(_UNESCAPE.get(nxt, _UNESCAPE.get(nxt.lower(), "")))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            msg = f"unexpected token at position {pos}: {text[pos : pos + 20]!r}"
            raise SoqlError(msg)
        pos = match.end()
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(Token("literal", raw, _unescape(raw[1:-1])))
        elif kind == "datetime":
            tokens.append(Token("literal", raw, to_datetime(raw)))
        elif kind == "date":
            tokens.append(Token("literal", raw, date.fromisoformat(raw)))
        elif kind == "number":
            tokens.append(Token("literal", raw, float(raw) if "." in raw else int(raw)))
        elif kind == "word" and raw.upper() in {"NULL", "TRUE", "FALSE"}:
            tokens.append(
                Token("literal", raw, {"NULL": None, "TRUE": True, "FALSE": False}[raw.upper()])
            )
        elif kind == "word" and raw.upper() in _KEYWORDS:
            tokens.append(Token("kw", raw.upper()))
        else:
            tokens.append(Token(kind, raw))
    return tokens


def _coerce(record_value: Any, literal: Any) -> tuple[Any, Any]:
    if isinstance(literal, datetime):
        return to_datetime(record_value), literal
    if isinstance(literal, date):
        if record_value is None:
            return None, literal
        return date.fromisoformat(str(record_value)[:10]), literal
    return record_value, literal


def _compare(op: str, left: Any, right: Any) -> bool:  # noqa: PLR0911 - one return per operator
    left, right = _coerce(left, right)
    if op == "=":
        return bool(left == right)
    if op in {"!=", "<>"}:
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError as exc:
        msg = f"cannot compare {left!r} with {right!r}"
        raise SoqlError(msg) from exc


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) or second(record)


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


class _Parser:
    def __init__(self, tokens: list[Token], known_field: Callable[[str], bool]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.known_field = known_field
        self.opaque = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            msg = "unexpected end of query"
            raise SoqlError(msg)
        self.pos += 1
        return token

    def expect_kw(self, word: str) -> None:
        token = self.take()
        if token.kind != "kw" or token.text != word:
            msg = f"unexpected token: '{token.text}', expected {word}"
            raise SoqlError(msg)

    def at_kw(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "kw" and token.text == word

    def field_name(self) -> str:
        token = self.take()
        if token.kind != "word":
            msg = f"unexpected token: '{token.text}'"
            raise SoqlError(msg)
        if not self.known_field(token.text):
            msg = (
                f"No such column '{token.text}' on entity. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name."
            )
            raise SoqlError(msg, "INVALID_FIELD")
        return token.text

    def literal(self) -> Any:
        token = self.take()
        if token.kind != "literal":
            msg = f"unexpected token: '{token.text}', expected a value"
            raise SoqlError(msg)
        return token.value

    def condition(self, top: bool, conjuncts: list[Comparison]) -> Predicate:
        left = self.conjunction(top, conjuncts)
        while self.at_kw("OR"):
            self.take()
            right = self.conjunction(False, conjuncts)
            left = _either(left, right)
        return left

    def conjunction(self, top: bool, conjuncts: list[Comparison]) -> Predicate:
        start = len(conjuncts)
        preds = [self.negation(top, conjuncts)]
        while self.at_kw("AND"):
            self.take()
            preds.append(self.negation(top, conjuncts))
        if self.at_kw("OR"):  # an OR makes these conjuncts not top-level
            del conjuncts[start:]
            top = False
        if top:
            self.opaque += len(preds) - (len(conjuncts) - start)
        if len(preds) == 1:
            return preds[0]
        return lambda r: all(p(r) for p in preds)

    def negation(self, top: bool, conjuncts: list[Comparison]) -> Predicate:
        if self.at_kw("NOT"):
            self.take()
            inner = self.primary(False, conjuncts)
            return lambda r: not inner(r)
        return self.primary(top, conjuncts)

    def primary(self, top: bool, conjuncts: list[Comparison]) -> Predicate:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.condition(False, [])
            closing = self.take()
            if closing.text != ")":
                msg = f"unexpected token: '{closing.text}', expected )"
                raise SoqlError(msg)
            return inner
        name = self.field_name()
        nxt = self.take()
        if nxt.kind == "op":
            value = self.literal()
            op = nxt.text
            if top:
                conjuncts.append(Comparison(name, op, value))
            return lambda r: _compare(op, r.get(name), value)
        negate = False
        if nxt.kind == "kw" and nxt.text == "NOT":
            negate = True
            nxt = self.take()
        if nxt.kind == "kw" and nxt.text == "IN":
            values = self.value_list()
            if negate:
                return lambda r: all(not _compare("=", r.get(name), v) for v in values)
            return lambda r: any(_compare("=", r.get(name), v) for v in values)
        if nxt.kind == "kw" and nxt.text == "LIKE" and not negate:
            pattern = self.literal()
            if not isinstance(pattern, str):
                msg = "LIKE needs a string"
                raise SoqlError(msg)
            regex = _like(pattern)
            return lambda r: r.get(name) is not None and bool(regex.match(str(r.get(name))))
        msg = f"unexpected token: '{nxt.text}'"
        raise SoqlError(msg)

    def value_list(self) -> list[Any]:
        opening = self.take()
        if opening.text != "(":
            msg = f"unexpected token: '{opening.text}', expected ("
            raise SoqlError(msg)
        values = [self.literal()]
        while True:
            token = self.take()
            if token.text == ")":
                return values
            if token.text != ",":
                msg = f"unexpected token: '{token.text}'"
                raise SoqlError(msg)
            values.append(self.literal())


def parse_query(text: str, fields_of: Callable[[str], set[str] | None]) -> Query:  # noqa: PLR0912, PLR0915 - the statement's clauses in order
    """Parse ``text`` into a :class:`Query`.

    Args:
        text: the SOQL statement.
        fields_of: returns the field names of an object, or None for an unknown object.

    Raises:
        SoqlError: the statement is malformed, or names an unknown object or field.
    """
    tokens = _tokenize(text)
    parser = _Parser(tokens, lambda _name: True)
    parser.expect_kw("SELECT")
    select: list[Token] = []
    while not parser.at_kw("FROM"):
        select.append(parser.take())
    parser.expect_kw("FROM")
    obj = parser.take()
    known = fields_of(obj.text)
    if obj.kind != "word" or known is None:
        msg = f"sObject type '{obj.text}' is not supported."
        raise SoqlError(msg, "INVALID_TYPE")
    lowered = {f.lower(): f for f in known}

    def is_known(name: str) -> bool:
        return name.lower() in lowered

    parser.known_field = is_known
    query = Query(fields=[], object=obj.text)
    texts = [t.text for t in select]
    if [t.upper() for t in texts] == ["COUNT", "(", ")"]:
        query.count_only = True
    else:
        for i, token in enumerate(select):
            if i % 2 == 1:
                if token.text != ",":
                    msg = f"unexpected token: '{token.text}'"
                    raise SoqlError(msg)
                continue
            if token.kind != "word":
                msg = f"unexpected token: '{token.text}'"
                raise SoqlError(msg)
            if not is_known(token.text):
                msg = (
                    f"No such column '{token.text}' on entity '{obj.text}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after "
                    "the custom field name."
                )
                raise SoqlError(msg, "INVALID_FIELD")
            query.fields.append(lowered[token.text.lower()])
        if not query.fields or len(select) % 2 == 0:
            msg = "unexpected token: 'FROM'"
            raise SoqlError(msg)
    if parser.at_kw("WHERE"):
        parser.take()
        conjuncts: list[Comparison] = []
        query.where = parser.condition(True, conjuncts)
        query.opaque_conditions = parser.opaque
        if parser.opaque == 0 and not conjuncts:
            query.opaque_conditions = 1
        query.conjuncts = [Comparison(lowered[c.field.lower()], c.op, c.value) for c in conjuncts]
    if parser.at_kw("ORDER"):
        parser.take()
        parser.expect_kw("BY")
        while True:
            name = lowered[parser.field_name().lower()]
            descending = False
            nulls_last = False
            if parser.at_kw("ASC") or parser.at_kw("DESC"):
                descending = parser.take().text == "DESC"
            nulls_last = descending
            if parser.at_kw("NULLS"):
                parser.take()
                nulls_last = parser.take().text == "LAST"
            query.order_by.append((name, descending, nulls_last))
            separator = parser.peek()
            if separator is None or separator.text != ",":
                break
            parser.take()
    if parser.at_kw("LIMIT"):
        parser.take()
        query.limit = int(parser.literal())
    if parser.at_kw("OFFSET"):
        parser.take()
        query.offset = int(parser.literal())
    leftover = parser.peek()
    if leftover is not None:
        msg = f"unexpected token: '{leftover.text}'"
        raise SoqlError(msg)
    return query
