"""The OData $filter parser and evaluator (table tests)."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.simulator import odata

ALERT: dict[str, Any] = {
    "id": "A1",
    "title": "O'Brien's sign-in",
    "severity": "high",
    "status": "newAlert",
    "confidence": 80,
    "riskScore": None,
    "isActive": True,
    "createdDateTime": "2026-03-01T10:00:00.0000000Z",
    "vendorInformation": {"provider": "IPC", "vendor": "Microsoft"},
    "tags": ["vip", "finance"],
    "evidence": [{"ipAddress": "1.2.3.4"}, {"ipAddress": "5.6.7.8"}],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("severity eq 'high'", True),
        ("severity ne 'high'", False),
        ("Severity eq 'high'", False),  # property names are case-sensitive
        ("severity EQ 'high'", True),  # operators are not
        ("vendorInformation/provider eq 'IPC'", True),
        ("vendorInformation/missing eq null", True),
        ("riskScore eq null", True),
        ("riskScore ne null", False),
        ("confidence gt 50", True),
        ("confidence ge 80 and confidence le 80", True),
        ("confidence lt 80", False),
        ("confidence gt 79.5", True),
        ("riskScore gt 1", False),
        ("isActive eq true", True),
        ("isActive eq false", False),
        ("title eq 'O''Brien''s sign-in'", True),
        ("createdDateTime gt 2026-01-01T00:00:00Z", True),
        ("createdDateTime lt 2026-03-01T10:00:00.000001Z", True),  # microseconds count
        ("createdDateTime ge 2026-03-01T10:00:00Z", True),
        ("createdDateTime eq 2026-03-01T11:00:00+01:00", True),
        ("createdDateTime gt 2026-03-01T10:00:00Z", False),
        ("severity eq 'low' or severity eq 'high'", True),
        ("severity eq 'low' or severity eq 'medium'", False),
        ("not (severity eq 'low')", True),
        ("not severity eq 'high'", False),
        ("(severity eq 'low' or status eq 'newAlert') and confidence gt 10", True),
        ("severity eq 'low' or status eq 'newAlert' and confidence gt 100", False),
        ("status eq microsoft.graph.alertStatus'newAlert'", True),
        ("tags/any(t: t eq 'vip')", True),
        ("tags/any(t: t eq 'ops')", False),
        ("evidence/any(e: e/ipAddress eq '5.6.7.8')", True),
        ("'high' eq severity", True),
        ("confidence eq '80'", False),  # no implicit conversion
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert odata.evaluate(odata.parse_filter(text), ALERT) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "severity",
        "severity eq",
        "severity eq 'high",
        "severity == 'high'",
        "severity eq 'high' and",
        "(severity eq 'high'",
        "severity eq 'high')",
        "startswith(title, 'O')",
        "contains(title,'x')",
        "severity in ('high','low')",
        "severity eq 'high' xor status eq 'x'",
        "confidence add 1 eq 2",
        "tags/any(t t eq 'x')",
        "eq eq eq",
        "severity eq #",
    ],
)
def test_invalid_clauses(text: str) -> None:
    with pytest.raises(odata.FilterError):
        odata.parse_filter(text)


def test_enum_members_are_checked() -> None:
    enums = {"status": frozenset({"newAlert", "resolved"})}
    odata.resolve_enums(odata.parse_filter("status eq 'newAlert'"), enums)
    with pytest.raises(odata.FilterError):
        odata.resolve_enums(odata.parse_filter("status eq 'New'"), enums)
    with pytest.raises(odata.FilterError):
        odata.resolve_enums(odata.parse_filter("not ('New' eq status)"), enums)


@pytest.mark.parametrize(
    "text",
    [
        "status eq 'NewAlert'",  # the docs' own example (legacy alerts)
        "status eq 'NEWALERT'",
        "'newalert' eq status",
        "status eq microsoft.graph.alertStatus'NewAlert'",
        "not (status ne 'NewAlert') and title eq 'NewAlert'",
    ],
)
def test_enum_literals_match_members_case_insensitively(text: str) -> None:
    enums = {"status": frozenset({"newAlert", "resolved"})}
    expr = odata.resolve_enums(odata.parse_filter(text), enums)
    assert odata.evaluate(expr, {"status": "newAlert", "title": "NewAlert"})
    assert not odata.evaluate(expr, {"status": "resolved", "title": "NewAlert"})


def test_only_enum_properties_are_case_folded() -> None:
    enums = {"status": frozenset({"newAlert"})}
    expr = odata.resolve_enums(odata.parse_filter("title eq 'NewAlert'"), enums)
    assert not odata.evaluate(expr, {"title": "newalert"})  # strings compare exactly
    inside = odata.resolve_enums(
        odata.parse_filter("userStates/any(u: u/status eq 'x') or status eq 'NEWALERT'"), enums
    )
    assert odata.evaluate(inside, {"status": "newAlert", "userStates": []})


def test_orderby() -> None:
    items = [{"n": 10, "s": "b"}, {"n": 9, "s": "a"}, {"n": None, "s": "c"}]
    assert [i["n"] for i in odata.order(items, "n")] == [None, 9, 10]
    assert [i["n"] for i in odata.order(items, "n desc")] == [10, 9, None]
    assert [i["s"] for i in odata.order(items, "s desc, n")] == ["c", "b", "a"]
    with pytest.raises(odata.FilterError):
        odata.order(items, "n sideways")
