"""Grouping, the pure part: labels, group ids, the group's message, the routes file's rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from receiver.envelope import Entity, Envelope
from receiver.routing.config import RoutesConfig
from receiver.routing.grouping import all_resolved, group_id, group_labels, summarize
from receiver.routing.tree import route


def env(n: int, **fields: Any) -> Envelope:
    base: dict[str, Any] = {
        "id": f"a{n}",
        "tenant_id": "t1",
        "tenant": "contoso",
        "source_api": "alerts_v2",
        "title": f"Alert {n}",
        "severity": "low",
        "status": "new",
        "incident_id": "42",
        "provider": "MDE",
        "created_at": f"2026-11-30T10:00:0{n}Z",
        "incident_web_url": "https://security.microsoft.com/incidents/42",
    }
    base.update(fields)
    return Envelope(**base)


def test_labels_and_ids() -> None:
    a = env(1)
    assert group_labels(("incident_id", "raw.x.y"), a) == {"incident_id": "42", "raw.x.y": ""}
    gid = group_id("teams", "route", {"incident_id": "42"})
    assert gid == group_id("teams", "route", {"incident_id": "42"})
    assert gid != group_id("teams", "route", {"incident_id": "43"})
    assert gid != group_id("email", "route", {"incident_id": "42"})
    assert gid != group_id("teams", "route.routes[0]", {"incident_id": "42"})


def test_first_message_summarises_the_members() -> None:
    members = [
        env(1, entities=(Entity("user", "alice"),)),
        env(2, severity="high", title="Ransomware", entities=(Entity("device", "pc1"),)),
        env(3, severity="medium", status="resolved", provider="MDI"),
    ]
    msg = summarize(
        "g1",
        1_764_496_800_000,
        1_764_496_830_000,
        {"incident_id": "42"},
        members,
        ["a1", "a2", "a3"],
        first=True,
    )
    assert msg.kind == "group" and msg.first_seen and msg.changes == ()
    assert msg.title == "3 alerts: Ransomware and 2 more"
    assert msg.severity == "high"  # the highest
    assert msg.status == "new"  # some member is still new
    assert msg.incident_id == "42" and msg.web_url.endswith("/incidents/42")
    assert msg.tenant_id == "t1" and msg.provider == ""  # providers differ
    assert msg.entities == (Entity("device", "pc1"), Entity("user", "alice"))
    lines = msg.description.splitlines()
    assert lines[0] == "Grouped by incident_id=42."
    assert lines[1].startswith("- [High] Ransomware")  # highest severity first
    assert [m["id"] for m in msg.raw["group"]["alerts"]] == ["a2", "a3", "a1"]
    assert "raw" not in msg.raw["group"]["alerts"][0]
    assert msg.created_at == "2025-11-30T10:00:00.000Z"
    assert msg.updated_at == "2025-11-30T10:00:30.000Z"
    assert msg.id == "group-g1-1764496800000"


def test_an_incident_names_its_group() -> None:
    incident = env(
        9,
        id="42",
        kind="incident",
        source_api="incidents",
        severity="medium",
        title="Multi-stage incident on 2 endpoints",
        provider="",
    )
    msg = summarize(
        "g1",
        1_764_496_800_000,
        1_764_496_830_000,
        {"incident_id": "42"},
        [env(1, severity="high", title="Ransomware"), incident, env(2)],
        ["a1", "42", "a2"],
        first=True,
    )
    assert msg.title == "Multi-stage incident on 2 endpoints (2 alert(s))"
    assert msg.severity == "high" and msg.web_url.endswith("/incidents/42")
    lines = msg.description.splitlines()
    assert "- [Medium] Incident: Multi-stage incident on 2 endpoints · new" in lines
    alone = summarize("g2", 1, 2, {"incident_id": "42"}, [incident], ["42"], first=True)
    assert alone.title == "Multi-stage incident on 2 endpoints"


def test_later_messages_are_updates_marking_what_changed() -> None:
    members = [env(1), env(2, status="inProgress")]
    msg = summarize("g1", 1, 2, {"incident_id": "42"}, members, ["a2"], first=False)
    assert not msg.first_seen and msg.changes == ("alerts",)
    assert "1 new or changed since the last message" in msg.description
    assert any(line.startswith("* ") and "Alert 2" in line for line in msg.description.splitlines())
    assert any(line.startswith("- ") and "Alert 1" in line for line in msg.description.splitlines())
    reminder = summarize("g1", 1, 3, {}, members, [], first=False)
    assert reminder.changes == ("reminder",) and "Reminder" in reminder.description
    single = summarize("g1", 1, 2, {}, [env(5)], ["a5"], first=True)
    assert single.title == "Alert 5"


def test_mixed_tenants_and_empty_groups() -> None:
    msg = summarize(
        "g", 1, 2, {}, [env(1), env(2, tenant_id="t2", tenant="fabrikam")], [], first=True
    )
    assert msg.tenant_id == "" and msg.tenant == ""
    with pytest.raises(ValueError, match="at least one member"):
        summarize("g", 1, 2, {}, [], [], first=True)
    assert all_resolved([env(1, status="resolved")])
    assert not all_resolved([env(1, status="resolved"), env(2)])
    assert not all_resolved([])


def test_many_members_are_counted_not_listed() -> None:
    msg = summarize("g", 1, 2, {}, [env(i) for i in range(30)], [], first=True)
    assert msg.description.splitlines()[-1] == "... and 10 more"


def test_grouping_settings_are_inherited_and_defaulted() -> None:
    routes = TypeAdapter(RoutesConfig).validate_python(
        {
            "route": {
                "receiver": "teams",
                "group_by": ["incident_id"],
                "group_interval": "2m",
                "routes": [
                    {"matchers": ['severity="high"'], "receiver": "pager", "group_by": []},
                    {"matchers": ['severity="low"'], "group_wait": "5s", "repeat_interval": "1h"},
                ],
            }
        }
    )
    high = route(routes.route, env(1, severity="high"))[0]
    assert high.sink == "pager" and not high.grouped
    low = route(routes.route, env(1))[0]
    assert low.grouped and low.group_by == ("incident_id",)
    assert (low.group_wait_s, low.group_interval_s, low.repeat_interval_s) == (5, 120, 3600)
    medium = route(routes.route, env(1, severity="medium"))[0]
    assert (medium.group_wait_s, medium.group_interval_s, medium.repeat_interval_s) == (
        30,
        120,
        0,
    )  # Alertmanager's group_wait; reminders are off unless asked for


@pytest.mark.parametrize(
    ("group_by", "message"),
    [
        (["nope"], "cannot group by 'nope'"),
        ("incident_id", "must be a list"),
        (["severity", "severity"], "names a field twice"),
        (["raw."], "cannot group by 'raw.'"),
    ],
)
def test_bad_group_by_is_refused(group_by: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TypeAdapter(RoutesConfig).validate_python(
            {"route": {"receiver": "a", "group_by": group_by}}
        )
