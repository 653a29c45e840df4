"""The Slack app's interactivity endpoint: Slack's documented signature example, and, served by
uvicorn in front of the web app with a real Redis, a genuine click queued at once while forged,
replayed and stale requests are refused and queue nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from redis.asyncio import Redis

from receiver.actions.rules import button_value
from receiver.actions.slack import MAX_BODY_BYTES, SignatureError, mount, sign, verify
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import TENANT_ID, MakeSettings
from tests.fixtures.web import served
from tests.sinks.conftest import make_envelope

VECTOR = json.loads(
    (Path(__file__).resolve().parents[1] / "formats" / "slack-signature-vector.json").read_text()
)
SECRET = "test-slack-signing-secret-0123456789"
KEYS = Keys("{test}")


def test_slacks_documented_example() -> None:
    secret = VECTOR["signing_secret"].encode()
    body = VECTOR["body"].encode()
    ts = VECTOR["timestamp"]
    assert sign(secret, ts, body) == VECTOR["expected_signature"]
    verify(secret, ts, VECTOR["expected_signature"], body, now=float(ts))
    tampered = body.replace(b"roadrunner", b"roadrunnex")
    with pytest.raises(SignatureError) as exc:
        verify(secret, ts, VECTOR["expected_signature"], tampered, now=float(ts))
    assert exc.value.reason == "forged"
    with pytest.raises(SignatureError) as exc:
        verify(secret, ts, VECTOR["expected_signature"], body, now=float(ts) + 301)
    assert exc.value.reason == "stale"
    verify(secret, ts, VECTOR["expected_signature"], body, now=float(ts) + 300)
    for bad_ts in ("", "12a", "-5", "9" * 20):
        with pytest.raises(SignatureError):
            verify(secret, bad_ts, VECTOR["expected_signature"], body, now=float(ts))


def click_body(
    action: str = "take",
    *,
    value: str | None = None,
    user: str = "U0ADELE01",
    response_url: str = "https://hooks.slack.com/actions/T1/1/abc",
) -> bytes:
    """A block_actions payload the way Slack posts it (form field ``payload``)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "name": "adele", "team_id": "T0CONTOSO"},
        "team": {"id": "T0CONTOSO"},
        "channel": {"id": "C0SECALRTS"},
        "message": {"ts": "1800000001.000100"},
        "response_url": response_url,
        "trigger_id": "1.2.3",
        "actions": [
            {
                "action_id": action,
                "block_id": "triage",
                "type": "button",
                "value": value if value is not None else button_value(make_envelope()),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    return {
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sign(secret.encode(), ts, body),
        "content-type": "application/x-www-form-urlencoded",
    }


@dataclass
class Endpoint:
    client: httpx.AsyncClient
    redis: Redis

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post("/slack/interactivity", content=body, headers=headers)

    async def queued(self) -> list[dict[bytes, bytes]]:
        entries: Any = await self.redis.xrange(KEYS.slack_interactions)
        return [fields for _, fields in entries]


@pytest.fixture
async def endpoint(redis_url: str, make_settings: MakeSettings) -> AsyncIterator[Endpoint]:
    settings = make_settings(
        redis_url=redis_url, actions={"slack": {"enabled": True, "signing_secret": SECRET}}
    )
    redis = Redis.from_url(redis_url)
    app = mount(create_app(settings), settings, redis=redis)
    try:
        async with (
            served(app) as url,
            httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client,
        ):
            yield Endpoint(client, redis)
    finally:
        await redis.aclose()


async def test_a_genuine_click_is_queued_and_answered_at_once(endpoint: Endpoint) -> None:
    body = click_body("resolve_false_positive")
    start = time.monotonic()
    answer = await endpoint.post(body, signed_headers(body))
    took = time.monotonic() - start
    assert answer.status_code == 200 and answer.content == b""
    assert took < 1.0  # Slack's budget is 3 s; no Graph call on this path
    [fields] = await endpoint.queued()
    assert fields[b"action"] == b"resolve_false_positive"
    assert json.loads(fields[b"value"])["t"] == TENANT_ID
    assert fields[b"user_id"] == b"U0ADELE01" and fields[b"team_id"] == b"T0CONTOSO"
    assert fields[b"response_url"] == b"https://hooks.slack.com/actions/T1/1/abc"


async def test_a_forged_request_is_refused(endpoint: Endpoint) -> None:
    body = click_body()
    answer = await endpoint.post(body, signed_headers(body, secret="not-the-apps-secret"))
    assert answer.status_code == 401
    assert SECRET not in answer.text
    unsigned = await endpoint.post(body, {"content-type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    assert await endpoint.queued() == []


async def test_a_replayed_request_is_refused(endpoint: Endpoint) -> None:
    body = click_body()
    headers = signed_headers(body)
    assert (await endpoint.post(body, headers)).status_code == 200
    again = await endpoint.post(body, headers)  # captured and sent again inside the window
    assert again.status_code == 401
    assert len(await endpoint.queued()) == 1


async def test_a_stale_request_is_refused(endpoint: Endpoint) -> None:
    body = click_body()
    answer = await endpoint.post(body, signed_headers(body, at=time.time() - 6 * 60))
    assert answer.status_code == 401
    future = await endpoint.post(body, signed_headers(body, at=time.time() + 6 * 60))
    assert future.status_code == 401
    assert await endpoint.queued() == []


async def test_a_signed_request_that_is_not_our_button_is_refused(endpoint: Endpoint) -> None:
    for body in (
        click_body("delete_everything"),
        click_body(value="not json"),
        b"payload=%7B%22type%22%3A%22view_submission%22%7D",
    ):
        answer = await endpoint.post(body, signed_headers(body))
        assert answer.status_code == 400, body
    assert await endpoint.queued() == []


async def test_a_body_past_the_limit_is_refused_unread(endpoint: Endpoint) -> None:
    body = b"payload=" + b"x" * MAX_BODY_BYTES
    answer = await endpoint.post(body, signed_headers(body))
    assert answer.status_code == 413
    assert await endpoint.queued() == []
