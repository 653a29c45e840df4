"""The stream consumer against a real Redis: ack, reclaim, poison, retry, drain, health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from receiver.pipeline.consumer import Consumer, ConsumerConfig, Entry, Retry
from receiver.store.keys import Keys
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.waiting import wait_until_async

KEYS = Keys("{t}")
STREAM = KEYS.notifications


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def config(**overrides: object) -> ConsumerConfig:
    base = {
        "stream": STREAM,
        "group": "fetch",
        "consumer": "c1",
        "block_ms": 50,
        "visibility_timeout_s": 0.2,
        "max_attempts": 3,
        "concurrency": 4,
        "sweep_interval_s": 0.02,
    }
    base.update(overrides)
    return ConsumerConfig(**base)  # type: ignore[arg-type]


async def add(redis: aioredis.Redis, n: int) -> list[str]:
    return [(await redis.xadd(STREAM, {"e": f"item-{i}"})).decode() for i in range(n)]


async def test_burst_processes_everything_and_deletes_acked(redis: aioredis.Redis) -> None:
    await add(redis, 25)
    seen: list[bytes] = []

    async def handle(entry: Entry) -> None:
        seen.append(entry.value)

    # No reclaim here: with the 0.2 s visibility timeout, a loaded machine could hand an
    # entry whose handler has not run yet to a second handler (at-least-once, by design).
    consumer = Consumer(redis, KEYS, config(visibility_timeout_s=60), handle)
    await asyncio.wait_for(consumer.run(burst=True), 10)
    assert sorted(seen) == sorted(f"item-{i}".encode() for i in range(25))
    assert await redis.xlen(STREAM) == 0
    assert (await redis.xpending(STREAM, "fetch"))["pending"] == 0
    assert consumer.processed == 25


async def test_failure_is_retried_after_the_visibility_timeout(redis: aioredis.Redis) -> None:
    [entry_id] = await add(redis, 1)
    attempts: list[int] = []
    handed: list[str] = []

    async def flaky(entry: Entry) -> None:
        attempts.append(entry.attempt)
        handed.append(entry.id)
        if len(attempts) == 1:
            raise RuntimeError("graph said 503")

    consumer = Consumer(redis, KEYS, config(), flaky)
    await asyncio.wait_for(consumer.run(burst=True), 10)
    assert attempts == [1, 2]
    assert await redis.xlen(STREAM) == 0
    assert await redis.xlen(KEYS.poison) == 0
    assert handed == [entry_id, entry_id]  # the same entry, claimed again (not a copy)
    assert consumer.failed == 1 and consumer.processed == 1


async def test_poison_entry_goes_to_the_poison_stream(redis: aioredis.Redis) -> None:
    await add(redis, 2)
    calls = 0

    async def broken(entry: Entry) -> None:
        nonlocal calls
        calls += 1
        if entry.value == b"item-0":
            raise ValueError("cannot parse this entry")

    consumer = Consumer(redis, KEYS, config(max_attempts=3), broken)
    await asyncio.wait_for(consumer.run(burst=True), 10)
    poison = await redis.xrange(KEYS.poison)
    assert len(poison) == 1
    fields = poison[0][1]
    assert fields[b"e"] == b"item-0"
    assert fields[b"error"] == b"ValueError: cannot parse this entry"
    assert fields[b"attempts"] == b"3"
    assert calls == 4  # three attempts for the poison entry, one for its neighbour
    assert await redis.xlen(STREAM) == 0


async def test_retry_defers_and_counts_attempts(redis: aioredis.Redis) -> None:
    await add(redis, 1)
    attempts: list[int] = []
    loop = asyncio.get_running_loop()
    times: list[float] = []

    fields: list[dict[bytes, bytes]] = []

    async def later(entry: Entry) -> None:
        attempts.append(entry.attempt)
        times.append(loop.time())
        fields.append(dict(entry.fields))
        if len(attempts) < 3:
            raise Retry(0.3, "sink answered 429")

    consumer = Consumer(redis, KEYS, config(), later)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await wait_until_async(
        lambda: _value(len(attempts)), lambda n: n >= 3, timeout_s=10, what="three attempts"
    )
    stop.set()
    await asyncio.wait_for(task, 5)
    assert attempts == [1, 2, 3]
    # the handler sees the entry as written each time, not the consumer's attempt count (a
    # parser that refuses unknown fields, as the backfill request's does, refused it)
    assert fields == [{b"e": b"item-0"}] * 3
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.3
    assert await redis.zcard(KEYS.delayed(STREAM)) == 0
    assert await redis.xlen(STREAM) == 0


async def test_entries_of_a_dead_consumer_are_claimed(redis: aioredis.Redis) -> None:
    await add(redis, 5)
    started = asyncio.Event()

    async def hang(entry: Entry) -> None:
        started.set()
        await asyncio.sleep(3600)

    dead = Consumer(redis, KEYS, config(consumer="dead", drain_timeout_s=0.01), hang)
    task = asyncio.create_task(dead.run())
    await started.wait()
    task.cancel()  # dies without acknowledging anything
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # it took only as many as it had free handler slots (4); the fifth is still unread
    assert (await redis.xpending(STREAM, "fetch"))["pending"] == 4

    done: list[bytes] = []

    async def handle(entry: Entry) -> None:
        done.append(entry.value)

    alive = Consumer(redis, KEYS, config(consumer="alive"), handle)
    await asyncio.wait_for(alive.run(burst=True), 10)
    assert len(done) == 5
    assert await redis.xlen(STREAM) == 0


async def test_concurrency_is_bounded_and_stop_drains(redis: aioredis.Redis) -> None:
    await add(redis, 20)
    running = 0
    peak = 0
    finished = 0

    async def slow(entry: Entry) -> None:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        finished += 1

    consumer = Consumer(redis, KEYS, config(concurrency=3, visibility_timeout_s=60), slow)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await wait_until_async(
        lambda: _value(finished), lambda n: n >= 3, timeout_s=10, what="three handled"
    )
    stop.set()  # graceful: in-flight handlers finish and are acknowledged
    await asyncio.wait_for(task, 5)
    assert peak == 3
    remaining = await redis.xlen(STREAM)
    assert 0 < remaining == 20 - finished  # stopped part way, and nothing in flight was lost
    assert (await redis.xpending(STREAM, "fetch"))["pending"] == 0


async def test_health_key_and_lag(redis: aioredis.Redis) -> None:
    await add(redis, 3)

    async def nothing(entry: Entry) -> None:
        raise Retry(60)

    consumer = Consumer(redis, KEYS, config(consumer="w1"), nothing, role="worker")
    await consumer.ensure_group()
    assert await consumer.lag() == {"unread": 3, "pending": 0, "delayed": 0}
    await asyncio.wait_for(consumer.run(burst=True), 10)
    ttl = await redis.ttl(KEYS.health("worker", "w1"))
    assert 0 < ttl <= 30
    assert await consumer.lag() == {"unread": 0, "pending": 0, "delayed": 3}


@contextlib.asynccontextmanager
async def recording(
    client: aioredis.Redis,
) -> AsyncIterator[tuple[Consumer, asyncio.Task[None], list[bytes]]]:
    """A consumer running in the background, recording the payloads it handles."""
    seen: list[bytes] = []

    async def handler(entry: Entry) -> None:
        seen.append(entry.value)

    consumer = Consumer(client, KEYS, config(), handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer, task, seen
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _value(value: int) -> int:
    return value


async def handled(seen: list[bytes], value: bytes, timeout_s: float = 10) -> None:
    """Wait until the consumer handled ``value``; fail the test (with what it did handle)
    when it does not within ``timeout_s``."""
    await wait_until_async(
        lambda: _value(len(seen)),
        lambda _: value in seen,
        timeout_s=timeout_s,
        what=f"{value!r} handled (seen: {seen!r})",
        interval_s=0.05,
    )


async def _groups(client: aioredis.Redis) -> list[str]:
    try:
        return [g["name"].decode() for g in await client.xinfo_groups(STREAM)]
    except ResponseError:  # no such key: the stream is gone too
        return []


async def test_the_loop_rides_out_a_redis_restart(make_redis_server: type[RedisServer]) -> None:
    """Redis goes away and comes back (AOF on): the consumer keeps running, and handles
    what arrives afterwards. (Before, the error ended the loop and the worker process.)"""
    server = make_redis_server(appendonly=True)
    server.start()
    client = aioredis.Redis.from_url(server.url, socket_timeout=0.5)
    try:
        async with recording(client) as (consumer, task, seen):
            await client.xadd(STREAM, {"e": b"before"})
            await handled(seen, b"before")
            server.stop()
            # Two loop passes found Redis gone (the second after a backoff): the loop rode
            # out the first error instead of ending.
            await wait_until_async(
                lambda: _value(consumer.redis_errors),
                lambda n: n >= 2,
                timeout_s=10,
                what="two passes without Redis",
            )
            assert not task.done()  # still running, waiting for Redis
            server.start()
            for _ in range(200):
                with contextlib.suppress(RedisError, OSError):
                    await client.xadd(STREAM, {"e": b"after"})
                    break
                await asyncio.sleep(0.05)
            await handled(seen, b"after")
            assert seen == [b"before", b"after"]
    finally:
        await client.aclose()


async def test_the_loop_makes_its_group_again_after_redis_lost_everything(
    redis: aioredis.Redis,
) -> None:
    """Redis restarted empty (no persistence): the stream and its group are gone. The loop
    makes them again and goes on, instead of failing on NOGROUP forever."""
    async with recording(redis) as (_, task, seen):
        await redis.xadd(STREAM, {"e": b"before"})
        await handled(seen, b"before")
        await redis.flushall()
        # The loop notices and makes its group again by itself, before anything new comes.
        await wait_until_async(
            lambda: _groups(redis),
            lambda names: "fetch" in names,
            timeout_s=10,
            what="the group made again",
        )
        await redis.xadd(STREAM, {"e": b"after"})
        await handled(seen, b"after")
        assert seen == [b"before", b"after"]
        assert not task.done()
