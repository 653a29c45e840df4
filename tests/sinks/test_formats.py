"""Payloads against the vendors' published formats: Adaptive Card 1.5 schema, MessageCard,
Slack Block Kit, Standard Webhooks (test vector), CloudEvents, PagerDuty Events v2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jsonschema
import pytest

from receiver.envelope import Envelope
from receiver.routing.grouping import summarize
from receiver.sinks.base import Delivery
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from receiver.sinks.webhook import sign, webhook_id
from tests.sinks.conftest import FORMATS, Answer, Server, make_envelope, update_of
from tests.sinks.helpers import SIGNING_SECRET, http_config

# PagerDuty Events API v2 (PagerDuty/api-schema reference/events-v2/openapiv3.json @ 8574381).
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_PAYLOAD_OPTIONAL = {"timestamp", "component", "group", "class", "custom_details"}


def card_validator() -> jsonschema.Draft6Validator:
    schema = json.loads((FORMATS / "adaptive-card-1.5.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    return jsonschema.Draft6Validator(schema)


def _sink(kind: str, url: str, pool: ClientPool, **extra: Any) -> Any:
    return build_sink(http_config(kind, url, **extra), pool=pool, metrics=SinkMetrics())


VARIANTS = {
    "new": make_envelope(),
    "update": update_of(make_envelope(), status="inProgress", severity="medium"),
    "resolved": update_of(make_envelope(), status="resolved"),
    "bare": Envelope(id="x1", tenant_id="t", source_api="alerts_v1", title="Only a title"),
    "group": summarize(
        "g1",
        1,
        2,
        {"incident_id": "7"},
        [make_envelope(), update_of(make_envelope(), status="resolved")],
        [],
        first=True,
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_teams_adaptive_card_is_valid_1_5(
    variant: str, server: Server, pool: ClientPool
) -> None:
    env = VARIANTS[variant]
    await _sink("teams", server.url, pool).send(env, Delivery())
    message = server.requests[-1].json
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    errors = sorted(card_validator().iter_errors(card), key=str)
    assert not errors, [e.message for e in errors]
    assert card["version"] == "1.5"
    text = json.dumps(card)
    assert env.title in text
    if env.web_url:
        (action,) = card["actions"]
        assert action == {
            "type": "Action.OpenUrl",
            "title": "Open in Microsoft Defender",
            "url": env.web_url,
        }
    else:
        assert "actions" not in card
    header = card["body"][0]
    assert header["type"] == "Container"
    assert header["style"] == {"high": "attention", "medium": "warning"}.get(
        env.severity, "default"
    )
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    if variant != "bare":
        assert facts["Tenant"] == "contoso" and facts["User"] == "adele@contoso.com"
        assert facts["Provider"].startswith("microsoftDefenderForEndpoint")
    if variant == "update":
        assert "Changed: Status, Severity" in text
        assert facts["Status"] == "inProgress"


def test_the_schema_rejects_a_broken_card() -> None:
    bad = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "Container", "style": "purple", "items": []}],
    }
    assert list(card_validator().iter_errors(bad))


async def test_teams_message_card(server: Server, pool: ClientPool) -> None:
    env = VARIANTS["update"]
    await _sink("teams", server.url, pool, format="messagecard").send(env, Delivery())
    card = server.requests[-1].json
    assert card["@type"] == "MessageCard" and card["@context"] == "https://schema.org/extensions"
    assert card["themeColor"] == "F7630C"  # medium
    assert card["title"].startswith("Updated: ")
    (section,) = card["sections"]
    assert {"name": "Severity", "value": "Medium"} in section["facts"]
    assert "Status" in section["text"]
    (action,) = card["potentialAction"]
    assert action["@type"] == "OpenUri"
    assert action["targets"] == [{"os": "default", "uri": env.web_url}]


async def test_slack_blocks(server: Server, pool: ClientPool) -> None:
    env = VARIANTS["update"]
    await _sink("slack", server.url, pool).send(env, Delivery())
    msg = server.requests[-1].json
    assert "Suspicious PowerShell &lt;download&gt; &amp; run" in msg["text"]
    assert msg["text"].startswith("Updated: ")
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds[0] == "header" and "context" in kinds and kinds[-1] == "actions"
    assert msg["blocks"][0]["text"]["type"] == "plain_text"
    fields = msg["blocks"][1]["fields"]
    assert 1 <= len(fields) <= 10
    assert all(f["type"] == "mrkdwn" for f in fields)
    # mrkdwn control characters in values are escaped
    assert all("<download>" not in f["text"] for f in fields)
    button = msg["blocks"][-1]["elements"][0]
    assert button["type"] == "button" and button["url"] == env.web_url


def test_standard_webhooks_vector() -> None:
    vectors = json.loads((FORMATS / "standard-webhooks-vectors.json").read_text())
    assert vectors
    for v in vectors:
        assert (
            sign(v["secret"], v["msg_id"], v["timestamp"], v["payload"]) == v["expected_signature"]
        )
        assert (
            sign(v["secret"], v["msg_id"], v["timestamp"], v["payload"] + " ")
            != v["expected_signature"]
        )


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(part.split(",", 1)[1], expected)
        for part in headers["webhook-signature"].split()
        if part.startswith("v1,")
    )


async def test_webhook_signed_and_stable_id(server: Server, pool: ClientPool) -> None:
    sink = _sink("webhook", server.url, pool, headers={"X-Team": "soc"})
    env = VARIANTS["new"]
    server.fail(Answer(503))
    with pytest.raises(Exception, match="503"):
        await sink.send(env, Delivery(attempt=1))
    await sink.send(env, Delivery(attempt=2))
    await sink.send(update_of(env, status="resolved"), Delivery())
    first, retry, update = server.requests
    for rec in (first, retry, update):
        assert rec.headers["content-type"] == "application/json"
        assert _verify(SIGNING_SECRET, rec.headers, rec.body)
        assert abs(int(rec.headers["webhook-timestamp"]) - time.time()) < 60
        assert rec.headers["x-team"] == "soc"
        assert rec.path.startswith("/hooks/")
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == webhook_id(env)
    assert update.headers["webhook-id"] != first.headers["webhook-id"]
    assert first.json == json.loads(env.to_json())
    tampered = dict(first.headers, **{"webhook-timestamp": "1"})
    assert not _verify(SIGNING_SECRET, tampered, first.body)


async def test_webhook_cloudevents(server: Server, pool: ClientPool) -> None:
    sink = _sink("webhook", server.url, pool, cloudevents=True, cloudevents_source="/receiver/prod")
    for env, kind in ((VARIANTS["new"], "created"), (VARIANTS["update"], "updated")):
        await sink.send(env, Delivery())
        rec = server.requests[-1]
        assert rec.headers["content-type"] == "application/cloudevents+json"
        event = rec.json
        for attr in ("specversion", "id", "source", "type", "time", "datacontenttype", "data"):
            assert attr in event, attr
        assert event["specversion"] == "1.0"
        assert event["type"] == f"com.microsoft.graph.security.alert.{kind}"
        assert event["id"] == rec.headers["webhook-id"]
        assert event["source"] == "/receiver/prod"
        assert event["datacontenttype"] == "application/json"
        assert event["data"]["id"] == env.id
        assert _verify(SIGNING_SECRET, rec.headers, rec.body)


async def test_webhook_templated_body(server: Server, pool: ClientPool, tmp_path: Any) -> None:
    tpl = tmp_path / "body.json.j2"
    tpl.write_text(
        '{"text": {{ ("[" ~ severity_label ~ "] " ~ alert.title) | tojson }}, '
        '"id": {{ webhook_id | tojson }}}'
    )
    sink = _sink("webhook", server.url, pool, templates={"body.json": str(tpl)})
    env = VARIANTS["new"]
    await sink.send(env, Delivery())
    rec = server.requests[-1]
    assert rec.json == {"text": f"[High] {env.title}", "id": webhook_id(env)}
    assert _verify(SIGNING_SECRET, rec.headers, rec.body)


@pytest.mark.parametrize(
    ("variant", "action"),
    [("new", "trigger"), ("update", "acknowledge"), ("resolved", "resolve"), ("bare", "trigger")],
)
async def test_pagerduty_events_v2(
    variant: str, action: str, server: Server, pool: ClientPool
) -> None:
    server.default = Answer(202, '{"status":"success","message":"Event processed"}')
    env = VARIANTS[variant]
    await _sink("pagerduty", server.url, pool).send(env, Delivery())
    rec = server.requests[-1]
    assert rec.path == "/v2/enqueue"
    body = rec.json
    assert {"routing_key", "event_action"} <= body.keys()
    assert body["event_action"] in PD_ACTIONS and body["event_action"] == action
    assert body["dedup_key"] == f"{env.tenant_id}:{env.id}"
    payload = body["payload"]
    assert {"summary", "severity", "source"} <= payload.keys()
    assert payload.keys() <= {"summary", "severity", "source"} | PD_PAYLOAD_OPTIONAL
    assert all(isinstance(payload[k], str) and payload[k] for k in ("summary", "source"))
    assert len(payload["summary"]) <= 1024
    assert payload["severity"] in PD_SEVERITIES
    if variant == "new":
        assert payload["severity"] == "critical"
        assert body["links"] == [{"href": env.web_url, "text": "Open in Microsoft Defender"}]
        assert payload["custom_details"]["alert_id"] == env.id
        assert payload["group"] == "contoso"
    if variant == "update":
        assert payload["severity"] == "error"  # medium
