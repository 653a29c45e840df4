"""Alertmanager-style matchers: ``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex``.

Pure: no I/O. A regex must match the whole value, as in Alertmanager. Values may be quoted with
double quotes (``severity=~"high|medium"``), which is required when they contain a comma or
start or end with white space.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$""",
    re.DOTALL,
)


class MatcherError(ValueError):
    """A matcher string that cannot be parsed, with the reason."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if m is None:
            raise MatcherError(
                f"bad matcher {text!r}: expected NAME OP VALUE with OP one of =, !=, =~, !~"
            )
        name, op, raw = m.group("name"), m.group("op"), m.group("value")
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise MatcherError(
                    f"bad matcher {text!r}: unterminated or invalid quoted value"
                ) from None
            if not isinstance(value, str):
                raise MatcherError(f"bad matcher {text!r}: quoted value must be a string")
        else:
            value = raw
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value, re.DOTALL)
            except re.error as exc:
                raise MatcherError(
                    f"bad matcher {text!r}: invalid regular expression: {exc}"
                ) from None
        return cls(name, op, value, regex)  # type: ignore[arg-type]

    def matches(self, actual: str | None) -> bool:
        """Whether a field value satisfies the matcher; a missing field counts as ''."""
        s = "" if actual is None else actual
        if self.op == "=":
            return s == self.value
        if self.op == "!=":
            return s != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(s) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"
