"""One ticket per alert: Jira and ServiceNow against stateful loopback servers, real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from receiver.envelope import Envelope
from receiver.pipeline.tickets import RedisTicketStore
from receiver.sinks.base import Delivery, RetryableError
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from tests.sinks.conftest import Answer, Server, make_envelope, update_of
from tests.sinks.helpers import JIRA_TOKEN, SNOW_PASSWORD, http_config
from tests.sinks.vendors import FakeJira, FakeServiceNow


def _sink(
    kind: str,
    server: Server,
    pool: ClientPool,
    store: RedisTicketStore,
    hook: Any = None,
    **extra: Any,
) -> Any:
    return build_sink(
        http_config(kind, server.url, **extra),
        pool=pool,
        metrics=SinkMetrics(),
        tickets=store,
        writeback=hook,
    )


def _fake(kind: str, server: Server, **kw: Any) -> FakeJira | FakeServiceNow:
    if kind == "jira":
        return FakeJira(server, "bot@contoso.com", JIRA_TOKEN, **kw)
    return FakeServiceNow(server, "svc-graph", SNOW_PASSWORD, **kw)


def _count(fake: FakeJira | FakeServiceNow) -> int:
    return len(fake.issues) if isinstance(fake, FakeJira) else len(fake.records)


async def test_jira_lifecycle(server: Server, pool: ClientPool, store: RedisTicketStore) -> None:
    jira = FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    sink = _sink("jira", server, pool, store)
    env = make_envelope()
    result = await sink.send(env, Delivery())
    assert result.ticket_id == "SEC-1" and result.detail == "created SEC-1"
    fields = jira.issues["SEC-1"]["fields"]
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == f"[High] {env.title} (contoso)"
    assert fields["priority"] == {"name": "High"}
    assert fields["labels"] == ["graph-alert", f"graph-alert-{env.id}"]
    doc = fields["description"]
    assert doc["type"] == "doc" and doc["version"] == 1
    assert all(node["type"] == "paragraph" for node in doc["content"])
    link = doc["content"][-1]["content"][0]
    assert link["marks"] == [{"type": "link", "attrs": {"href": env.web_url}}]
    # a retry of the first version: no second issue, no comment
    assert (await sink.send(env, Delivery(attempt=2))).detail == "SEC-1 exists"
    update = update_of(env, status="inProgress")
    assert (await sink.send(update, Delivery())).detail == "commented on SEC-1"
    (comment,) = jira.comments["SEC-1"]
    assert "Status: inProgress" in str(comment)
    resolved = update_of(env, status="resolved")
    assert (await sink.send(resolved, Delivery())).detail == "commented on SEC-1, resolved"
    assert jira.transitions == [("SEC-1", "31")]
    # resolving again does not transition twice
    await sink.send(resolved, Delivery(attempt=2))
    assert jira.transitions == [("SEC-1", "31")] and len(jira.issues) == 1
    assert await store.get("jira-sink", env.tenant_id, env.id) == "SEC-1"


async def test_servicenow_lifecycle(
    server: Server, pool: ClientPool, store: RedisTicketStore
) -> None:
    snow = FakeServiceNow(server, "svc-graph", SNOW_PASSWORD)
    sink = _sink("servicenow", server, pool, store)
    env = make_envelope()
    result = await sink.send(env, Delivery())
    assert result.ticket_id == "INC0010001"
    (record,) = snow.records.values()
    assert record["correlation_id"] == env.id
    assert record["short_description"] == f"[High] {env.title} (contoso)"
    assert record["urgency"] == "1" and record["impact"] == "1"
    assert record["assignment_group"] == "SOC" and record["caller_id"] == "graph-receiver"
    assert env.web_url in record["description"]
    await sink.send(update_of(env, severity="medium"), Delivery())
    ((sys_id, patch),) = snow.patches
    assert "Severity: medium" in patch["work_notes"]
    await sink.send(update_of(env, status="resolved"), Delivery())
    assert snow.records[sys_id]["state"] == "6"
    assert snow.records[sys_id]["close_code"] == "Solution provided"
    assert snow.records[sys_id]["close_notes"]
    assert len(snow.records) == 1


@pytest.mark.parametrize("kind", ["jira", "servicenow"])
async def test_a_timed_out_create_is_not_repeated(
    kind: str, server: Server, pool: ClientPool, store: RedisTicketStore
) -> None:
    """The server makes the ticket but the answer never arrives: the retry finds it."""
    fake = _fake(kind, server, create_delay_s=0.6)
    sink = _sink(kind, server, pool, store, timeout_s=0.3)
    env = make_envelope()
    with pytest.raises(RetryableError, match="timed out"):
        await sink.send(env, Delivery(attempt=1))
    await asyncio.sleep(0.5)  # the server finishes creating
    assert _count(fake) == 1
    assert await store.get(f"{kind}-sink", env.tenant_id, env.id) is None
    fake.create_delay_s = 0
    result = await sink.send(env, Delivery(attempt=2))
    assert _count(fake) == 1
    assert result.ticket_id in ("SEC-1", "INC0010001")
    assert await store.get(f"{kind}-sink", env.tenant_id, env.id) is not None


@pytest.mark.parametrize("kind", ["jira", "servicenow"])
async def test_fifty_concurrent_updates_make_one_ticket(
    kind: str, server: Server, pool: ClientPool, store: RedisTicketStore, redis_url: str
) -> None:
    from redis.asyncio import Redis

    from receiver.store.keys import Keys

    fake = _fake(kind, server, create_delay_s=0.05)
    # Several "workers": each its own Redis connection and sink object, one shared lock.
    clients = [Redis.from_url(redis_url) for _ in range(5)]
    try:
        sinks = [_sink(kind, server, pool, RedisTicketStore(c, Keys("{test}"))) for c in clients]
        env = make_envelope()
        updates = [update_of(env, status="inProgress") for _ in range(50)]
        results = await asyncio.gather(
            *(sinks[i % 5].send(u, Delivery()) for i, u in enumerate(updates))
        )
    finally:
        for c in clients:
            await c.aclose()
    assert _count(fake) == 1
    created = [r for r in results if r.detail.startswith("created")]
    assert len(created) == 1
    assert len({r.ticket_id for r in results}) == 1
    if isinstance(fake, FakeJira):
        assert len(fake.comments["SEC-1"]) == 49
    else:
        assert len(fake.patches) == 49


async def test_a_busy_lock_is_retryable(server: Server, pool: ClientPool, redis_url: str) -> None:
    from redis.asyncio import Redis

    from receiver.store.keys import Keys

    FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    client = Redis.from_url(redis_url)
    try:
        store = RedisTicketStore(client, Keys("{test}"), lock_wait_s=0.2)
        env = make_envelope()
        sink = _sink("jira", server, pool, store)
        async with store.lock("jira-sink", env.tenant_id, env.id):
            with pytest.raises(RetryableError, match="busy"):
                await sink.send(env, Delivery())
        assert server.requests == []
        await sink.send(env, Delivery())
        assert server.requests
    finally:
        await client.aclose()


async def test_lock_is_released_only_by_its_owner(redis_url: str) -> None:
    from redis.asyncio import Redis

    from receiver.store.keys import Keys

    client = Redis.from_url(redis_url)
    try:
        store = RedisTicketStore(client, Keys("{test}"), lock_ttl_s=0.2, lock_wait_s=1.0)
        async with store.lock("s", "t", "a"):
            await asyncio.sleep(0.3)  # our TTL lapses ...
            other = RedisTicketStore(client, Keys("{test}"), lock_ttl_s=5, lock_wait_s=0.5)
            async with other.lock("s", "t", "a"):  # ... someone else takes it ...
                pass
            async with other.lock("s", "t", "a"):
                pass
            key = Keys("{test}").ticket("s", "t", "a") + ":lock"
            await client.set(key, "someone-else", px=5000)
        # ... and our release did not delete theirs
        assert await client.get(key) == b"someone-else"
    finally:
        await client.aclose()


class _WriteBack:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail

    async def ticket_created(
        self, envelope: Envelope, sink: str, ticket_id: str, ticket_url: str
    ) -> None:
        self.calls.append((sink, ticket_id, ticket_url))
        if self.fail:
            raise RuntimeError("graph said no")


async def test_write_back_hook(server: Server, pool: ClientPool, store: RedisTicketStore) -> None:
    FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    hook = _WriteBack(fail=True)
    sink = _sink("jira", server, pool, store, hook, writeback=True)
    env = make_envelope()
    result = await sink.send(env, Delivery())  # a failing hook does not fail the delivery
    assert hook.calls == [("jira-sink", "SEC-1", f"{server.url}/browse/SEC-1")]
    assert result.ticket_id == "SEC-1"
    await sink.send(update_of(env, status="inProgress"), Delivery())
    assert len(hook.calls) == 1  # only on create
    off = _sink("jira", server, pool, store, hook)
    await off.send(make_envelope("other"), Delivery())
    assert len(hook.calls) == 1  # config writeback: false


async def test_ticket_errors_are_classified(
    server: Server, pool: ClientPool, store: RedisTicketStore
) -> None:
    jira = FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    sink = _sink("jira", server, pool, store)
    env = make_envelope()
    server.fail(
        Answer(200, '{"issues": []}', {"content-type": "application/json"}),
        Answer(429, "", {"retry-after": "5"}),
    )
    with pytest.raises(RetryableError) as info:
        await sink.send(env, Delivery())
    assert info.value.retry_after == 5.0 and jira.issues == {}
    await sink.send(env, Delivery(attempt=2))
    assert list(jira.issues) == ["SEC-1"]
