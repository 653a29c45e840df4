"""PagerDuty Events API v2 against a loopback Events API stand-in that validates every event
and keeps PagerDuty's alerts by dedup_key, so a test sees what a team would see: one
incident per Graph alert (or group), acknowledged when taken, resolved when resolved.

The schema below is written from the facts of PagerDuty/api-schema
``reference/events-v2/openapiv3.json`` (not copied: that repository states no license, see
tests/formats/README.md): the body requires ``routing_key`` and ``event_action`` (trigger,
acknowledge, resolve); ``dedup_key`` "Required unless the event_type is trigger";
``payload`` requires ``summary``, ``severity`` (critical, warning, error, info) and ``source``,
and may carry ``timestamp`` (date-time), ``component``, ``group``, ``class``,
``custom_details`` (object); ``links`` items require ``href``; ``images`` items require
``src``. PagerDuty's developer documentation adds: a trigger needs its payload, ``summary`` is
at most 1024 characters and ``dedup_key`` at most 255.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import jsonschema
import pytest

from receiver.envelope import Envelope
from receiver.routing.grouping import summarize
from receiver.sinks.base import Delivery, PermanentError, RetryableError
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.pagerduty import dedup_key, event_actions
from receiver.sinks.registry import build_sink
from tests.sinks.conftest import Answer, Recorded, Server, json_answer, make_envelope, update_of
from tests.sinks.helpers import PD_KEY, http_config

_LINKS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["href"],
        "properties": {"href": {"type": "string"}, "text": {"type": "string"}},
    },
}
_PAYLOAD = {
    "type": "object",
    "required": ["summary", "severity", "source"],
    "properties": {
        "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
        "timestamp": {"type": "string", "format": "date-time"},
        "severity": {"enum": ["critical", "warning", "error", "info"]},
        "source": {"type": "string", "minLength": 1},
        "component": {"type": "string"},
        "group": {"type": "string"},
        "class": {"type": "string"},
        "custom_details": {"type": "object"},
    },
    "additionalProperties": False,
}
EVENTS_V2 = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "properties": {
        "payload": _PAYLOAD,
        "routing_key": {"type": "string"},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": _LINKS,
        "images": {"type": "array", "items": {"type": "object", "required": ["src"]}},
    },
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"event_action": {"const": "trigger"}}},
            "then": {"required": ["payload"]},
            "else": {"required": ["dedup_key"]},
        },
    ],
}
# jsonschema checks "date-time" only with an optional package; RFC 3339 by the standard library.
DATES = jsonschema.FormatChecker(formats=())


@DATES.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    return not isinstance(value, str) or (
        "T" in value and datetime.fromisoformat(value).tzinfo is not None
    )


VALIDATOR = jsonschema.Draft7Validator(EVENTS_V2, format_checker=DATES)


@dataclass
class PdAlert:
    dedup_key: str
    status: str = "triggered"  # triggered | acknowledged | resolved
    events: list[str] = field(default_factory=list)


@dataclass
class FakeEventsApi:
    """Events API v2 as PagerDuty documents it: 400 for an invalid event, 202 otherwise; a
    trigger opens an alert for a dedup_key that has no open one (or adds to the open one),
    acknowledge and resolve act on the open alert and are dropped when there is none."""

    server: Server
    routing_key: str
    alerts: list[PdAlert] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.handler = self.handle

    def open_alert(self, key: str) -> PdAlert | None:
        return next((a for a in self.alerts if a.dedup_key == key and a.status != "resolved"), None)

    async def handle(self, rec: Recorded) -> Answer | None:
        try:
            event = rec.json
        except ValueError:
            return json_answer(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["JSON parse error"],
                },
                400,
            )
        errors = [e.message for e in VALIDATOR.iter_errors(event)]
        if errors or event["routing_key"] != self.routing_key:
            return json_answer(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": errors or ["Invalid routing key"],
                },
                400,
            )
        action, key = event["event_action"], event.get("dedup_key", "")
        alert = self.open_alert(key)
        if action == "trigger" and alert is None:
            alert = PdAlert(key)
            self.alerts.append(alert)
        if alert is None:
            self.dropped.append((action, key))
        else:
            alert.events.append(action)
            alert.status = {"acknowledge": "acknowledged", "resolve": "resolved"}.get(
                action, alert.status
            )
        return json_answer(
            {"status": "success", "message": "Event processed", "dedup_key": key}, 202
        )


@pytest.fixture
def pd(server: Server) -> FakeEventsApi:
    return FakeEventsApi(server, PD_KEY)


def _sink(url: str, pool: ClientPool, **extra: Any) -> Any:
    return build_sink(http_config("pagerduty", url, **extra), pool=pool, metrics=SinkMetrics())


def test_the_schema_holds_the_rules() -> None:
    good = {"routing_key": "k", "event_action": "resolve", "dedup_key": "d"}
    assert not list(VALIDATOR.iter_errors(good))
    for bad in (
        {"routing_key": "k", "event_action": "resolve"},  # no dedup_key
        {"routing_key": "k", "event_action": "trigger"},  # no payload
        {**good, "event_action": "snooze"},
        {
            "routing_key": "k",
            "event_action": "trigger",
            "payload": {"summary": "s", "source": "x", "severity": "high"},
        },
        {
            "routing_key": "k",
            "event_action": "trigger",
            "payload": {"summary": "s", "source": "x", "severity": "info", "timestamp": "today"},
        },
    ):
        assert list(VALIDATOR.iter_errors(bad)), bad


async def test_one_incident_per_alert_taken_then_resolved(
    pd: FakeEventsApi, server: Server, pool: ClientPool
) -> None:
    sink = _sink(server.url, pool)
    env = make_envelope()
    assigned = update_of(env, assigned_to="adele@contoso.com")  # taken, status still new
    working = replace(update_of(assigned, status="inProgress"), updated_at="2026-03-01T11:30Z")
    resolved = replace(
        update_of(working, status="resolved", classification="truePositive"),
        updated_at="2026-03-01T12:00:00Z",
    )
    details = [(await sink.send(v, Delivery())).detail for v in (env, assigned, working, resolved)]
    assert [r.json["event_action"] for r in server.requests] == [
        "trigger",
        "acknowledge",
        "acknowledge",
        "resolve",
    ]
    key = f"{env.tenant_id}:{env.id}"
    assert details[0] == f"trigger {key}" and details[3] == f"resolve {key}"
    (alert,) = pd.alerts
    assert alert.dedup_key == key and alert.status == "resolved"
    assert alert.events == ["trigger", "acknowledge", "acknowledge", "resolve"]
    assert pd.dropped == []
    first, ack = server.requests[0].json, server.requests[1].json
    assert first["client"] == "graph-alert-receiver" and first["client_url"] == env.web_url
    assert first["payload"]["severity"] == "critical"
    assert first["payload"]["timestamp"] == env.first_activity_at
    assert "client" not in ack and "client_url" not in ack  # trigger-only fields
    assert ack["payload"]["custom_details"]["assigned_to"] == "adele@contoso.com"
    assert server.requests[3].json["payload"]["custom_details"]["classification"] == "truePositive"


async def test_first_seen_taken_opens_then_acknowledges(
    pd: FakeEventsApi, server: Server, pool: ClientPool
) -> None:
    sink = _sink(server.url, pool)
    taken = make_envelope("already-taken", status="inProgress")
    closed = make_envelope("already-closed", status="resolved")
    assert event_actions(taken) == ("trigger", "acknowledge")
    result = await sink.send(taken, Delivery())
    await sink.send(closed, Delivery())
    assert result.detail == f"trigger + acknowledge {dedup_key(taken)}"
    (alert,) = pd.alerts  # the resolved one pages nobody: PagerDuty drops its resolve
    assert alert.dedup_key == dedup_key(taken) and alert.status == "acknowledged"
    assert pd.dropped == [("resolve", dedup_key(closed))]


async def test_a_failed_second_event_is_retried_whole_and_stays_one_incident(
    pd: FakeEventsApi, server: Server, pool: ClientPool
) -> None:
    sink = _sink(server.url, pool)
    taken = make_envelope(status="new", assigned_to="adele@contoso.com")
    server.fail(
        Answer(202, '{"status":"success"}'),
        Answer(429, '{"status":"throttled"}', {"retry-after": "2"}),
    )
    with pytest.raises(RetryableError) as info:
        await sink.send(taken, Delivery(attempt=1))
    assert info.value.retry_after == 2.0
    await sink.send(taken, Delivery(attempt=2))
    assert [r.json["event_action"] for r in server.requests] == [
        "trigger",
        "acknowledge",
        "trigger",
        "acknowledge",
    ]
    (alert,) = pd.alerts  # the scripted 202 was not recorded by the stand-in: its retry was
    assert alert.events == ["trigger", "acknowledge"] and alert.status == "acknowledged"


async def test_a_refused_event_is_permanent_and_keeps_the_key_secret(
    pd: FakeEventsApi, server: Server, pool: ClientPool
) -> None:
    sink = _sink(server.url, pool, routing_key="R0UT1NGK3Ywrongkeywrongkey00")
    with pytest.raises(PermanentError) as info:
        await sink.send(make_envelope(), Delivery())
    assert info.value.status == 400
    assert "wrongkey" not in str(info.value) and PD_KEY not in str(info.value)
    assert pd.alerts == []


async def test_a_group_is_one_incident_per_group(
    pd: FakeEventsApi, server: Server, pool: ClientPool
) -> None:
    sink = _sink(server.url, pool)
    a, b, c = make_envelope("a1"), make_envelope("b2"), make_envelope("c3")
    seven = {"tenant": "contoso", "incident_id": "7"}
    eight = {"tenant": "contoso", "incident_id": "8"}
    messages: list[Envelope] = [
        summarize("g7", 1_000, 2_000, seven, [a], [], first=True),
        summarize("g8", 1_500, 2_500, eight, [c], [], first=True),
        summarize("g7", 1_000, 62_000, seven, [a, b], ["b2"], first=False),
        summarize(
            "g7",
            1_000,
            122_000,
            seven,
            [update_of(a, status="inProgress"), update_of(b, status="inProgress")],
            ["a1", "b2"],
            first=False,
        ),
        summarize(
            "g7",
            1_000,
            182_000,
            seven,
            [update_of(a, status="resolved"), update_of(b, status="resolved")],
            ["a1", "b2"],
            first=False,
        ),
    ]
    for message in messages:
        await sink.send(message, Delivery())
    assert [r.json["event_action"] for r in server.requests] == [
        "trigger",
        "trigger",
        "trigger",
        "acknowledge",
        "resolve",
    ]
    g7, g8 = pd.alerts
    assert g7.dedup_key == dedup_key(messages[0]) != g8.dedup_key
    assert g7.events == ["trigger", "trigger", "acknowledge", "resolve"]
    assert g7.status == "resolved" and g8.status == "triggered"
    assert all(len(r.json["dedup_key"]) <= 255 for r in server.requests)
