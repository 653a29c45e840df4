"""The front door against a real Redis: handshake, validation, durable 202."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from receiver.config.settings import Settings
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from receiver.web.app import create_app, web_state
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import (
    JSON,
    asgi_client,
    body,
    notification,
    raw_post,
    register,
    served,
)

OTHER_TENANT = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def settings(make_settings: MakeSettings, redis_url: str) -> Settings:
    return make_settings(redis_url=redis_url)


def stream(redis_url: str, settings: Settings, name: str = "notifications") -> list[dict[str, Any]]:
    keys = Keys(settings.redis.key_prefix)
    with redis.Redis.from_url(redis_url) as client:
        return [
            NotificationEntry.from_fields(fields).to_dict()
            for _, fields in client.xrange(getattr(keys, name))
        ]


def metric(app: Any, name: str, labels: dict[str, str]) -> float:
    value = web_state(app).metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.parametrize("path", ["/webhooks/graph", "/webhooks/graph/lifecycle"])
async def test_handshake_echoes_decoded_token(settings: Settings, path: str) -> None:
    token = (
        "Validation: Testing client application reachability for subscription Request-Id: "
        "a6a2d9f6-1c4a-4a7f-9d1e-6d3b5c6a7e8f & <b>"
    )
    app = create_app(settings)
    async with asgi_client(app) as client:
        r = await client.post(
            path, params={"validationToken": token}, headers={"content-type": "text/plain"}
        )
    assert r.status_code == 200
    assert r.text == token
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("token", ["", "x" * 1025, "line\nbreak", "nul\x00", "bell\x07"])
async def test_absurd_handshake_tokens_refused(settings: Settings, token: str) -> None:
    async with asgi_client(create_app(settings)) as client:
        r = await client.post("/webhooks/graph", params={"validationToken": token})
    assert r.status_code == 400


async def test_valid_batch_stored_without_secrets(settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, settings)
    app = create_app(settings)
    async with asgi_client(app) as client:
        r = await client.post(
            "/webhooks/graph",
            content=body(notification(rec, "a1"), notification(rec, "a2", change_type="created")),
            headers=JSON,
        )
    assert r.status_code == 202
    entries = stream(redis_url, settings)
    assert [e["resource_id"] for e in entries] == ["a1", "a2"]
    first = entries[0]
    assert first["tenant_id"] == rec.tenant_id
    assert first["subscription_id"] == rec.subscription_id
    assert first["change_type"] == "updated"
    assert first["resource"] == "Security/Alerts/a1"
    assert first["source"] == "push"
    assert first["received_at_ms"] > 1_700_000_000_000
    assert rec.client_state not in json.dumps(entries)
    assert (
        metric(
            app,
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "accepted", "reason": ""},
        )
        == 2
    )


async def test_mixed_batch_keeps_the_valid_items(settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, settings)
    app = create_app(settings)
    items = [
        notification(rec, "good-1"),
        notification(rec, "forged", client_state="guess"),
        {"subscriptionId": rec.subscription_id},  # malformed
        notification(rec, "other-tenant", tenant_id=OTHER_TENANT),
        "not an object",
        notification(rec, "good-2"),
    ]
    async with asgi_client(app) as client:
        r = await client.post("/webhooks/graph", content=body(*items), headers=JSON)
    assert r.status_code == 202
    assert [e["resource_id"] for e in stream(redis_url, settings)] == ["good-1", "good-2"]
    rejected = {
        reason: metric(
            app,
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": reason},
        )
        for reason in ("client_state_mismatch", "bad_item", "tenant_not_allowed")
    }
    assert rejected == {"client_state_mismatch": 1, "bad_item": 2, "tenant_not_allowed": 1}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda rec: notification(rec, client_state="wrong-state"), "client_state_mismatch"),
        (
            lambda rec: notification(rec, client_state=rec.client_state[:-1]),
            "client_state_mismatch",
        ),
        (lambda rec: notification(rec, client_state=""), "client_state_mismatch"),
        (
            lambda rec: notification(rec, subscriptionId="00000000-0000-0000-0000-000000000000"),
            "unknown_subscription",
        ),
        (lambda rec: notification(rec, tenant_id=OTHER_TENANT), "tenant_not_allowed"),
    ],
)
async def test_forged_traffic_never_reaches_a_stream(
    settings: Settings, redis_url: str, mutate: Any, reason: str
) -> None:
    rec = await register(redis_url, settings)
    app = create_app(settings)
    async with asgi_client(app) as client:
        r = await client.post("/webhooks/graph", content=body(mutate(rec)), headers=JSON)
    assert r.status_code == 403
    assert stream(redis_url, settings) == []
    assert (
        metric(
            app,
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": reason},
        )
        == 1
    )


async def test_tenant_must_match_the_subscription(
    make_settings: MakeSettings, redis_url: str
) -> None:
    base = make_settings(redis_url=redis_url)
    second = base.tenants[0].model_dump() | {
        "name": "fabrikam",
        "tenant_id": OTHER_TENANT,
        "client_secret": "x",
    }
    first = base.tenants[0].model_dump() | {"client_secret": "x"}
    settings = make_settings(redis_url=redis_url, tenants=[first, second])
    rec = await register(redis_url, settings)  # registered for the first tenant
    async with asgi_client(create_app(settings)) as client:
        r = await client.post(
            "/webhooks/graph", content=body(notification(rec, tenant_id=OTHER_TENANT)), headers=JSON
        )
    assert r.status_code == 403
    assert r.json()["rejected"] == {"tenant_mismatch": 1}


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"value": [', JSON, 400),
        (b"\xff\xfe garbage", JSON, 400),
        (b'{"value": []}', JSON, 400),
        (b'{"value": {}}', JSON, 400),
        (b"[1, 2]", JSON, 400),
        (b'{"value": [1]}', {"content-type": "text/plain"}, 415),
        (b'{"value": [1]}', {}, 415),
        (b'{"value": [1]}', {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400),
    ],
)
async def test_bad_bodies(
    settings: Settings, redis_url: str, content: bytes, headers: dict[str, str], status: int
) -> None:
    async with asgi_client(create_app(settings)) as client:
        r = await client.post("/webhooks/graph", content=content, headers=headers)
    assert r.status_code == status
    assert stream(redis_url, settings) == []


async def test_lifecycle_events_go_to_the_lifecycle_stream(
    settings: Settings, redis_url: str
) -> None:
    rec = await register(redis_url, settings)
    events = [
        {
            "subscriptionId": rec.subscription_id,
            "lifecycleEvent": event,
            "clientState": rec.client_state,
            "tenantId": rec.tenant_id,
            "subscriptionExpirationDateTime": "2026-12-29T10:00:00Z",
        }
        for event in ("reauthorizationRequired", "subscriptionRemoved", "missed")
    ]
    async with asgi_client(create_app(settings)) as client:
        r1 = await client.post("/webhooks/graph/lifecycle", content=body(*events), headers=JSON)
        # Without a lifecycle URL Graph sends them to the notification URL: same outcome.
        r2 = await client.post("/webhooks/graph", content=body(events[2]), headers=JSON)
        bad = dict(events[0], lifecycleEvent="somethingElse")
        r3 = await client.post("/webhooks/graph/lifecycle", content=body(bad), headers=JSON)
    assert (r1.status_code, r2.status_code, r3.status_code) == (202, 202, 400)
    got = [e["lifecycle_event"] for e in stream(redis_url, settings, "lifecycle")]
    assert got == ["reauthorizationRequired", "subscriptionRemoved", "missed", "missed"]
    assert stream(redis_url, settings) == []


async def test_new_subscription_is_found_without_restart(
    settings: Settings, redis_url: str
) -> None:
    app = create_app(settings)
    async with asgi_client(app) as client:
        await client.get("/healthz")
        rec = await register(redis_url, settings)  # after the app loaded the registry
        # at once: Graph may notify the moment the subscription exists
        r = await client.post("/webhooks/graph", content=body(notification(rec)), headers=JSON)
    assert r.status_code == 202


async def test_forged_ids_cost_few_redis_reads(settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, settings)
    forged = notification(rec, subscriptionId="0badf00d-0000-4000-8000-000000000000")
    with redis.Redis.from_url(redis_url) as sync:
        async with asgi_client(create_app(settings)) as client:
            sync.config_resetstat()
            for _ in range(100):
                r = await client.post("/webhooks/graph", content=body(forged), headers=JSON)
                assert r.status_code == 403
            stats = sync.info("commandstats")
    reads = stats.get("cmdstat_hgetall", {}).get("calls", 0)
    assert 1 <= reads <= 5  # one read, then remembered as unknown for a moment
    assert "cmdstat_xadd" not in stats and "cmdstat_evalsha" not in stats


async def test_oversized_body_refused_by_content_length(
    make_settings: MakeSettings, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url, web={"max_body_bytes": 4096})
    rec = await register(redis_url, settings)
    big = body(*[notification(rec, f"a{i}") for i in range(40)])
    assert len(big) > 4096
    async with asgi_client(create_app(settings)) as client:
        r = await client.post("/webhooks/graph", content=big, headers=JSON)
    assert r.status_code == 413
    assert stream(redis_url, settings) == []


async def test_oversized_stream_refused_before_it_is_all_sent(
    make_settings: MakeSettings, redis_url: str
) -> None:
    """A chunked body without Content-Length: refused once past the limit, not read to the
    end: the 413 arrives while the sender is still producing."""
    settings = make_settings(redis_url=redis_url, web={"max_body_bytes": 64 * 1024})
    total = 256 * 1024 * 1024
    async with served(create_app(settings)) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        status_line = asyncio.ensure_future(reader.readline())
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        sent = 0
        try:
            while sent < total and not status_line.done():
                writer.write(chunk)
                await writer.drain()
                sent += 0x10000
        except (ConnectionError, OSError):
            pass
        line = await asyncio.wait_for(status_line, 10)
        writer.close()
    assert line.startswith(b"HTTP/1.1 413")
    assert sent < total // 16


async def test_redis_down_answers_503_then_recovers(
    make_settings: MakeSettings, make_redis_server: type[RedisServer]
) -> None:
    server = make_redis_server(appendonly=True)
    server.start()
    settings = make_settings(
        redis_url=server.url,
        web={"enqueue_budget_ms": 500},
        redis={"socket_timeout_s": 0.5, "key_prefix": "{test}"},
    )
    rec = await register(server.url, settings)
    app = create_app(settings)
    async with asgi_client(app) as client:
        r = await client.post(
            "/webhooks/graph", content=body(notification(rec, "before")), headers=JSON
        )
        assert r.status_code == 202
        server.stop()
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = await client.post(
            "/webhooks/graph", content=body(notification(rec, "during")), headers=JSON
        )
        assert r.status_code == 503
        assert loop.time() - start < 2.0  # at once, never a hang
        assert r.headers["retry-after"] == "1"
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        server.start()
        # Graph retries the refused notification: now it is stored, once.
        for _ in range(50):
            r = await client.post(
                "/webhooks/graph", content=body(notification(rec, "during")), headers=JSON
            )
            if r.status_code == 202:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 202
        assert (await client.get("/readyz")).status_code == 200
    assert [e["resource_id"] for e in stream(server.url, settings)] == ["before", "during"]


async def test_slow_redis_answers_503_within_budget(
    make_settings: MakeSettings, make_redis_server: type[RedisServer]
) -> None:
    import os
    import signal

    server = make_redis_server()
    server.start()
    settings = make_settings(redis_url=server.url, web={"enqueue_budget_ms": 300})
    rec = await register(server.url, settings)
    async with asgi_client(create_app(settings)) as client:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # Redis hangs: no answer, no error
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            r = await client.post("/webhooks/graph", content=body(notification(rec)), headers=JSON)
            elapsed = loop.time() - start
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    assert r.status_code == 503
    assert elapsed < 1.5


async def test_thousand_concurrent_posts_stored_exactly_once(
    settings: Settings, redis_url: str
) -> None:
    rec = await register(redis_url, settings)
    app = create_app(settings)
    async with served(app) as url:
        statuses = await asyncio.gather(
            *[
                raw_post(url, "/webhooks/graph", body(notification(rec, f"alert-{i}")))
                for i in range(1000)
            ]
        )
    assert statuses == [202] * 1000
    ids = [e["resource_id"] for e in stream(redis_url, settings)]
    assert len(ids) == 1000
    assert set(ids) == {f"alert-{i}" for i in range(1000)}
    # concurrent enqueues were coalesced into fewer Redis round trips than requests
    assert web_state(app).enqueuer.round_trips < 1000


async def test_health_and_metrics(settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, settings)
    app = create_app(settings)
    async with asgi_client(app) as client:
        await client.post("/webhooks/graph", content=body(notification(rec)), headers=JSON)
        await client.post("/webhooks/graph", content=b"{", headers=JSON)
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get("/readyz")).status_code == 200
        text = (await client.get("/metrics")).text
    assert 'receiver_web_requests_total{path="/webhooks/graph",status="202"} 1.0' in text
    assert 'receiver_web_requests_total{path="/webhooks/graph",status="400"} 1.0' in text
    assert (
        'receiver_web_items_total{kind="notification",outcome="rejected",'
        'reason="malformed_json"} 1.0' in text
    )
    assert 'receiver_web_slow_answer_share{threshold="2.9"} 0.0' in text
    assert 'receiver_web_slow_answer_share{threshold="10"}' not in text  # Graph's old rule
    assert 'receiver_web_ack_seconds_count{path="/webhooks/graph"} 2.0' in text
    assert rec.client_state not in text
