"""Transactions of concurrent handlers sent together (receiver.pipeline.coalesce), against a
real Redis: one MULTI/EXEC per turn of the event loop, each caller its own results."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from receiver.pipeline.coalesce import Transactions


async def test_transactions_of_one_turn_share_one_round_trip(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    tx = Transactions(redis)

    async def hand_off(n: int) -> list[object]:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd("{t}out", {"e": str(n)})
            pipe.incrby("{t}count", n)
            pipe.set(f"{{t}}done:{n}", "1")
            return await tx.execute(pipe)

    try:
        results = await asyncio.gather(*(hand_off(n) for n in (1, 2, 3, 4)))
        assert tx.round_trips == 1
        assert [r[1:] for r in results] == [[1, True], [3, True], [6, True], [10, True]]
        assert len({r[0] for r in results}) == 4  # each its own stream entry id
        assert await redis.xlen("{t}out") == 4
        # A later turn is a round trip of its own.
        assert (await hand_off(5))[1:] == [15, True]
        assert tx.round_trips == 2
    finally:
        await redis.aclose()


async def test_an_error_reaches_every_caller_of_the_turn(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    tx = Transactions(redis)
    await redis.set("{t}text", "not a list")

    async def good() -> list[object]:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.rpush("{t}list", "a")
            return await tx.execute(pipe)

    async def bad() -> list[object]:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.rpush("{t}text", "a")  # WRONGTYPE
            return await tx.execute(pipe)

    try:
        outcomes = await asyncio.gather(good(), bad(), return_exceptions=True)
        assert all(isinstance(o, ResponseError) for o in outcomes), outcomes
        assert tx.round_trips == 1
        # As with one transaction per caller, Redis applied the commands that could run.
        assert await redis.lrange("{t}list", 0, -1) == [b"a"]
        with pytest.raises(ResponseError):
            await bad()
    finally:
        await redis.aclose()
