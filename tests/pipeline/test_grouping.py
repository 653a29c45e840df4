"""Groups in a real Redis: the route stage adds, the flusher sends when due, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.consumer import Entry
from receiver.pipeline.grouping import Groups
from receiver.pipeline.route import RouteStage
from receiver.routing.config import RoutesConfig
from receiver.store.keys import Keys

ROUTES = TypeAdapter(RoutesConfig).validate_python(
    {
        "route": {
            "receiver": "teams",
            "routes": [
                {"matchers": ['severity="informational"'], "receiver": "archive"},  # not grouped
                {
                    "receiver": "teams",
                    "group_by": ["incident_id"],
                    "group_wait": "30s",
                    "group_interval": "5m",
                    "repeat_interval": "1h",
                    "continue": True,
                },
                {"receiver": "archive"},
            ],
        }
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def alert(n: int, incident: str = "42", **fields: Any) -> Envelope:
    base: dict[str, Any] = {
        "id": f"a{n}",
        "tenant_id": "t1",
        "source_api": "alerts_v2",
        "title": f"Alert {n}",
        "severity": "high",
        "status": "new",
        "incident_id": incident,
        "updated_at": f"2026-11-30T10:00:{n:02d}Z",
        "raw": {"evidence": ["x" * 100]},
    }
    base.update(fields)
    return Envelope(**base)


def entry(envelope: Envelope, first: bool = True) -> Entry:
    return Entry("1-0", {b"e": envelope.to_json().encode(), b"first": b"1" if first else b"0"}, 1)


@pytest.fixture
async def rig(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, Keys, Clock, RouteStage]]:
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys()
    clock = Clock()
    groups = Groups(redis, keys, sinks={"teams", "archive"}, clock=clock)
    stage = RouteStage(redis, keys, ROUTES, {"teams", "archive"}, groups=groups)
    yield redis, keys, clock, stage
    await redis.aclose()


async def messages(redis: aioredis.Redis, keys: Keys, sink: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(keys.sink(sink))]


async def test_a_burst_becomes_one_message_after_group_wait(rig: Any) -> None:
    redis, keys, clock, stage = rig
    for n in (1, 2, 3):
        await stage.handle(entry(alert(n)))
    await stage.handle(entry(alert(4, incident="43")))
    assert len(await messages(redis, keys, "archive")) == 4  # the ungrouped sink: at once
    assert await messages(redis, keys, "teams") == []
    assert await stage.groups.flush_due() == 0
    clock.now += 29
    assert await stage.groups.flush_due() == 0  # not yet
    clock.now += 1
    assert await stage.groups.flush_due() == 2  # incident 42 and incident 43
    sent = await messages(redis, keys, "teams")
    assert len(sent) == 2
    by_count = {len(json.loads(m[b"e"])["raw"]["group"]["alerts"]): m for m in sent}
    big = Envelope.from_json(by_count[3][b"e"])
    assert big.kind == "group" and big.title.startswith("3 alerts")
    assert by_count[3][b"first"] == b"1"
    # members are stored without Graph's body
    assert all("raw" not in m for m in big.raw["group"]["alerts"])
    # nothing is due any more; the timeline of a member says where it went
    assert await stage.groups.flush_due() == 0
    events = [e["event"] for e in await records.timeline(redis, keys, "t1", "a1")]
    assert events == ["grouped", "routed", "group_sent"]
    group_events = await records.timeline(redis, keys, "t1", big.id)
    assert group_events[0]["event"] == "routed" and group_events[0]["members"] == 3


async def test_later_changes_wait_for_group_interval_then_go_as_an_update(rig: Any) -> None:
    redis, keys, clock, stage = rig
    await stage.handle(entry(alert(1)))
    clock.now += 30
    assert await stage.groups.flush_due() == 1
    clock.now += 10
    await stage.handle(
        entry(alert(1, status="inProgress", updated_at="2026-11-30T11:00:00Z"), first=False)
    )
    await stage.handle(entry(alert(2)))
    clock.now += 200
    assert await stage.groups.flush_due() == 0  # 5 minutes after the last message
    clock.now += 90
    assert await stage.groups.flush_due() == 1
    first, second = await messages(redis, keys, "teams")
    update = Envelope.from_json(second[b"e"])
    assert second[b"first"] == b"0" and second[b"changes"] == b"alerts"
    assert update.id == Envelope.from_json(first[b"e"]).id  # same group, same thread/ticket
    assert sorted(update.raw["group"]["changed"]) == ["a1", "a2"]
    statuses = {m["id"]: m["status"] for m in update.raw["group"]["alerts"]}
    assert statuses == {"a1": "inProgress", "a2": "new"}  # the latest version replaced a1


async def test_reminders_while_open_and_close_when_all_resolved(rig: Any) -> None:
    redis, keys, clock, stage = rig
    await stage.handle(entry(alert(1)))
    clock.now += 30
    assert await stage.groups.flush_due() == 1
    clock.now += 3600
    assert await stage.groups.flush_due() == 1  # reminder: a1 still new
    reminder = (await messages(redis, keys, "teams"))[-1]
    assert reminder[b"changes"] == b"reminder"
    await stage.handle(
        entry(alert(1, status="resolved", updated_at="2026-11-30T12:00:00Z"), first=False)
    )
    clock.now += 300
    assert await stage.groups.flush_due() == 1  # the resolution, and the group closes
    gid = json.loads(reminder[b"e"])["raw"]["group"]["id"]
    assert await redis.exists(keys.group_meta(gid)) == 0
    clock.now += 7200
    assert await stage.groups.flush_due() == 0  # no reminder for a closed group
    await stage.handle(entry(alert(5)))  # same incident later: a new group, a new thread
    clock.now += 30
    assert await stage.groups.flush_due() == 1
    all_sent = [Envelope.from_json(m[b"e"]) for m in await messages(redis, keys, "teams")]
    assert len(all_sent) == 4
    assert all_sent[-1].id != all_sent[0].id and all_sent[-1].first_seen


async def test_racing_flushers_send_once(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        keys = Keys()
        clock = Clock()
        stage = RouteStage(
            redis, keys, ROUTES, {"teams", "archive"}, groups=Groups(redis, keys, clock=clock)
        )
        for n in range(1, 6):
            await stage.handle(entry(alert(n, incident=str(n % 2))))
        clock.now += 31
        flushers = [Groups(redis, keys, clock=clock) for _ in range(8)]
        counts = await asyncio.gather(*(f.flush_due() for f in flushers))
        assert sum(counts) == 2
        assert len(await messages(redis, keys, "teams")) == 2
    finally:
        await redis.aclose()


async def test_an_add_during_a_flush_is_not_lost(rig: Any) -> None:
    """The flusher read the group, then an alert joined: its commit must refuse, and the
    next pass sends both."""
    redis, keys, clock, stage = rig
    await stage.handle(entry(alert(1)))
    clock.now += 30
    groups = stage.groups
    original = groups._commit

    async def add_then_commit(**kwargs: Any) -> Any:
        await stage.handle(entry(alert(2)))  # joins between the read and the commit
        groups._commit = original
        return await original(**kwargs)

    groups._commit = add_then_commit  # type: ignore[method-assign]
    assert await groups.flush_due() == 0  # refused: the group changed under it
    assert await messages(redis, keys, "teams") == []
    assert await groups.flush_due() == 1
    (sent,) = await messages(redis, keys, "teams")
    assert len(json.loads(sent[b"e"])["raw"]["group"]["alerts"]) == 2


async def test_a_group_for_a_removed_sink_is_dropped_loudly(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    redis, keys, clock, stage = rig
    await stage.handle(entry(alert(1)))
    clock.now += 30
    later = Groups(redis, keys, sinks={"archive"}, clock=clock)  # config without teams
    assert await later.flush_due() == 0
    assert "sink 'teams' is no longer configured" in caplog.text
    assert await redis.zcard(keys.groups_due) == 0


async def test_events_that_are_not_alerts_are_not_grouped(rig: Any) -> None:
    """A Secure Score digest on a grouping route is one message already: it goes at once."""
    redis, keys, _clock, stage = rig
    digest = alert(9, kind="secure_score", source_api="secureScores", incident="")
    await stage.handle(entry(digest))
    (sent,) = [m for m in await messages(redis, keys, "teams")]
    assert Envelope.from_json(sent[b"e"]).kind == "secure_score"
    assert await redis.zcard(keys.groups_due) == 0
