"""The worker role's tasks as one TaskGroup (issue 17): every stage's error is reported, the
other stages are awaited, a stop drains what is in flight, a cancellation propagates.

A real worker (build_worker) on the tests' Redis, a real webhook sink on loopback. A stage
fails for real: its stream's key holds a string, so XGROUP CREATE answers WRONGTYPE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.pipeline.worker import Worker, build_worker
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import served
from tests.pipeline.test_deliver import envelope, queue


@dataclass
class Hook:
    """The sink's far end: holds each delivery until ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answered: list[str] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        alert_id = json.loads(await request.body())["id"]
        self.arrived.set()
        await self.release.wait()
        self.answered.append(alert_id)
        return Response(status_code=204)


@dataclass
class Rig:
    worker: Worker
    redis: aioredis.Redis
    keys: Keys
    hook: Hook

    def stage_tasks(self) -> list[asyncio.Task[Any]]:
        """The worker's tasks still running (they are named after their stream or job)."""
        names = {c.config.stream for c in self.worker.consumers} | {"groups", "lag"}
        return [t for t in asyncio.all_tasks() if t.get_name() in names and not t.done()]


@pytest.fixture
async def rig(make_settings: MakeSettings, redis_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    hook = Hook()
    (tmp_path / "routes.yaml").write_text("route:\n  receiver: hook\n")
    async with served(Starlette(routes=[Route("/hook", hook.handle, methods=["POST"])])) as url:
        settings = make_settings(
            redis_url=redis_url,
            routes_file=str(tmp_path / "routes.yaml"),
            sinks=[{"type": "webhook", "name": "hook", "url": url + "/hook"}],
        )
        redis = aioredis.Redis.from_url(redis_url)
        worker = build_worker(settings, redis)
        try:
            yield Rig(worker, redis, Keys(settings.redis.key_prefix), hook)
        finally:
            hook.release.set()
            await worker.aclose()
            await redis.aclose()


async def test_every_failed_stage_is_reported_and_the_others_are_awaited(rig: Rig) -> None:
    # Two stages fail as they start (the first two tasks: the old drain raised the second
    # error in place of the first and never awaited the rest).
    await rig.redis.set(rig.keys.notifications, "not a stream")
    await rig.redis.set(rig.keys.alerts, "not a stream")
    stop = asyncio.Event()
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(rig.worker.run(stop), 30)
    errors = caught.value.exceptions
    assert len(errors) == 2
    assert all(isinstance(e, ResponseError) and "WRONGTYPE" in str(e) for e in errors)
    notes = sorted(note for e in errors for note in getattr(e, "__notes__", []))
    assert notes == sorted(
        f"in the worker's {k} task" for k in (rig.keys.notifications, rig.keys.alerts)
    )
    assert stop.is_set()  # the others were told to stop ...
    assert rig.stage_tasks() == []  # ... and had all ended when run() raised


async def test_one_failed_stage_is_raised_as_itself(rig: Rig) -> None:
    await rig.redis.set(rig.keys.alerts, "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE") as caught:
        await asyncio.wait_for(rig.worker.run(asyncio.Event()), 30)
    assert getattr(caught.value, "__notes__", []) == [f"in the worker's {rig.keys.alerts} task"]
    assert rig.stage_tasks() == []


async def test_stop_drains_the_delivery_in_flight(rig: Rig) -> None:
    await queue(rig.redis, rig.keys, "hook", envelope(1))
    stop = asyncio.Event()
    run = asyncio.create_task(rig.worker.run(stop))
    await asyncio.wait_for(rig.hook.arrived.wait(), 10)
    stop.set()  # the delivery is in flight: it must finish before run() returns
    rig.hook.release.set()
    await asyncio.wait_for(run, 30)
    assert rig.hook.answered == ["alert-1"]
    assert await rig.redis.xlen(rig.keys.sink("hook")) == 0  # acknowledged (and deleted)
    assert rig.stage_tasks() == []


async def test_a_cancelled_worker_stays_cancelled_and_leaves_no_task(rig: Rig) -> None:
    """Cancelling run() cancels its tasks and waits for them: CancelledError comes out (not
    swallowed on the way), after the stage finished the handler it had started (the
    consumer's own drain) and with no task of the worker left behind."""
    await queue(rig.redis, rig.keys, "hook", envelope(2))
    run = asyncio.create_task(rig.worker.run(asyncio.Event()))
    await asyncio.wait_for(rig.hook.arrived.wait(), 10)
    run.cancel()
    rig.hook.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 30)
    assert run.cancelled()
    assert rig.stage_tasks() == []
    assert rig.hook.answered == ["alert-2"]
    assert await rig.redis.xlen(rig.keys.sink("hook")) == 0
