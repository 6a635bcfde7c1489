"""MLflow's run search language, parsed into a small syntax tree.

    metrics.auc > 0.9 and params.C = '1.0' and tags.`my tag` != 'x'
    attributes.status IN ('FINISHED', 'FAILED') and run_name ILIKE 'train%'

A filter is comparisons joined by AND (MLflow has no OR). Keys are `metrics.K`, `params.K`,
`tags.K` or `attributes.K` (also `attribute.`, `metric.`, `param.`, `tag.`, or a bare attribute
name); a key with spaces or dots is quoted with backticks or double quotes. Metrics and numeric
attributes compare with `= != < <= > >=` against numbers; params, tags and string attributes
with `= != LIKE ILIKE IN NOT IN` against quoted strings. `compile` in `search.py` turns the tree
into SQL; nothing here touches the database, and no part of a filter is ever evaluated as code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from threadline.errors import InvalidArgument

Entity = Literal["metric", "param", "tag", "attribute"]

_ENTITIES: dict[str, Entity] = {
    "metric": "metric", "metrics": "metric", "param": "param", "params": "param",
    "parameter": "param", "parameters": "param", "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute",
}
#: attribute name -> (column name, kind); aliases follow MLflow's spelling
STRING_ATTRIBUTES = {
    "run_id": "id", "id": "id", "run_name": "name", "name": "name", "status": "status",
    "user": "user", "user_id": "user", "lifecycle_stage": "lifecycle_stage",
    "artifact_commit": "artifact_commit", "parent_id": "parent_id",
}
NUMERIC_ATTRIBUTES = {
    "start_time": "start_time", "end_time": "end_time", "created": "start_time",
    "experiment_id": "experiment_id",
}
NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>(?:[A-Za-z_][\w]*|`[^`]*`)(?:\.(?:[\w/:\-]+|`[^`]*`|"[^"]*"))*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL"}


@dataclass(frozen=True)
class Token:
    """A lexical token: its kind, text and 0-based position in the filter."""

    kind: str  # ident | string | number | op | punct | keyword | end
    text: str
    pos: int


@dataclass(frozen=True)
class Comparison:
    """`entity.key op value`; `value` is a number, a string, or a tuple of strings for IN."""

    entity: Entity
    key: str
    op: str
    value: float | str | tuple[str, ...]


@dataclass(frozen=True)
class OrderKey:
    """One `order_by` clause."""

    entity: Entity
    key: str
    ascending: bool


def _error(text: str, token: Token, expected: str) -> InvalidArgument:
    shown = "end of filter" if token.kind == "end" else repr(token.text)
    return InvalidArgument(
        f"invalid search filter {text!r}: at position {token.pos} found {shown}, expected "
        f"{expected}"
    )


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; an unknown character raises InvalidArgument with its position."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidArgument(
                f"invalid search filter {text!r}: unexpected character {text[pos]!r} at position "
                f"{pos}; quote strings with '...' and keys with `...`"
            )
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "ident" and value.upper() in _KEYWORDS:
            tokens.append(Token("keyword", value.upper(), pos))
        elif kind != "space":
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "`\"'":
        return part[1:-1]
    return part


def _string_literal(raw: str) -> str:
    body = raw[1:-1]
    if raw[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def split_identifier(raw: str, token: Token, source: str) -> tuple[Entity, str]:
    """`metrics.a.b` -> ("metric", "a.b"); a bare attribute name -> ("attribute", name)."""
    if raw.startswith("`"):  # a bare quoted key has no entity
        raise _error(source, token, "metrics.KEY, params.KEY, tags.KEY or attributes.NAME")
    head, dot, rest = raw.partition(".")
    entity = _ENTITIES.get(head.lower()) if dot else None
    if entity is None:
        if not dot and (head.lower() in STRING_ATTRIBUTES or head.lower() in NUMERIC_ATTRIBUTES):
            return "attribute", head.lower()
        raise _error(source, token,
                     "metrics.KEY, params.KEY, tags.KEY or attributes.NAME (e.g. status, run_name, "
                     "start_time)")
    key = _unquote(rest)
    if not key:
        raise _error(source, token, f"a key after {head}.")
    if entity == "attribute":
        key = key.lower()
        if key not in STRING_ATTRIBUTES and key not in NUMERIC_ATTRIBUTES:
            known = ", ".join(sorted({*STRING_ATTRIBUTES, *NUMERIC_ATTRIBUTES}))
            raise _error(source, token, f"one of the attributes {known}")
    return entity, key


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def comparison(self) -> Comparison:
        token = self.take()
        if token.kind != "ident":
            raise _error(self.text, token, "a key such as metrics.auc or params.C")
        entity, key = split_identifier(token.text, token, self.text)
        numeric = entity == "metric" or (entity == "attribute" and key in NUMERIC_ATTRIBUTES)
        op = self.operator(numeric)
        if op in ("IN", "NOT IN"):
            return Comparison(entity, key, op, self.string_list())
        value = self.take()
        if numeric:
            if value.kind != "number":
                raise _error(self.text, value, f"a number to compare {token.text} with")
            return Comparison(entity, key, op, float(value.text))
        if value.kind != "string":
            raise _error(self.text, value,
                         f"a quoted string to compare {token.text} with (e.g. '1.0')")
        return Comparison(entity, key, op, _string_literal(value.text))

    def operator(self, numeric: bool) -> str:
        token = self.take()
        allowed = NUMERIC_OPS if numeric else STRING_OPS
        op = {"==": "=", "<>": "!="}.get(token.text, token.text)
        if token.kind == "keyword" and op == "NOT":
            following = self.take()
            if following.text != "IN":
                raise _error(self.text, following, "IN after NOT")
            op = "NOT IN"
        if token.kind not in ("op", "keyword") or op not in allowed:
            kind = "metrics and numeric attributes" if numeric else "params, tags and string attributes"
            raise _error(self.text, token, f"one of {', '.join(allowed)} (the operators for {kind})")
        return op

    def string_list(self) -> tuple[str, ...]:
        opening = self.take()
        if opening.text != "(":
            raise _error(self.text, opening, "'(' to start the list of values")
        values: list[str] = []
        while True:
            item = self.take()
            if item.kind != "string":
                raise _error(self.text, item, "a quoted string in the IN list")
            values.append(_string_literal(item.text))
            sep = self.take()
            if sep.text == ")":
                return tuple(values)
            if sep.text != ",":
                raise _error(self.text, sep, "',' or ')' in the IN list")

    def parse(self) -> list[Comparison]:
        if self.peek().kind == "end":
            return []
        out = [self.comparison()]
        while self.peek().kind != "end":
            joiner = self.take()
            if joiner.text == "OR":
                raise _error(self.text, joiner, "AND (OR is not supported; run two searches)")
            if joiner.text != "AND":
                raise _error(self.text, joiner, "AND or the end of the filter")
            out.append(self.comparison())
        return out


def parse_filter(text: str) -> list[Comparison]:
    """Parse a filter string into comparisons (all of which must hold); "" matches everything."""
    if not isinstance(text, str):
        raise InvalidArgument(f"a search filter must be a string, not {type(text).__name__}")
    return _Parser(text).parse()


def parse_order_by(clauses: str | list[str] | tuple[str, ...]) -> list[OrderKey]:
    """Parse `order_by` clauses like `metrics.auc DESC`, `attributes.start_time`, `params.C ASC`."""
    if isinstance(clauses, str):
        clauses = [clauses]
    out: list[OrderKey] = []
    for clause in clauses:
        tokens = tokenize(clause)
        if tokens[0].kind != "ident":
            raise _error(clause, tokens[0], "a key such as metrics.auc or attributes.start_time")
        entity, key = split_identifier(tokens[0].text, tokens[0], clause)
        ascending = True
        rest = tokens[1:]
        if rest[0].kind == "ident" and rest[0].text.upper() in ("ASC", "DESC"):
            ascending = rest[0].text.upper() == "ASC"
            rest = rest[1:]
        if rest[0].kind != "end":
            raise _error(clause, rest[0], "ASC, DESC or the end of the clause")
        out.append(OrderKey(entity, key, ascending))
    return out
