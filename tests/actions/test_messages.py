"""Action links in messages: Teams (Adaptive Card 1.5 schema, MessageCard), Slack buttons and
email links carry signed links for the right alert and action; end to end, a card's "Take it"
updates the alert in the simulator and the channel gets the update card."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.actions.app import mount
from receiver.actions.links import ActionLinks, LinkSigner
from receiver.envelope import Envelope
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.pipeline import records
from receiver.pipeline.worker import build_worker
from receiver.sinks.base import Delivery
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry
from tests.sinks.helpers import config, http_config
from tests.sinks.test_formats import card_validator

KEY = b"message-signing-key-0123456789abcdefghijkl"
TENANT = "11111111-1111-4111-8111-111111111111"


def _links() -> ActionLinks:
    return ActionLinks(
        LinkSigner([("k1", KEY)], 3600),
        "https://soc.example.com/",
        "/actions",
        ("take", "resolve_true_positive", "resolve_false_positive"),
    )


def _envelope(**changes: Any) -> Envelope:
    base: dict[str, Any] = {
        "id": "da6375512276",
        "tenant_id": TENANT,
        "source_api": "alerts_v2",
        "title": "Suspicious sign-in",
        "severity": "high",
        "status": "new",
        "tenant": "contoso",
        "web_url": "https://security.microsoft.com/alerts/da6375512276",
    }
    return Envelope(**{**base, **changes})


def _check(url: str, envelope: Envelope, action: str) -> None:
    prefix = "https://soc.example.com/actions/"
    assert url.startswith(prefix)
    claim = LinkSigner([("k1", KEY)], 3600).verify(url.removeprefix(prefix))
    assert (claim.alert_id, claim.tenant_id, claim.source_api, claim.action) == (
        envelope.id,
        envelope.tenant_id,
        envelope.source_api,
        action,
    )


def _sink(kind: str, **extra: Any) -> Any:
    return build_sink(
        http_config(kind, "http://127.0.0.1:9", **extra), pool=ClientPool(), metrics=SinkMetrics()
    )


def test_teams_adaptive_card_carries_valid_open_url_actions() -> None:
    env = _envelope()
    delivery = Delivery(actions=_links().for_alert(env))
    card = _sink("teams").payload(env, delivery)["attachments"][0]["content"]
    errors = sorted(card_validator().iter_errors(card), key=str)
    assert not errors, [e.message for e in errors]
    titles = [a["title"] for a in card["actions"]]
    assert titles == [
        "Take it",
        "Resolve: true positive",
        "Resolve: false positive",
        "Open in Microsoft Defender",
    ]
    assert all(a["type"] == "Action.OpenUrl" for a in card["actions"])
    for action, name in zip(
        card["actions"], ("take", "resolve_true_positive", "resolve_false_positive"), strict=False
    ):
        _check(action["url"], env, name)
    # no portal link: the triage actions alone, still a valid card
    bare = _envelope(web_url="")
    card = _sink("teams").payload(bare, Delivery(actions=_links().for_alert(bare)))["attachments"][
        0
    ]["content"]
    assert not list(card_validator().iter_errors(card))
    assert len(card["actions"]) == 3


def test_messagecard_slack_and_email_carry_the_links() -> None:
    env = _envelope(status="inProgress", assigned_to="adele@contoso.com")
    links = _links().for_alert(env)
    assert [label for label, _ in links] == ["Resolve: true positive", "Resolve: false positive"]
    delivery = Delivery(actions=links)
    card = _sink("teams", format="messagecard").payload(env, delivery)
    names = [a["name"] for a in card["potentialAction"]]
    assert names == [
        "Resolve: true positive",
        "Resolve: false positive",
        "Open in Microsoft Defender",
    ]
    _check(card["potentialAction"][0]["targets"][0]["uri"], env, "resolve_true_positive")

    slack = _sink("slack").payload(env, delivery)
    [buttons] = [b for b in slack["blocks"] if b["type"] == "actions"]
    assert [e["text"]["text"] for e in buttons["elements"]] == [
        "Resolve: true positive",
        "Resolve: false positive",
        "Open in Microsoft Defender",
    ]
    ids = [e.get("action_id") for e in buttons["elements"][:2]]
    assert ids == ["triage_1", "triage_2"]
    _check(buttons["elements"][1]["url"], env, "resolve_false_positive")

    email = build_sink(
        config(
            {
                "type": "email",
                "name": "mail",
                "host": "127.0.0.1",
                "sender": "soc@contoso.com",
                "to": ["oncall@contoso.com"],
                "tls": "none",
            }
        ),
        pool=ClientPool(),
        metrics=SinkMetrics(),
    )
    message = email.message(env, delivery)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    hrefs = re.findall(r'href="(https://soc\.example\.com/actions/[^"]+)"', html)
    assert len(hrefs) == 2
    _check(hrefs[0], env, "resolve_true_positive")
    assert "nothing changes until you confirm" in text
    assert f"Resolve: false positive: {links[1][1]}" in text


def test_no_links_for_resolved_alerts_incidents_or_when_disabled() -> None:
    links = _links()
    assert links.for_alert(_envelope(status="resolved")) == ()
    assert links.for_alert(_envelope(source_api="incidents", kind="incident")) == ()
    only_take = ActionLinks(LinkSigner([("k1", KEY)], 60), "https://x", "/a", ("take",))
    assert [label for label, _ in only_take.for_alert(_envelope())] == ["Take it"]
    env = _envelope()
    card = _sink("teams").payload(env, Delivery())["attachments"][0]["content"]
    assert [a["title"] for a in card["actions"]] == ["Open in Microsoft Defender"]


class TeamsChannel:
    """A Teams Workflows endpoint on loopback: records every card."""

    def __init__(self) -> None:
        self.cards: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.post, methods=["POST"])])

    async def post(self, request: Request) -> Response:
        self.cards.append(json.loads(await request.body())["attachments"][0]["content"])
        return Response(status_code=202)


def _texts(card: dict[str, Any]) -> str:
    return json.dumps(card["body"])


async def test_take_from_a_card_updates_graph_and_the_channel_hears_of_it(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    channel = TeamsChannel()
    routes = tmp_path / "routes.yaml"
    routes.write_text("route:\n  receiver: soc\n")
    port = free_port()
    tenant = tenant_entry(sim.tenant, "contoso")
    tenant["poll"] = {"alerts_v2": True, "incidents": False}
    redis = aioredis.Redis.from_url(redis_url)
    async with served(channel.app) as channel_url:
        settings = sim_settings(
            make_settings,
            sim,
            redis_url,
            public_url=f"http://127.0.0.1:{port}",
            tenants=[tenant],
            routes_file=str(routes),
            sinks=[{"type": "teams", "name": "soc", "url": f"{channel_url}/hook"}],
            actions={"enabled": True, "signing_keys": [{"id": "k1", "key": KEY.decode()}]},
        )
        graph = client_for(settings, redis)
        worker = build_worker(settings, redis, graph=graph)
        poller = Poller(redis, Keys(settings.redis.key_prefix), settings, graph)
        try:
            alert_id = await asyncio.to_thread(sim.control.create_alert, tid, "v2")
            assert await poller.poll_all() == 1
            await worker.run(burst=True)
            [card] = channel.cards
            take = next(a["url"] for a in card["actions"] if a["title"] == "Take it")
            assert take.startswith(f"http://127.0.0.1:{port}/actions/")

            app = mount(create_app(settings), settings)
            async with served(app, port), httpx.AsyncClient(trust_env=False) as browser:
                assert (await browser.get(take)).status_code == 200
                done = await browser.post(take, data={"name": "Adele Vance"})
                assert done.status_code == 200, done.text

            await worker.run(burst=True)  # the post-back: the change reaches the channel
            assert len(channel.cards) == 2
            update = channel.cards[1]
            assert "Updated: " in _texts(update) and "Adele Vance" in _texts(update)
            assert [a["title"] for a in update["actions"]][:2] == [
                "Resolve: true positive",
                "Resolve: false positive",
            ]
            # the poller sees the same version later: no second update message
            assert await poller.poll_all() == 1
            await worker.run(burst=True)
            assert len(channel.cards) == 2
            timeline = await records.timeline(redis, Keys(settings.redis.key_prefix), tid, alert_id)
            events = [e["event"] for e in timeline]
            assert events.index("action") < len(events) - 1
            assert events[-2:] == ["routed", "delivered"]
        finally:
            await worker.aclose()
            await redis.aclose()
