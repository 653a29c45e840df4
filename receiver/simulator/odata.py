"""A small OData `$filter` parser and evaluator, and `$orderby`.

Grammar (precedence low to high)::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | lambda | operand CMP operand
    lambda  := path "/any(" name ":" expr ")"
    CMP     := eq | ne | gt | ge | lt | le
    operand := 'string' ('' escapes a quote) | number | true | false | null
             | DateTimeOffset (2026-01-01T00:00:00Z) | Namespace.enumType'value' | path
    path    := name ("/" name)*          e.g. vendorInformation/provider

Anything else raises `FilterError`, which Graph reports as 400 "Invalid filter clause".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.simulator.clock import parse_datetime

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_KEYWORDS = COMPARISONS | {"and", "or", "not"}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<enum>[A-Za-z_][\w.]*\.[A-Za-z_]\w*'(?:[^']|'')*')
  | (?P<path>[A-Za-z_@$][\w.]*(?:/[A-Za-z_][\w.]*)*)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)


class FilterError(ValueError):
    """The `$filter` text is not a clause this simulator (or Graph) accepts."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Literal | Path
    right: Literal | Path


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Any_:
    collection: Path
    variable: str
    body: Expr


Expr = Compare | And | Or | Not | Any_


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, match.group()))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of filter")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        _, text = self.take()
        if text != value:
            raise FilterError(f"expected {value!r}, got {text!r}")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "path" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Expr:
        if not self.tokens:
            raise FilterError("empty filter")
        expr = self.expr()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return expr

    def expr(self) -> Expr:
        left = self.conjunction()
        while self.keyword("or"):
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.unary()
        while self.keyword("and"):
            left = And(left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.keyword("not"):
            return Not(self.unary())
        token = self.peek()
        if token == ("punct", "("):
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        nxt = self.peek(1)
        if (
            token
            and token[0] == "path"
            and token[1].lower().endswith("/any")
            and nxt
            == (
                "punct",
                "(",
            )
        ):
            return self.lambda_any()
        left = self.operand()
        kind, op = self.take()
        if kind != "path" or op.lower() not in COMPARISONS:
            raise FilterError(f"expected a comparison operator, got {op!r}")
        right = self.operand()
        return Compare(op.lower(), left, right)

    def lambda_any(self) -> Any_:
        _, text = self.take()
        collection = Path(tuple(text.split("/")[:-1]))
        self.expect("(")
        kind, variable = self.take()
        if kind != "path" or "/" in variable or variable.lower() in _KEYWORDS:
            raise FilterError("expected a lambda variable")
        self.expect(":")
        body = self.expr()
        self.expect(")")
        return Any_(collection, variable, body)

    def operand(self) -> Literal | Path:
        kind, text = self.take()
        if kind == "string":
            return Literal(text[1:-1].replace("''", "'"))
        if kind == "enum":
            quoted = text[text.index("'") :]
            return Literal(quoted[1:-1].replace("''", "'"))
        if kind == "number":
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "datetime":
            try:
                return Literal(parse_datetime(text))
            except ValueError as exc:
                raise FilterError(str(exc)) from exc
        if kind == "path":
            lowered = text.lower()
            if lowered in ("true", "false"):
                return Literal(lowered == "true")
            if lowered == "null":
                return Literal(None)
            if lowered in _KEYWORDS:
                raise FilterError(f"unexpected keyword {text!r}")
            return Path(tuple(text.split("/")))
        raise FilterError(f"unexpected {text!r}")


def parse_filter(text: str) -> Expr:
    """Parse `$filter` text; raise `FilterError` for anything outside the grammar."""
    return _Parser(text).parse()


def _resolve(path: Path, entity: Mapping[str, Any], scope: Mapping[str, Any]) -> Any:
    head, *rest = path.parts
    value: Any = scope[head] if head in scope else entity.get(head)
    for part in rest:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, dt.datetime) or isinstance(right, dt.datetime):
        try:
            left = parse_datetime(left) if isinstance(left, str) else left
            right = parse_datetime(right) if isinstance(right, str) else right
        except ValueError:
            return op == "ne"
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    numeric = (int, float)
    comparable = (isinstance(left, numeric) and isinstance(right, numeric)) or type(left) is type(
        right
    )
    if not comparable or isinstance(left, bool):
        return False
    if op == "gt":
        return bool(left > right)
    if op == "ge":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def evaluate(expr: Expr, entity: Mapping[str, Any], scope: Mapping[str, Any] | None = None) -> bool:
    """True when `entity` (a JSON object) satisfies `expr`."""
    scope = scope or {}
    if isinstance(expr, Compare):

        def value(side: Literal | Path) -> Any:
            return side.value if isinstance(side, Literal) else _resolve(side, entity, scope)

        return _compare(expr.op, value(expr.left), value(expr.right))
    if isinstance(expr, And):
        return evaluate(expr.left, entity, scope) and evaluate(expr.right, entity, scope)
    if isinstance(expr, Or):
        return evaluate(expr.left, entity, scope) or evaluate(expr.right, entity, scope)
    if isinstance(expr, Not):
        return not evaluate(expr.operand, entity, scope)
    items = _resolve(expr.collection, entity, scope)
    if not isinstance(items, list):
        return False
    return any(evaluate(expr.body, entity, {**scope, expr.variable: item}) for item in items)


def resolve_enums(expr: Expr, enums: Mapping[str, frozenset[str]]) -> Expr:
    """`expr` with every enum literal compared to a known enum property spelled as its member.

    Enum literals match members case-insensitively: the docs' own examples write
    `status eq 'NewAlert'` (legacy alerts, member `newAlert`) and `status eq 'Active'`
    (incidents, member `active`). A value that is no member in any casing is rejected: Graph
    answers `status eq 'New'` on legacy alerts with "Invalid filter clause". `enums` maps a
    property path like "status" to its members.
    """
    if isinstance(expr, Compare):
        left, right = expr.left, expr.right
        if isinstance(left, Path) and isinstance(right, Literal):
            right = _member(left, right, enums)
        elif isinstance(right, Path) and isinstance(left, Literal):
            left = _member(right, left, enums)
        return Compare(expr.op, left, right)
    if isinstance(expr, And):
        return And(resolve_enums(expr.left, enums), resolve_enums(expr.right, enums))
    if isinstance(expr, Or):
        return Or(resolve_enums(expr.left, enums), resolve_enums(expr.right, enums))
    if isinstance(expr, Not):
        return Not(resolve_enums(expr.operand, enums))
    return Any_(expr.collection, expr.variable, resolve_enums(expr.body, enums))


def _member(path: Path, literal: Literal, enums: Mapping[str, frozenset[str]]) -> Literal:
    members = enums.get("/".join(path.parts))
    if members is None or not isinstance(literal.value, str):
        return literal
    wanted = literal.value.lower()
    for member in members:
        if member.lower() == wanted:
            return Literal(member)
    raise FilterError(f"{literal.value!r} is not a member of {path.parts}")


def parse_orderby(text: str) -> list[tuple[tuple[str, ...], bool]]:
    """`$orderby=a desc, b/c` -> [(("a",), True), (("b", "c"), False)]."""
    result: list[tuple[tuple[str, ...], bool]] = []
    for clause in text.split(","):
        words = clause.split()
        if not words or len(words) > 2 or not re.fullmatch(r"[A-Za-z_][\w/]*", words[0]):
            raise FilterError(f"invalid $orderby clause {clause!r}")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise FilterError(f"invalid $orderby direction {direction!r}")
        result.append((tuple(words[0].split("/")), direction == "desc"))
    return result


def order(items: Sequence[Mapping[str, Any]], orderby: str) -> list[Mapping[str, Any]]:
    """Sort JSON objects by `$orderby`; nulls sort first ascending, last descending."""
    ordered = list(items)
    for parts, descending in reversed(parse_orderby(orderby)):
        path = Path(parts)

        def key(item: Mapping[str, Any], path: Path = path) -> tuple[int, float, str]:
            value = _resolve(path, item, {})
            if value is None:
                return (0, 0.0, "")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return (1, float(value), "")
            return (1, 0.0, str(value))

        ordered.sort(key=key, reverse=descending)
    return ordered
