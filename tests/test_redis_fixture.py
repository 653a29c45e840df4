"""The harness itself: a private, real Redis, emptied between tests."""

from __future__ import annotations

import redis.asyncio as aioredis

from receiver.config.settings import RedisSettings
from receiver.store.client import connect
from tests.fixtures.redis_server import RedisServer


async def test_streams_round_trip_on_a_real_server(redis_url: str) -> None:
    client = await connect(RedisSettings(url=redis_url))
    try:
        await client.xgroup_create("s", "g", id="0", mkstream=True)
        entry_id = await client.xadd("s", {"k": "v"})
        got = await client.xreadgroup("g", "c1", {"s": ">"}, count=10)
        assert got == [[b"s", [(entry_id, {b"k": b"v"})]]]
        # pending until acknowledged; XAUTOCLAIM (6.2+) moves it to another consumer
        claimed = await client.xautoclaim("s", "g", "c2", min_idle_time=0)
        assert claimed[1] == [(entry_id, {b"k": b"v"})]
        assert await client.xack("s", "g", entry_id) == 1
        info = await client.xpending("s", "g")
        assert info["pending"] == 0
    finally:
        await client.aclose()


def test_private_server_not_the_system_one(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    with redis_server.client() as client:
        directory = client.config_get("dir")["dir"]
        assert str(redis_server.data_dir) in directory
        client.set("left-over", "1")  # the next test must not see this


def test_flushed_between_tests(redis_url: str) -> None:
    import redis

    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


async def test_connect_retries_then_fails(make_redis_server: type[RedisServer]) -> None:
    server = make_redis_server()  # never started: nothing listens on its port
    settings = RedisSettings(url=server.url, connect_retries=2, socket_timeout_s=0.2)
    try:
        await connect(settings, delay_s=0.01)
    except (ConnectionError, OSError, aioredis.ConnectionError) as exc:
        assert str(server.port) in str(exc)
    else:
        raise AssertionError("connect() succeeded with no server")


async def test_stop_and_restart(make_redis_server: type[RedisServer]) -> None:
    server = make_redis_server(appendonly=True)
    server.start()
    with server.client() as c:
        c.set("k", "v")
    server.restart()  # AOF on: data survives
    with server.client() as c:
        assert c.get("k") == b"v"
