"""The lifecycle stream's reader: the supervisor's handling of Graph's lifecycle events
(receiver.graph.lifecycle) on the pipeline's stream consumer.

One pass per call (the runner's lifecycle job calls again while a pass found something):
entries left pending -- a failed attempt, or a dead leader's -- are claimed (XAUTOCLAIM) after
``scheduler.lifecycle_retry_s``, then new ones are read (waiting up to ``block_ms``). Their
attempts are Redis's delivery count. They are handled one after another in the order read,
as before the consumer carried this loop. A lost lease ends the pass: the entries not yet
handled stay pending for the next leader, and :class:`LeaseLost` reaches the caller.
"""

from __future__ import annotations

import asyncio

from receiver.graph import lifecycle
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline.consumer import Consumer, ConsumerConfig, Entry
from receiver.store.lease import LeaseLost

LIFECYCLE_GROUP = "supervisor"


async def consume_lifecycle(
    sup: Supervisor, consumer: str, *, block_ms: int | None = None, count: int = 100
) -> int:
    """One pass over the lifecycle stream as ``consumer``; how many entries it handed out
    (handled, dropped, given up, or failed and left pending)."""
    sched = sup.settings.scheduler
    config = ConsumerConfig(
        stream=sup.keys.lifecycle,
        group=LIFECYCLE_GROUP,
        consumer=consumer,
        concurrency=count,
        batch=count,
        block_ms=block_ms or 0,
        visibility_timeout_s=sched.lifecycle_retry_s,
        # The handler gives up on the last attempt itself (counted, acknowledged); the
        # consumer's poison stream is only for an entry whose last attempt met a lost lease.
        max_attempts=sched.lifecycle_max_attempts,
    )
    turn = asyncio.Lock()
    lost: list[LeaseLost] = []

    async def handler(entry: Entry) -> None:
        async with turn:  # one at a time, in the order read
            if lost:
                raise lost[0]  # left pending: the next leader claims it
            try:
                await lifecycle.handle_entry(sup, entry.id, entry.fields, entry.attempt)
            except LeaseLost as exc:
                lost.append(exc)
                raise

    reader = Consumer(sup.redis, sup.keys, config, handler, role="scheduler")
    handed_out = await reader.once(block=bool(block_ms))
    if lost:
        raise lost[0]
    return handed_out
