"""The Slack app sink against a loopback Slack Web API stand-in and a real Redis: one parent
message per alert, updated in place, a thread reply per change, Slack's rate limiting, and no
second parent under concurrency or after a worker died between post and record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from receiver.actions.rules import buttons
from receiver.pipeline.tickets import RedisSlackMessageStore
from receiver.redaction import redact
from receiver.simulator.slack import SlackStandIn
from receiver.sinks.base import Delivery, PermanentError, RetryableError
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import SinkBuildError, build_sink
from receiver.sinks.slack_app import SlackAppSink
from receiver.store.keys import Keys
from tests.fixtures.web import served
from tests.sinks.conftest import make_envelope, update_of
from tests.sinks.helpers import config

BOT_TOKEN = "xoxb-1111-2222-SLACKBOTTOKENsecret"
CHANNEL = "C0SECALRTS"
KEYS = Keys("{test}")


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn(token=BOT_TOKEN)
    async with served(standin.app) as url:
        standin.url = url  # type: ignore[attr-defined]
        yield standin


@pytest.fixture
async def messages(redis_url: str) -> AsyncIterator[RedisSlackMessageStore]:
    client = Redis.from_url(redis_url)
    yield RedisSlackMessageStore(client, KEYS)
    await client.aclose()


def _sink(
    slack: SlackStandIn, pool: ClientPool, store: RedisSlackMessageStore | None, **extra: Any
) -> SlackAppSink:
    data = {
        "type": "slack",
        "name": "slack-app",
        "bot_token": BOT_TOKEN,
        "channel": CHANNEL,
        "api_url": slack.url + "/api/",
        "timeout_s": 2.0,  # type: ignore[attr-defined]
        **extra,
    }
    sink = build_sink(
        config(data), pool=pool, metrics=SinkMetrics(), messages=store, buttons=buttons
    )
    assert isinstance(sink, SlackAppSink)
    return sink


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        e.get("action_id", "")
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def test_one_parent_updated_in_place_with_thread_replies(
    slack: SlackStandIn, pool: ClientPool, messages: RedisSlackMessageStore
) -> None:
    sink = _sink(slack, pool, messages)
    first = make_envelope()
    result = await sink.send(first, Delivery())
    [parent] = slack.parents()
    assert result.ticket_id == parent["ts"] and parent["channel"] == CHANNEL
    assert parent["metadata"]["event_payload"] == {
        "alert_id": first.id,
        "tenant_id": first.tenant_id,
    }
    assert parent["blocks"][0]["text"]["text"] == first.title  # no "Updated:" prefix
    assert _buttons(parent) == [
        "take",
        "resolve_true_positive",
        "resolve_false_positive",
        "open_portal",
    ]
    value = json.loads(parent["blocks"][-1]["elements"][0]["value"])
    assert value == {"t": first.tenant_id, "a": first.id, "s": "alerts_v2", "v": first.version}
    assert "&lt;download&gt; &amp; run" in parent["text"]  # mrkdwn escaped

    taken = update_of(
        first,
        status="inProgress",
        assigned_to="adele@contoso.com",
        raw={
            "comments": [
                {
                    "comment": "Taken via Slack by adele@contoso.com",
                    "createdByDisplayName": "Receiver",
                }
            ]
        },
    )
    await sink.send(taken, Delivery())
    resolved = replace(
        update_of(taken, status="resolved", classification="truePositive"),
        updated_at="2026-03-01T12:00:00Z",
    )
    await sink.send(resolved, Delivery())
    await sink.send(resolved, Delivery(attempt=2))  # a retry of the same version

    assert len(slack.parents()) == 1 and slack.count("chat.update") == 3
    [parent] = slack.parents()
    assert parent["blocks"][0]["text"]["text"].startswith("Resolved: ")
    assert ":white_check_mark: *Resolved*" in parent["blocks"][1]["text"]["text"]
    assert "truePositive" in parent["blocks"][1]["text"]["text"]
    assert _buttons(parent) == ["open_portal"]  # nothing left to triage
    replies = [m["text"] for m in slack.replies(parent["ts"])]
    assert len(replies) == 2  # one per version; the retry did not reply again
    assert "*Status*: new → inProgress" in replies[0]
    assert "*Assigned to*: (none) → adele@contoso.com" in replies[0]
    assert "Taken via Slack by adele@contoso.com" in replies[0]
    assert "*Status*: inProgress → resolved" in replies[1]
    assert "*Classification*: (none) → truePositive" in replies[1]


async def test_ratelimited_is_retryable_with_slacks_wait(
    slack: SlackStandIn, pool: ClientPool, messages: RedisSlackMessageStore
) -> None:
    sink = _sink(slack, pool, messages)
    slack.ratelimit(1, retry_after=7)
    with pytest.raises(RetryableError) as exc:
        await sink.send(make_envelope(), Delivery())
    assert exc.value.retry_after == 7 and exc.value.status == 429
    assert slack.calls[-1]["error"] == "ratelimited" and slack.parents() == []
    await sink.send(make_envelope(), Delivery(attempt=2))
    assert len(slack.parents()) == 1


async def test_concurrent_first_deliveries_post_one_parent(
    slack: SlackStandIn, pool: ClientPool, messages: RedisSlackMessageStore
) -> None:
    two = [_sink(slack, pool, messages), _sink(slack, pool, messages)]  # two workers
    envelope = make_envelope()
    await asyncio.gather(*(s.send(envelope, Delivery()) for s in two))
    assert len(slack.parents()) == 1
    assert slack.count("chat.postMessage") == 1 and slack.count("chat.update") == 1


async def test_a_post_whose_record_was_lost_is_adopted_not_posted_again(
    slack: SlackStandIn, pool: ClientPool, messages: RedisSlackMessageStore
) -> None:
    sink = _sink(slack, pool, messages)
    envelope = make_envelope()
    await sink.send(envelope, Delivery())
    # The worker died after Slack answered and before the record: only the marker is left.
    key = KEYS.slack_message(CHANNEL, envelope.tenant_id, envelope.id)
    await messages.redis.set(key, json.dumps({"posting": True, "at": 1.0}))
    await sink.send(update_of(envelope, status="inProgress"), Delivery(attempt=2))
    assert len(slack.parents()) == 1 and slack.count("conversations.history") == 1
    assert slack.count("chat.update") == 1
    stored = json.loads(await messages.redis.get(key))
    assert stored["ts"] == slack.parents()[0]["ts"]


async def test_errors_are_classified_and_the_token_never_shows(
    slack: SlackStandIn, pool: ClientPool, messages: RedisSlackMessageStore
) -> None:
    slack.token = "xoxb-another-token-0000"
    sink = _sink(slack, pool, messages)
    with pytest.raises(PermanentError, match="invalid_auth") as exc:
        await sink.send(make_envelope(), Delivery())
    assert BOT_TOKEN not in str(exc.value)
    assert redact(f"Authorization: Bearer {BOT_TOKEN}") == "Authorization: Bearer [redacted]"
    slack.token = BOT_TOKEN
    wrong = _sink(slack, pool, messages, channel="C0NOSUCHCH")
    with pytest.raises(PermanentError, match="channel_not_found"):
        await wrong.send(make_envelope(), Delivery())
    with pytest.raises(SinkBuildError, match="message store"):
        _sink(slack, pool, None)


def test_config_modes() -> None:
    with pytest.raises(ValidationError, match="either url"):
        config(
            {
                "type": "slack",
                "name": "s",
                "url": "https://hooks.slack.com/services/x",
                "bot_token": BOT_TOKEN,
                "channel": CHANNEL,
            }
        )
    with pytest.raises(ValidationError, match="needs a channel"):
        config({"type": "slack", "name": "s", "bot_token": BOT_TOKEN})
    with pytest.raises(ValidationError, match="bot token"):
        config({"type": "slack", "name": "s", "bot_token": "xoxp-user-token", "channel": "c"})
    app = config(
        {"type": "slack", "name": "s", "bot_token": BOT_TOKEN, "channel": "#security-alerts"}
    )
    assert app.is_app and BOT_TOKEN not in repr(app)
