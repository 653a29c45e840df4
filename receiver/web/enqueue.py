"""Durable enqueue with coalescing: the XADDs of concurrent requests share one round trip.

A request hands its entries to :meth:`Enqueuer.enqueue` and waits. One flusher sends
everything waiting as one call; while it is in flight, new entries gather for the next one.
So there is no added delay at low load and one round trip per burst at high load. A request
is answered only after Redis confirmed its entries, or fails within its budget.

The call is a small Lua script doing one XADD per entry and returning their ids: one command
and one array reply per batch costs the client far less than a pipeline of N commands and N
replies. Every key shares the deployment's hash tag, so it runs on a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from receiver.web.deadlines import Deadlines

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 1000  # entries per call
# Confirmation deadlines are checked this often: a caller gets its 503 at most this late.
DEADLINE_SWEEP_S = 0.05

# KEYS[i]: the stream of entry i; ARGV[1]: the field name; ARGV[i + 1]: entry i's value.
_XADD_MANY = """
local ids = {}
for i = 1, #KEYS do
  ids[i] = redis.call('XADD', KEYS[i], '*', ARGV[1], ARGV[i + 1])
end
return ids
"""


class EnqueueError(Exception):
    """The entries were not (confirmed) stored."""


@dataclass(slots=True, eq=False)  # hashed by identity (a key of the deadlines)
class _Pending:
    """The entries of one request and the future its caller waits on."""

    entries: Sequence[tuple[str, str]]
    future: asyncio.Future[list[bytes]]


class Enqueuer:
    def __init__(self, redis: Redis, field: str, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._redis = redis
        self._field = field
        self._script = redis.register_script(_XADD_MANY)
        self._queue: deque[_Pending] = deque()
        self._max_batch = max_batch
        self._flusher: asyncio.Task[None] | None = None
        self._deadlines = Deadlines(DEADLINE_SWEEP_S)
        self.round_trips = 0

    async def enqueue(self, entries: Sequence[tuple[str, str]], timeout_s: float) -> list[bytes]:
        """Append ``(stream, value)`` entries (one field each, named at construction); their
        stream ids once Redis confirmed them all.

        Raises EnqueueError if Redis failed or did not confirm within ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(entries, loop.create_future())
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())
        future = pending.future

        def expire() -> None:
            if not future.done():
                future.set_exception(EnqueueError("redis did not confirm in time"))

        # One sweep for every request's deadline rather than a timer each (deadlines.py).
        self._deadlines.add(pending, timeout_s, expire)
        try:
            return await future
        finally:
            self._deadlines.remove(pending)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        queue = self._queue
        while queue and (not batch or size + len(queue[0].entries) <= self._max_batch):
            p = queue.popleft()
            if not p.future.done():  # callers that timed out are not sent
                batch.append(p)
                size += len(p.entries)
        return batch

    async def _flush_loop(self) -> None:  # noqa: C901 - 11, older than the limit
        while self._queue:
            batch = self._take_batch()
            if not batch:
                continue
            keys: list[str] = []
            args: list[str] = [self._field]
            for p in batch:
                for stream, value in p.entries:
                    keys.append(stream)
                    args.append(value)
            try:
                ids = await self._script(keys=keys, args=args)
                self.round_trips += 1
                if not isinstance(ids, list) or len(ids) != len(keys):
                    raise EnqueueError("unexpected reply")
            except Exception as exc:
                log.warning("enqueue failed: %s", type(exc).__name__)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(EnqueueError(type(exc).__name__))
                continue
            i = 0
            for p in batch:
                n = len(p.entries)
                if not p.future.done():
                    p.future.set_result(ids[i : i + n])
                i += n

    async def aclose(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), 5)
            except TimeoutError:
                self._flusher.cancel()
