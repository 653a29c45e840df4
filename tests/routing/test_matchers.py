from __future__ import annotations

import pytest

from receiver.routing.matchers import Matcher, MatcherError


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('severity="high"', "high", True),
        ('severity="high"', "medium", False),
        ("severity=high", "high", True),
        ('severity!="low"', "high", True),
        ('severity!="low"', "low", False),
        ('severity=~"high|medium"', "medium", True),
        ('severity=~"high|medium"', "mediumish", False),  # regexes match the whole value
        ('title!~".*test.*"', "real incident", True),
        ('title!~".*test.*"', "a test alert", False),
        ('provider=""', None, True),  # a missing field counts as the empty string
        ('provider!=""', None, False),
        ('title="a, b"', "a, b", True),
        ('tags=~"(?i)VIP"', "vip", True),
        ('raw.vendorInformation.provider = "IPC"', "IPC", True),
    ],
)
def test_matcher_semantics(text: str, value: str | None, expected: bool) -> None:
    assert Matcher.parse(text).matches(value) is expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("severity", "expected NAME OP VALUE"),
        ('severity=~"(unclosed"', "invalid regular expression"),
        ('title="unterminated', "invalid quoted value"),
        ("=high", "expected NAME OP VALUE"),
    ],
)
def test_bad_matchers(text: str, reason: str) -> None:
    with pytest.raises(MatcherError, match=reason):
        Matcher.parse(text)


def test_round_trip_string() -> None:
    m = Matcher.parse('severity=~"high|medium"')
    assert Matcher.parse(str(m)) == m
