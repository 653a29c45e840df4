"""secure_score events in the sinks: email (real SMTP server, and Graph sendMail on the
simulator) with the chart inline, a Teams card valid against the Adaptive Card 1.5 schema, the
event JSON to a webhook, and the generic rendering elsewhere."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from PIL import Image

from receiver.envelope import Envelope
from receiver.graph.client import client_for
from receiver.pipeline.writeback import GraphMail
from receiver.securescore.chart import LINE_COLOR
from receiver.securescore.events import envelope
from receiver.securescore.render import CHART_CID
from receiver.securescore.watch import ControlScore, Policy, Profile, Snapshot, evaluate
from receiver.sinks.base import Delivery
from receiver.sinks.email import EmailSink
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port
from tests.graph.helpers import sim_settings, tenant_entry
from tests.sinks.conftest import Server
from tests.sinks.helpers import config, http_config
from tests.sinks.test_formats import card_validator

TENANT_ID = "11111111-1111-4111-8111-111111111111"
TODAY = dt.date(2026, 3, 2)  # a Monday


def _events() -> tuple[Envelope, Envelope]:
    """A drop today (AdminMFAV2 undone) and this week's digest, from 30 days of history."""
    snaps = []
    for i in range(30):
        day = TODAY - dt.timedelta(days=29 - i)
        mfa = 0.0 if i == 29 else 10.0
        snaps.append(
            Snapshot(
                day,
                200.0 + i - (12.0 if i == 29 else 0.0),
                350.0,
                {
                    "AdminMFAV2": ControlScore("AdminMFAV2", "Identity", mfa),
                    "DLPEnabled": ControlScore("DLPEnabled", "Data", 1.0),
                },
                (("AllTenants", 41.6),),
            )
        )
    profiles = [
        Profile(
            "AdminMFAV2",
            "Require MFA for <admins> & co",
            10.0,
            rank=1,
            service="AzureAD",
            user_impact="Low",
            implementation_cost="Low",
            action_url="https://security.microsoft.com/securescore?viewid=actions",
        ),
        Profile("DLPEnabled", "Turn on DLP", 4.0, rank=2, service="SCC"),
    ]
    result = evaluate(snaps, profiles, Policy(initial_lookback_days=1))
    drop, digest = (envelope(f, "contoso", TENANT_ID) for f in result.findings)
    assert (drop.raw["reason"], digest.raw["reason"]) == ("drop", "digest")
    return drop, digest


DROP, DIGEST = _events()


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def _email_sink(**extra: Any) -> EmailSink:
    data = {
        "type": "email",
        "name": "mail",
        "tls": "none",
        "sender": "alerts@contoso.com",
        "to": ["soc@contoso.com"],
        "timeout_s": 5,
        **extra,
    }
    return EmailSink(config(data), metrics=SinkMetrics())


def _png_has_the_line(png: bytes) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (720, 320)
    colours = image.getcolors(maxcolors=100_000)
    assert colours is not None
    assert any(
        count > 100 and all(abs(a - b) <= 10 for a, b in zip(c, LINE_COLOR, strict=True))
        for count, c in colours
    )


async def test_email_digest_with_inline_chart_and_text_fallback(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    await _email_sink(host="127.0.0.1", port=port).send(DIGEST, Delivery(route="scores"))
    (msg,) = box.messages
    assert " ".join(msg["Subject"].split()) == DIGEST.title  # the title says what it is
    assert msg["X-Graph-Alert-Id"] == DIGEST.id
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.iter_parts()
    html = html_part.get_content()
    assert f'src="cid:{CHART_CID}"' in html
    assert image.get_content_type() == "image/png" and image["Content-ID"] == f"<{CHART_CID}>"
    assert image.get_content_disposition() == "inline"
    _png_has_the_line(image.get_content())
    # The HTML escapes what Graph sent; both bodies carry the numbers and the actions.
    assert "Require MFA for &lt;admins&gt; &amp; co" in html and "<admins>" not in html
    assert "Top improvement actions" in html and "+10" in html
    text = plain.get_content()
    assert "Score: 217 of 350 (62%) on 2026-03-02" in text
    assert (
        "1. Require MFA for <admins> & co: +10 points (AzureAD, user impact Low, cost Low)" in text
    )
    assert "2. Turn on DLP: +3 points" in text
    assert "2026-02-01  200" in text and "2026-03-02  217" in text  # the trend, as a table
    assert DIGEST.web_url in text


async def test_email_drop_lists_the_controls_that_fell(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    await _email_sink(host="127.0.0.1", port=port).send(DROP, Delivery())
    (msg,) = box.messages
    assert " ".join(msg["Subject"].split()) == DROP.title
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "Change: -11 points since the day before" in body
    assert "- Require MFA for <admins> & co (AdminMFAV2): 10 -> 0 of 10" in body
    assert any(p.get_content_type() == "image/png" for p in msg.walk())


async def test_graph_sendmail_carries_the_chart_as_an_inline_attachment(
    make_simulator: Callable[..., SimulatorHandle], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator()
    settings = sim_settings(
        make_settings, sim, redis_url, tenants=[tenant_entry(sim.tenant, "contoso")]
    )
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    try:
        sink = _email_sink(transport="graph", tenant="contoso")
        sink.mailer = GraphMail(graph, {"contoso": sim.tenant.tenant_id})
        await sink.send(DIGEST, Delivery())
    finally:
        await graph.aclose()
        await redis.aclose()
    (mail,) = await asyncio.to_thread(sim.control.mails, sim.tenant.tenant_id)
    message = mail["message"]
    assert f"cid:{CHART_CID}" in message["body"]["content"]
    (attachment,) = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["isInline"] is True and attachment["contentId"] == CHART_CID
    assert attachment["contentType"] == "image/png"
    _png_has_the_line(base64.b64decode(attachment["contentBytes"]))


@pytest.mark.parametrize("event", [DROP, DIGEST], ids=["drop", "digest"])
async def test_teams_compact_card_is_valid_1_5(
    event: Envelope, server: Server, pool: ClientPool
) -> None:
    sink = build_sink(http_config("teams", server.url), pool=pool, metrics=SinkMetrics())
    await sink.send(event, Delivery())
    (attachment,) = server.requests[-1].json["attachments"]
    card = attachment["content"]
    errors = sorted(card_validator().iter_errors(card), key=str)
    assert not errors, [e.message for e in errors]
    assert card["body"][0]["items"][1]["text"] == event.title
    columns = card["body"][1]["columns"]
    change, colour = ("-11", "Attention") if event is DROP else ("+17", "Good")
    assert [c["items"][1]["text"] for c in columns] == ["217 / 350", "62%", change]
    assert columns[2]["items"][1]["color"] == colour
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    if event is DROP:
        assert facts == {"Require MFA for <admins> & co": "10 → 0"}
        assert card["body"][0]["style"] == "warning"
    else:
        assert facts == {"Require MFA for <admins> & co": "+10 points", "Turn on DLP": "+3 points"}
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open Microsoft Secure Score", "url": event.web_url}
    ]


async def test_webhook_gets_the_event_json(server: Server, pool: ClientPool) -> None:
    sink = build_sink(http_config("webhook", server.url), pool=pool, metrics=SinkMetrics())
    await sink.send(DIGEST, Delivery())
    body = server.requests[-1].json
    assert body["kind"] == "secure_score" and body["id"] == DIGEST.id
    assert body["raw"]["actions"][0]["id"] == "AdminMFAV2"
    assert len(body["raw"]["trend"]) == 30
    cloud = build_sink(
        http_config("webhook", server.url, cloudevents=True), pool=pool, metrics=SinkMetrics()
    )
    await cloud.send(DROP, Delivery())
    event = server.requests[-1].json
    assert event["type"] == "com.microsoft.graph.security.secureScore.created"
    assert event["data"]["raw"]["reason"] == "drop"


@pytest.mark.parametrize("kind", ["slack", "pagerduty"])
async def test_other_sinks_render_the_generic_message(
    kind: str, server: Server, pool: ClientPool
) -> None:
    sink = build_sink(http_config(kind, server.url), pool=pool, metrics=SinkMetrics())
    await sink.send(DROP, Delivery())
    text = server.requests[-1].body.decode()
    assert "Secure Score dropped 11 points to 217 of 350 (contoso)" in text


async def test_a_teams_sink_can_override_the_secure_score_card(
    server: Server, pool: ClientPool, tmp_path: Any
) -> None:
    custom = tmp_path / "score.json.j2"
    custom.write_text(
        '{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": '
        '"TextBlock", "text": {{ ("Score: " ~ alert.title) | tojson }}}]}'
    )
    sink = build_sink(
        http_config("teams", server.url, templates={"secure_score.json": str(custom)}),
        pool=pool,
        metrics=SinkMetrics(),
    )
    await sink.send(DROP, Delivery())
    (attachment,) = server.requests[-1].json["attachments"]
    assert attachment["content"]["body"] == [{"type": "TextBlock", "text": f"Score: {DROP.title}"}]
