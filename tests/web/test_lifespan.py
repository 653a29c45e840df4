"""The web app's lifespan runs its registry poller as a TaskGroup (issue 17): a shutdown that
is itself cancelled stays cancelled (the old code caught the CancelledError and went on)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings


async def test_a_cancelled_shutdown_propagates_and_leaves_no_poller(
    make_settings: MakeSettings, redis_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    app = create_app(make_settings(redis_url=redis_url), redis=redis)
    lifespan = app.fallback.router.lifespan_context(app.fallback)
    try:
        await lifespan.__aenter__()
        pollers = [t for t in asyncio.all_tasks() if t.get_name() == "registry-cache"]
        assert len(pollers) == 1 and not pollers[0].done()
        shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
        await asyncio.sleep(0)  # the shutdown starts: it asks the poller to stop, waits
        assert not shutdown.done()
        shutdown.cancel()
        with pytest.raises(asyncio.CancelledError):
            await shutdown
        assert shutdown.cancelled()
        assert pollers[0].done()  # awaited, not left behind
        assert await redis.ping()  # a client given to the app stays the caller's
    finally:
        await redis.aclose()


async def test_a_plain_shutdown_stops_the_poller(
    make_settings: MakeSettings, redis_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    app = create_app(make_settings(redis_url=redis_url), redis=redis)
    try:
        async with app.fallback.router.lifespan_context(app.fallback):
            pollers = [t for t in asyncio.all_tasks() if t.get_name() == "registry-cache"]
            assert len(pollers) == 1
        assert pollers[0].done() and not pollers[0].cancelled()  # it ended on the event
    finally:
        await redis.aclose()
