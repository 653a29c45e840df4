"""Durable enqueue with coalescing: the XADDs of concurrent requests share one round trip.

A request hands its entries to :meth:`Enqueuer.enqueue` and waits. One flusher sends
everything waiting as one Redis pipeline; while it is in flight, new entries gather for the
next one. So there is no added delay at low load and one round trip per burst at high load.
A request is answered only after Redis confirmed its entries, or fails within its budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 2000  # entries per pipeline


class EnqueueError(Exception):
    """The entries were not (confirmed) stored."""


@dataclass(slots=True)
class _Pending:
    stream: str
    fields: dict[str, str]
    future: asyncio.Future[bytes]


class Enqueuer:
    def __init__(self, redis: Redis, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._redis = redis
        self._queue: list[_Pending] = []
        self._max_batch = max_batch
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def enqueue(self, entries: Sequence[tuple[str, dict[str, str]]],
                      timeout_s: float) -> list[bytes]:
        """Append ``(stream, fields)`` entries; their stream ids once Redis confirmed them all.

        Raises EnqueueError if Redis failed or did not confirm within ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        pending = [_Pending(s, f, loop.create_future()) for s, f in entries]
        self._queue.extend(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())
        futures = [p.future for p in pending]
        try:
            async with asyncio.timeout(timeout_s):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise EnqueueError("redis did not confirm in time") from None
        except EnqueueError:
            raise
        except Exception as exc:
            raise EnqueueError(type(exc).__name__) from exc
        finally:
            for f in futures:  # leave no "exception never retrieved" behind
                if f.done() and not f.cancelled():
                    f.exception()

    async def _flush_loop(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            batch = [p for p in batch if not p.future.done()]  # timed out callers
            if not batch:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for p in batch:
                        pipe.xadd(p.stream, p.fields)  # type: ignore[arg-type]
                    results = await pipe.execute(raise_on_error=False)
                self.round_trips += 1
            except Exception as exc:
                log.warning("enqueue failed: %s", type(exc).__name__)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(EnqueueError(type(exc).__name__))
                continue
            for p, result in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, Exception):
                    p.future.set_exception(EnqueueError(type(result).__name__))
                else:
                    p.future.set_result(result)

    async def aclose(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), 5)
            except TimeoutError:
                self._flusher.cancel()
