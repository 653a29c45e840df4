"""End to end against the simulator (alerts_v2, polled), a Slack Web API stand-in, a real
`receiver worker` process and the interactivity endpoint: an alert created, updated twice and
resolved from a Slack button is one parent message, updated in place, with thread replies; the
alert is resolved in the simulator and audited; a worker killed with SIGKILL mid-way and
restarted posts no second parent. Prints the time from the click to the message updated."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from receiver.actions.audit import recent
from receiver.actions.rules import button_value
from receiver.actions.slack import mount
from receiver.envelope import from_v2
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.simulator.slack import SlackStandIn
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.actions.test_slack import click_body, signed_headers
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import served
from tests.graph.helpers import sim_settings, tenant_entry

REPO = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-e2e-0000-SLACKBOTTOKENsecret"
SECRET = "e2e-slack-signing-secret-0123456789"
CHANNEL = "C0SECALRTS"


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_one_conversation_per_alert_triaged_from_slack(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    sim = make_simulator()
    tenant_id = sim.tenant.tenant_id
    slack = SlackStandIn(token=BOT_TOKEN, jsonl=tmp_path / "slack.jsonl")
    (tmp_path / "routes.yaml").write_text("route:\n  receiver: slack\n")
    async with served(slack.app) as slack_url:
        tenant = tenant_entry(sim.tenant, "contoso") | {
            "poll": {"alerts_v2": True, "incidents": False}
        }
        settings = sim_settings(
            make_settings,
            sim,
            redis_url,
            tenants=[tenant],
            sinks=[
                {
                    "type": "slack",
                    "name": "slack",
                    "bot_token": BOT_TOKEN,
                    "channel": CHANNEL,
                    "api_url": slack_url + "/api/",
                }
            ],
            routes_file=str(tmp_path / "routes.yaml"),
            worker={"visibility_timeout_s": 1.0},
            actions={
                "slack": {
                    "enabled": True,
                    "signing_secret": SECRET,
                    "users": {"U0ADELE01": "adele@contoso.com"},
                    "response_url_prefix": slack_url + "/response/",
                }
            },
        )
        data = settings.model_dump(mode="json", exclude_none=True)
        data["tenants"][0]["client_secret"] = sim.tenant.app.secret
        data["sinks"][0]["bot_token"] = BOT_TOKEN
        data["actions"]["slack"]["signing_secret"] = SECRET
        config = tmp_path / "receiver.yaml"
        config.write_text(yaml.safe_dump(data))
        redis = aioredis.Redis.from_url(redis_url)
        keys = Keys(settings.redis.key_prefix)
        graph = client_for(settings, redis)
        poller = Poller(redis, keys, settings, graph)

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "receiver.cli", "worker", "--config", str(config)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def updates() -> int:
            return slack.count("chat.update")

        worker = start()
        web = mount(create_app(settings), settings, redis=redis)
        try:
            async with (
                served(web) as web_url,
                httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=10) as client,
            ):
                alert_id = await asyncio.to_thread(
                    sim.control.create_alert,
                    tenant_id,
                    kind="v2",
                    v2Overrides={"severity": "low", "status": "new"},
                )
                assert await poller.poll_all() == 1
                await _until(lambda: len(slack.parents()) == 1, "the parent message")
                [parent] = slack.parents()
                # The worker has recorded the delivery (the message's ts stored, its lock let
                # go): killed while still holding the lock, it would leave the restarted one
                # waiting out the lock's TTL (120 s) before update 1, and the test failed.
                for _ in range(300):
                    timeline = await redis.lrange(keys.deliveries(tenant_id, alert_id), 0, -1)
                    if any(b'"delivered"' in event for event in timeline):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the parent's delivery was never recorded")

                # Update 1, then kill the worker before it could deliver it.
                await asyncio.to_thread(
                    sim.control.update_alert, tenant_id, alert_id, {"severity": "high"}
                )
                assert await poller.poll_all() == 1
                os.kill(worker.pid, signal.SIGKILL)  # mid-way: no drain, no ack
                worker.wait()
                worker = start()
                await _until(lambda: updates() >= 1, "update 1 in place")
                # Update 2 (assigned, not taken: Take it is still offered).
                await asyncio.to_thread(
                    sim.control.update_alert, tenant_id, alert_id, {"assignedTo": "bob@contoso.com"}
                )
                assert await poller.poll_all() == 1
                await _until(lambda: updates() >= 2, "update 2 in place")

                # Resolve from the button the message shows now.
                alert = from_v2(await asyncio.to_thread(_read, sim, alert_id))
                body = click_body(
                    "resolve_true_positive",
                    value=button_value(alert),
                    response_url=slack_url + "/response/1",
                )
                before = updates()
                clicked = time.monotonic()
                answer = await client.post(
                    "/slack/interactivity",
                    content=body,
                    headers=signed_headers(body, secret=SECRET),
                )
                answered = time.monotonic() - clicked
                assert answer.status_code == 200
                await _until(
                    lambda: (
                        updates() > before and "Resolved" in str(slack.parents()[0]["blocks"][0])
                    ),
                    "the message resolved",
                )
                updated = time.monotonic() - clicked
                print(
                    f"\nslack click -> 200: {answered * 1000:.0f} ms; click -> message "
                    f"updated: {updated * 1000:.0f} ms"
                )

                # The old "Take it" on the same message: refused, told only to the clicker.
                old = click_body(
                    "take", value=button_value(alert), response_url=slack_url + "/response/2"
                )
                assert (
                    await client.post(
                        "/slack/interactivity",
                        content=old,
                        headers=signed_headers(old, secret=SECRET),
                    )
                ).status_code == 200
                await _until(lambda: len(slack.ephemeral) == 1, "the ephemeral refusal")
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 30)
            await graph.aclose()

        final = _read(sim, alert_id)
        records = list(reversed(await recent(redis, keys)))
        await redis.aclose()

    assert len(slack.parents()) == 1  # one conversation, through a SIGKILL and a restart
    assert (
        sum(
            1
            for c in slack.calls
            if c["method"] == "chat.postMessage" and c["ok"] and not c["body"].get("thread_ts")
        )
        == 1
    )
    [parent] = slack.parents()
    assert parent["ts"] == slack.parents()[0]["ts"] and parent["updates"] >= 3
    assert parent["blocks"][0]["text"]["text"].startswith("Resolved: ")
    assert not [
        b
        for b in parent["blocks"]
        if b["type"] == "actions" and any(e.get("action_id") == "take" for e in b["elements"])
    ]
    replies = [m["text"] for m in slack.replies(parent["ts"])]
    assert len(replies) >= 3
    assert any("*Severity*: low → high" in r for r in replies)
    assert any("*Assigned to*: (none) → bob@contoso.com" in r for r in replies)
    assert any(
        "*Status*: new → resolved" in r
        and "truePositive" in r
        and "via Slack by adele@contoso.com" in r
        for r in replies
    ), replies
    assert final["status"] == "resolved" and final["classification"] == "truePositive"
    assert [c["comment"] for c in final["comments"]] == [
        "Resolved as true positive via Slack by adele@contoso.com"
    ]
    done = [r for r in records if r.via == "slack"]
    assert [(r.action, r.outcome, r.by) for r in done] == [
        ("resolve_true_positive", "done", "adele@contoso.com"),
        ("take", "not_applicable", "adele@contoso.com"),
    ]
    assert "slack user U0ADELE01" in done[0].identity
    assert "already resolved" in slack.ephemeral[0]["text"]
    assert slack.ephemeral[0]["response_type"] == "ephemeral"
    lines = (tmp_path / "slack.jsonl").read_text().splitlines()
    assert len(lines) == len(slack.calls) and BOT_TOKEN not in "".join(lines)


def _read(sim: Any, alert_id: str) -> dict[str, Any]:
    with sim.graph() as graph:
        response = graph.get(f"/security/alerts_v2/{alert_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body
