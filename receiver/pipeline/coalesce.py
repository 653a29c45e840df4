"""Transactions of concurrent handlers, sent to Redis together.

A stage's handlers run concurrently, and those started from one read of the stream reach
their closing transaction (hand-off, delivery record, acknowledgement) in the same turn of
the event loop. Each transaction is a socket write and a round trip, and on a loaded worker
the writes are the largest single cost. :class:`Transactions` queues the transactions a turn
produces and sends them as one ``MULTI ... EXEC``: every transaction is still applied whole,
with its acknowledgement (a bigger all-or-nothing than before, never a smaller one), and each
caller gets its own commands' results, or the error, exactly as from ``pipe.execute()``.

It reads the commands a redis-py pipeline has queued (``command_stack``, ``scripts``); a test
runs it against a real Redis, so a redis-py upgrade that moves them fails there. A Redis
Cluster client's pipelines are built differently; they are sent one by one, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

__all__ = ["Transactions"]


class Transactions:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.round_trips = 0  # MULTI/EXEC blocks sent (transactions sent together share one)
        self._queue: list[tuple[Pipeline, asyncio.Future[list[Any]]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def execute(self, pipe: Pipeline) -> list[Any]:
        """Run the commands queued on ``pipe`` (a transaction pipeline, not executed; its
        owner resets it, e.g. by leaving ``async with``) in a transaction, with the other
        transactions of this turn; their results."""
        if type(pipe) is not Pipeline:  # a cluster pipeline: sent on its own
            result: list[Any] = await pipe.execute()
            return result
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        if self._queue is None:
            self._queue = []
            task = loop.create_task(self._send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queue.append((pipe, done))
        return await done

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's transactions join the queue
        batch, self._queue = self._queue or [], None
        batch = [(pipe, done) for pipe, done in batch if not done.done()]
        if not batch:
            return
        sizes = [len(pipe.command_stack) for pipe, _ in batch]
        try:
            async with self.redis.pipeline(transaction=True) as combined:
                for pipe, _ in batch:
                    combined.command_stack.extend(pipe.command_stack)
                    combined.scripts |= pipe.scripts
                self.round_trips += 1
                results = await combined.execute()
        except asyncio.CancelledError:
            for _, done in batch:
                done.cancel()
            raise
        except Exception as exc:  # Redis unavailable, or a command failed: every caller
            for _, done in batch:  # sees the error, as from its own execute()
                if not done.done():
                    done.set_exception(exc)
            return
        at = 0
        for (_, done), size in zip(batch, sizes, strict=True):
            if not done.done():
                done.set_result(results[at : at + size])
            at += size
