"""A small, safe expression language for derived columns, evaluated with `pyarrow.compute`.

User text never becomes Python code: a hand-written tokenizer and a Pratt parser build an AST of
five node kinds (column, literal, unary, binary, call), and the evaluator maps each node onto a
whitelisted `pyarrow.compute` kernel. There is no attribute access, no subscript, no statement
separator and no way to name a Python object, so ``__import__('os')`` is merely a call of an
unknown function and ``a.__class__`` a syntax error.

Grammar (lowest precedence first)::

    expr    := expr 'or' expr | expr 'and' expr | 'not' expr
             | sum (('==' | '!=' | '<' | '<=' | '>' | '>=') sum)?
    sum     := sum ('+' | '-') product | product
    product := product ('*' | '/' | '%') unary | unary
    unary   := '-' unary | atom
    atom    := NUMBER | STRING | 'true' | 'false' | 'null' | NAME | `any name` | NAME '(' args ')'
             | '(' expr ')'

Semantics: ``/`` is true division (float64; x / 0 is inf or NaN); ``%`` is Python's floored modulo,
computed in float64 (exact for integers below 2**53; x % 0 is null) and cast back to int64 when both
sides are integers; ``+`` on two strings concatenates; ``and`` / ``or`` / ``not`` use Kleene logic
(null and false = false); other operators and functions propagate nulls.

Example:
    expr = compile_expression("if_else(age >= 18, 'adult', lower(`group name`))")
    expr.output_type(batch.schema)   # pa.string(); type errors surface here, before any data
    column = expr.evaluate(batch)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from threadline.errors import InvalidArgument
from threadline.prep.arrays import arrow_scalar

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_LENGTH = 2_000
MAX_DEPTH = 50

_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",")
_COMPARE = {
    "==": "equal",
    "!=": "not_equal",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
}
# Binding power of each infix operator; comparisons do not chain (``a < b < c`` is an error).
_INFIX = {"or": 1, "and": 2, **dict.fromkeys(_COMPARE, 4), "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_NOT_POWER = 3
_NEG_POWER = 7

# A pa.Array or a pa.Scalar (a literal); pyarrow ships no type hints, so this is Any to mypy.
Value: TypeAlias = Any


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "str", "name", "quoted", "op", "end"
    text: str
    pos: int


@dataclass(frozen=True)
class Column:
    """A reference to a column of the batch."""

    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    """A number, string, boolean or null constant."""

    value: int | float | str | bool | None
    pos: int


@dataclass(frozen=True)
class Unary:
    """``-x`` or ``not x``."""

    op: str
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    """An arithmetic, comparison or boolean operator between two operands."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Call:
    """A call of a whitelisted function."""

    name: str
    args: tuple[Node, ...]
    pos: int


Node = Column | Literal | Unary | Binary | Call


def _error(text: str, pos: int, problem: str) -> InvalidArgument:
    return InvalidArgument(f"expression {text!r}: {problem} at position {pos}")


def tokenize(text: str) -> list[_Token]:
    """Split an expression into tokens.

    Raises:
        InvalidArgument: on a character outside the language or an unterminated quote.
    """
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == "."):
                j += 1
            if j < len(text) and text[j] in "eE":
                k = j + 1
                if k < len(text) and text[k] in "+-":
                    k += 1
                if k < len(text) and text[k].isdigit():
                    j = k
                    while j < len(text) and text[j].isdigit():
                        j += 1
            if text[i:j].count(".") > 1 or (j < len(text) and (text[j].isalnum() or text[j] == "_")):
                raise _error(text, i, f"malformed number {text[i : j + 1]!r}")
            tokens.append(_Token("num", text[i:j], i))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(_Token("name", text[i:j], i))
            i = j
        elif ch in "'\"`":
            value, end = _quoted(text, i)
            tokens.append(_Token("quoted" if ch == "`" else "str", value, i))
            i = end
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                raise _error(text, i, f"unexpected character {ch!r}")
            tokens.append(_Token("op", op, i))
            i += len(op)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string or name from `start`; a doubled quote stands for one quote."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if text.startswith(quote * 2, i):
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(text[i])
        i += 1
    raise _error(text, start, f"unterminated {quote} quote")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, op: str) -> _Token:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise _error(self.text, token.pos, f"expected {op!r} but found {_describe(token)}")
        return token

    def parse(self) -> Node:
        node = self.expression(0, 0)
        token = self.peek()
        if token.kind != "end":
            raise _error(self.text, token.pos, f"unexpected {_describe(token)}")
        return node

    def expression(self, min_power: int, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise _error(self.text, self.peek().pos, f"nesting deeper than {MAX_DEPTH} levels")
        left = self.prefix(depth)
        while True:
            token = self.peek()
            op = token.text if token.kind in ("op", "name") else ""
            power = _INFIX.get(op)
            if power is None or power <= min_power:
                return left
            self.take()
            right = self.expression(power, depth + 1)
            if op in _COMPARE and self.peek().text in _COMPARE and self.peek().kind == "op":
                raise _error(self.text, self.peek().pos, "comparisons do not chain; use 'and'")
            left = Binary(op, left, right, token.pos)

    def prefix(self, depth: int) -> Node:
        token = self.take()
        if token.kind == "num":
            is_float = any(c in token.text for c in ".eE")
            number: int | float = float(token.text) if is_float else int(token.text)
            return Literal(number, token.pos)
        if token.kind == "str":
            return Literal(token.text, token.pos)
        if token.kind == "quoted":
            return Column(token.text, token.pos)
        if token.kind == "name":
            word = token.text
            if word == "not":
                return Unary("not", self.expression(_NOT_POWER, depth + 1), token.pos)
            if word in ("true", "false"):
                return Literal(word == "true", token.pos)
            if word == "null":
                return Literal(None, token.pos)
            if word in _KEYWORDS:
                raise _error(self.text, token.pos, f"unexpected {_describe(token)}")
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(token, depth)
            return Column(word, token.pos)
        if token.kind == "op" and token.text == "-":
            return Unary("-", self.expression(_NEG_POWER - 1, depth + 1), token.pos)
        if token.kind == "op" and token.text == "(":
            node = self.expression(0, depth + 1)
            self.expect(")")
            return node
        raise _error(self.text, token.pos, f"unexpected {_describe(token)}")

    def call(self, name: _Token, depth: int) -> Node:
        if name.text not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise _error(self.text, name.pos, f"unknown function {name.text!r} (known: {known})")
        self.expect("(")
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            args.append(self.expression(0, depth + 1))
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.expression(0, depth + 1))
        self.expect(")")
        low, high = FUNCTIONS[name.text][0]
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise _error(
                self.text, name.pos, f"function {name.text!r} takes {want} arguments, got {len(args)}"
            )
        return Call(name.text, tuple(args), name.pos)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of expression"
    return f"{token.text!r}"


def _columns(node: Node) -> set[str]:
    if isinstance(node, Column):
        return {node.name}
    if isinstance(node, Literal):
        return set()
    if isinstance(node, Unary):
        return _columns(node.operand)
    if isinstance(node, Binary):
        return _columns(node.left) | _columns(node.right)
    return set().union(*(_columns(arg) for arg in node.args))


def _is_string(value: Value) -> bool:
    return bool(pa.types.is_string(value.type) or pa.types.is_large_string(value.type))


def _is_int(value: Value) -> bool:
    return bool(pa.types.is_integer(value.type))


def _numeric(value: Value) -> bool:
    kind = value.type
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind))


def _modulo(left: Value, right: Value) -> Value:
    a = pc.cast(left, pa.float64())
    b = pc.cast(right, pa.float64())
    b = pc.if_else(pc.equal(b, arrow_scalar(0.0)), arrow_scalar(None, pa.float64()), b)
    result = pc.subtract(a, pc.multiply(b, pc.floor(pc.divide(a, b))))
    if _is_int(left) and _is_int(right):
        return pc.cast(result, pa.int64())
    return result


def _round(x: Value, digits: Value | None = None) -> Value:
    if digits is None:
        return pc.round(x)
    if not (isinstance(digits, pa.Scalar) and _is_int(digits) and digits.is_valid):
        raise TypeError("round(x, n) needs an integer literal n")
    return pc.round(x, ndigits=digits.as_py())


def _concat(*values: Value) -> Value:
    return pc.binary_join_element_wise(*values, "")


def _log(x: Value) -> Value:
    return pc.ln(pc.cast(x, pa.float64()))


def _exp(x: Value) -> Value:
    return pc.exp(pc.cast(x, pa.float64()))


def _sqrt(x: Value) -> Value:
    return pc.sqrt(pc.cast(x, pa.float64()))


def _temporal(kernel: Callable[[Value], Value]) -> Callable[[Value], Value]:
    def apply(x: Value) -> Value:
        if not pa.types.is_temporal(x.type):
            raise TypeError(f"needs a date or timestamp, got {x.type}")
        return kernel(x)

    return apply


def _text(kernel: Callable[[Value], Value]) -> Callable[[Value], Value]:
    def apply(x: Value) -> Value:
        if not (_is_string(x) or pa.types.is_null(x.type)):
            raise TypeError(f"needs a string, got {x.type}")
        return kernel(x)

    return apply


# name -> ((min args, max args), kernel). The only functions an expression can reach.
FUNCTIONS: dict[str, tuple[tuple[int, int], Callable[..., Value]]] = {
    "abs": ((1, 1), pc.abs_checked),
    "round": ((1, 2), _round),
    "floor": ((1, 1), pc.floor),
    "ceil": ((1, 1), pc.ceil),
    "log": ((1, 1), _log),
    "exp": ((1, 1), _exp),
    "sqrt": ((1, 1), _sqrt),
    "lower": ((1, 1), _text(pc.utf8_lower)),
    "upper": ((1, 1), _text(pc.utf8_upper)),
    "strip": ((1, 1), _text(pc.utf8_trim_whitespace)),
    "length": ((1, 1), _text(pc.utf8_length)),
    "coalesce": ((2, 16), pc.coalesce),
    "if_else": ((3, 3), pc.if_else),
    "is_null": ((1, 1), pc.is_null),
    "year": ((1, 1), _temporal(pc.year)),
    "month": ((1, 1), _temporal(pc.month)),
    "day": ((1, 1), _temporal(pc.day)),
}


@dataclass(frozen=True)
class Expression:
    """A parsed expression: `evaluate` it on batches, `output_type` checks it against a schema.

    Attributes:
        text: the source text.
        tree: the parsed AST.
        columns: the column names it reads.
    """

    text: str
    tree: Node
    columns: frozenset[str]

    def output_type(self, schema: pa.Schema) -> pa.DataType:
        """The Arrow type of the result on batches of `schema` (evaluates on an empty batch).

        Raises:
            InvalidArgument: on an unknown column or a type error, naming its position.
        """
        empty = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
        return self.evaluate(empty).type

    def evaluate(self, batch: pa.RecordBatch) -> pa.Array:
        """The expression's value for every row of `batch`, as an array of ``batch.num_rows``.

        Raises:
            InvalidArgument: on an unknown column, a type error or an arithmetic overflow.
        """
        value = self._eval(self.tree, batch)
        if isinstance(value, pa.Scalar):
            return pa.repeat(value, batch.num_rows)
        return value

    def _eval(self, node: Node, batch: pa.RecordBatch) -> Value:
        if isinstance(node, Column):
            index = batch.schema.get_field_index(node.name)
            if index < 0:
                raise _error(self.text, node.pos, f"unknown column {node.name!r}")
            column: pa.Array = batch.column(index)
            return column
        if isinstance(node, Literal):
            return arrow_scalar(node.value)
        if isinstance(node, Unary):
            operand = self._eval(node.operand, batch)
            return self._apply(node, f"operator {node.op!r}", _unary(node.op), operand)
        if isinstance(node, Binary):
            left = self._eval(node.left, batch)
            right = self._eval(node.right, batch)
            return self._apply(node, f"operator {node.op!r}", _binary(node.op, left, right), left, right)
        args = [self._eval(arg, batch) for arg in node.args]
        return self._apply(node, f"function {node.name!r}", FUNCTIONS[node.name][1], *args)

    def _apply(self, node: Node, what: str, kernel: Callable[..., Value], *args: Value) -> Value:
        try:
            return kernel(*args)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError) as exc:
            types = ", ".join(str(arg.type) for arg in args)
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _error(self.text, node.pos, f"{what} cannot apply to ({types}): {detail}") from exc


def _unary(op: str) -> Callable[..., Value]:
    if op == "-":
        return _checked_numeric(pc.negate_checked)
    return _boolean(pc.invert)


def _binary(op: str, left: Value, right: Value) -> Callable[..., Value]:
    if op in _COMPARE:
        return getattr(pc, _COMPARE[op])  # type: ignore[no-any-return]
    if op == "and":
        return _boolean(pc.and_kleene)
    if op == "or":
        return _boolean(pc.or_kleene)
    if op == "+" and _is_string(left) and _is_string(right):
        return _concat
    if op == "/":
        return _checked_numeric(lambda a, b: pc.divide(pc.cast(a, pa.float64()), pc.cast(b, pa.float64())))
    if op == "%":
        return _checked_numeric(_modulo)
    kernels = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}
    return _checked_numeric(kernels[op])


def _checked_numeric(kernel: Callable[..., Value]) -> Callable[..., Value]:
    def apply(*args: Value) -> Value:
        if not all(_numeric(arg) for arg in args):
            raise TypeError("needs numbers")
        return kernel(*args)

    return apply


def _boolean(kernel: Callable[..., Value]) -> Callable[..., Value]:
    def apply(*args: Value) -> Value:
        if not all(pa.types.is_boolean(arg.type) or pa.types.is_null(arg.type) for arg in args):
            raise TypeError("needs booleans")
        return kernel(*args)

    return apply


def compile_expression(text: str) -> Expression:
    """Parse `text` into an `Expression`; nothing in it is ever run as Python.

    Raises:
        InvalidArgument: on bad syntax or an unknown function (with the position), or when the
            text is longer than `MAX_LENGTH` characters or nests deeper than `MAX_DEPTH`.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise InvalidArgument(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise InvalidArgument("expression is empty")
    tree = _Parser(text).parse()
    return Expression(text, tree, frozenset(_columns(tree)))
